// Package selfservicetest provides what a test of an application that
// mounts package selfservice needs, in the spirit of net/http/httptest: an
// OpenID issuer whose JWKS is served over HTTP, id_tokens from it, a mailer
// that captures the codes and the notices, a Config over in-memory stores,
// and a client that sends the API's requests with every header it wants.
//
// A whole flow in a test:
//
//	iss, mail := selfservicetest.NewIssuer(t), &selfservicetest.Mailer{}
//	svc, err := selfservice.New(selfservicetest.Config(t, iss, mail, store.User{ID: "alice", Email: "alice@example.com"}))
//	if err != nil {
//		t.Fatal(err)
//	}
//	srv := httptest.NewServer(svc.Handler())
//	defer srv.Close()
//	c := selfservicetest.NewClient(srv.URL, iss.ClientID)
//	c.SendCode(t, "new@example.com").Expect(t, http.StatusOK, "")
//	c.UpdateEmail(t, iss.Token(t, "alice"), "new@example.com", mail.Code(t, "new@example.com")).Expect(t, http.StatusOK, "")
package selfservicetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// DefaultClientID is the client id an Issuer's tokens are issued to, which
// Config registers.
const DefaultClientID = "test-client"

// Issuer is an OpenID provider for tests: an RS256 key made for the test,
// its JWKS served by an httptest.Server at JWKSURL, and id_tokens signed
// with it for ClientID.
type Issuer struct {
	// URL is the issuer: the iss of its tokens and its server's address.
	URL string
	// JWKSURL is where the keys are served.
	JWKSURL string
	// ClientID is the audience of the tokens Token makes.
	ClientID string

	dev *devissuer.Issuer
}

// NewIssuer starts an Issuer whose server stops when t ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	var dev *devissuer.Issuer
	ready := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		dev.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var err error
	if dev, err = devissuer.New(srv.URL); err != nil {
		t.Fatalf("selfservicetest: %v", err)
	}
	close(ready)
	return &Issuer{URL: srv.URL, JWKSURL: srv.URL + "/keys", ClientID: DefaultClientID, dev: dev}
}

// Verifier returns an idtoken.Verifier that trusts the Issuer, fetching its
// keys over HTTP as production does. It is closed when t ends.
func (iss *Issuer) Verifier(t testing.TB) *idtoken.Verifier {
	t.Helper()
	v, err := idtoken.New(idtoken.Options{
		Issuer:  iss.URL,
		JWKSURL: iss.JWKSURL,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("selfservicetest: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// TokenOption changes the claims of a token Token makes.
type TokenOption func(claims map[string]any)

// WithClaim sets the claim name to value, or removes it when value is nil:
// WithClaim("aud", "another-app"), WithClaim("exp", time.Now().Add(-time.Hour).Unix()).
func WithClaim(name string, value any) TokenOption {
	return func(c map[string]any) {
		if value == nil {
			delete(c, name)
			return
		}
		c[name] = value
	}
}

// WithAuthTime sets auth_time, the sign-in time Config.MaxAuthAge looks at.
func WithAuthTime(t time.Time) TokenOption { return WithClaim("auth_time", t.Unix()) }

// Token returns an id_token for subject, issued by iss to iss.ClientID now
// and valid for an hour, changed by opts.
func (iss *Issuer) Token(t testing.TB, subject string, opts ...TokenOption) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": iss.URL, "sub": subject, "aud": iss.ClientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for _, o := range opts {
		o(claims)
	}
	raw, err := iss.dev.Sign(jwt.MapClaims(claims))
	if err != nil {
		t.Fatalf("selfservicetest: sign: %v", err)
	}
	return raw
}

// Mailer is a selfservice.Mailer that keeps every message. The zero value
// is ready; it is safe for concurrent use.
type Mailer struct {
	mu   sync.Mutex
	msgs []selfservice.Message
}

// Send keeps msg.
func (m *Mailer) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

// Messages returns the messages sent so far.
func (m *Mailer) Messages() []selfservice.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]selfservice.Message(nil), m.msgs...)
}

// Code returns the last code mailed to email (compared without regard to
// case), or fails t.
func (m *Mailer) Code(t testing.TB, email string) string {
	t.Helper()
	msgs := m.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msg := msgs[i]; msg.Kind == selfservice.MailCode && strings.EqualFold(msg.To, email) {
			return msg.Code
		}
	}
	t.Fatalf("selfservicetest: no code was mailed to %s", email)
	return ""
}

// Notice waits up to 10 seconds for the notice of a change mailed to the
// old address email (compared without regard to case) and returns the last
// one, or fails t. Notices are mailed by the Service's courier shortly
// after the change, not during the request. Its RevertToken undoes the
// change (Client.RevertEmail).
func (m *Mailer) Notice(t testing.TB, email string) selfservice.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := m.Messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			if msg := msgs[i]; msg.Kind == selfservice.MailEmailChanged && strings.EqualFold(msg.To, email) {
				return msg
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("selfservicetest: no notice was mailed to %s within 10 s", email)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Config returns a selfservice.Config for tests: in-memory stores holding
// users (their canonical addresses computed) and iss's client, iss's
// Verifier, mailer, selfservice.AllowAllCaptcha, a random CodeSecret and a
// Logger that drops everything. Change its fields before selfservice.New.
//
// With a nil iss it is the Config of an application that signs its users
// in itself: no Verifier, DefaultClientID registered, and Identify reading
// the session cookie a Client with SignedIn set sends (SessionCookie,
// whose value is the user id).
func Config(t testing.TB, iss *Issuer, mailer selfservice.Mailer, users ...store.User) selfservice.Config {
	t.Helper()
	secret := make([]byte, selfservice.MinCodeSecretLen)
	_, _ = rand.Read(secret)
	us := &memstore.UserStore{}
	for _, u := range users {
		if err := us.CreateUser(context.Background(), u); err != nil {
			t.Fatalf("selfservicetest: user %q: %v", u.ID, err)
		}
	}
	cfg := selfservice.Config{
		Users:      us,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Mailer:     mailer,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: secret,
		Logger:     slog.New(slog.DiscardHandler),
	}
	if iss == nil {
		cfg.Clients = memstore.NewClientRegistry(store.Client{ID: DefaultClientID})
		cfg.Identify = Identify
		return cfg
	}
	cfg.Clients = memstore.NewClientRegistry(store.Client{ID: iss.ClientID})
	cfg.Verifier = iss.Verifier(t)
	return cfg
}

// SessionCookie is the cookie of the test sign-in Identify reads.
const SessionCookie = "selfservicetest_session"

// Identify is the Config.Identify of Config without an issuer: the user
// named by the SessionCookie, signed in just now.
func Identify(r *http.Request) (selfservice.Identity, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return selfservice.Identity{}, selfservice.ErrNotSignedIn
	}
	return selfservice.Identity{Subject: c.Value, AuthTime: time.Now()}, nil
}

// Headers returns the headers a client of the API sends: Content-Type, the
// device headers, X-client-id clientID and, when lang is set, X-L.
func Headers(clientID, lang string) http.Header {
	h := http.Header{
		"Content-Type":            {"application/json"},
		"X-Operating-Sys-Version": {"test-os 1.0"},
		"X-Device-Fingerprint":    {"test-device"},
		"X-Agent":                 {"selfservicetest"},
		"X-Client-Id":             {clientID},
	}
	if lang != "" {
		h.Set("X-L", lang)
	}
	return h
}

// Client sends the API's requests to a server at URL, with Headers.
type Client struct {
	// URL is the server, where the endpoints are mounted, without a
	// trailing slash: with a Mount prefix, include it.
	URL string
	// ClientID is sent as X-client-id.
	ClientID string
	// Lang, when set, is sent as X-L.
	Lang string
	// Header, when set, is added to every request's headers.
	Header http.Header
	// SignedIn, when set, is sent as the SessionCookie: the user an
	// application signing users in itself (Config without an issuer)
	// knows the client as.
	SignedIn string
	// HTTP sends the requests. Default: http.DefaultClient.
	HTTP *http.Client
}

// NewClient returns a Client for the server at url.
func NewClient(url, clientID string) *Client { return &Client{URL: url, ClientID: clientID} }

// SendCode asks for a code for email.
func (c *Client) SendCode(t testing.TB, email string) *Reply {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "type": selfservice.PurposeUpdateEmail, "captcha_token": "test"})
	return c.Post(t, selfservice.SendCodePath, "", string(body))
}

// UpdateEmail changes the email of token's user to email with code.
func (c *Client) UpdateEmail(t testing.TB, token, email, code string) *Reply {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "verify_code": code})
	return c.Post(t, selfservice.UpdateEmailPath, token, string(body))
}

// RevertEmail undoes a change with the undo token of its notice
// (Mailer.Notice).
func (c *Client) RevertEmail(t testing.TB, revertToken string) *Reply {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"revert_token": revertToken})
	return c.Post(t, selfservice.RevertEmailPath, "", string(body))
}

// Post sends body to path with the client's headers and, when token is
// set, Authorization: Bearer token.
func (c *Client) Post(t testing.TB, path, token, body string) *Reply {
	t.Helper()
	return c.Do(t, http.MethodPost, path, token, body)
}

// Do is Post with another method, for the answers to wrong methods.
func (c *Client) Do(t testing.TB, method, path, token, body string) *Reply {
	t.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("selfservicetest: %v", err)
	}
	req.Header = Headers(c.ClientID, c.Lang)
	maps.Copy(req.Header, c.Header)
	if c.SignedIn != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: c.SignedIn})
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("selfservicetest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("selfservicetest: %s %s: %v", method, path, err)
	}
	r := &Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(raw)}
	var e struct {
		Code string `json:"error_code"`
		Msg  string `json:"error_msg"`
	}
	// Anything but the API's error body (a router's own 404, say) leaves
	// Code empty, which Expect reports.
	if json.Unmarshal(raw, &e) == nil {
		r.Code, r.Message = e.Code, e.Msg
	}
	return r
}

// Reply is an answer of the API.
type Reply struct {
	Status int
	Header http.Header
	// Code and Message are the error_code and error_msg of an error
	// answered in the API's format, else empty.
	Code, Message string
	// Body is the body as received.
	Body string
}

// Expect fails t unless the reply has status and error code ("" for none).
func (r *Reply) Expect(t testing.TB, status int, code string) *Reply {
	t.Helper()
	if r.Status != status || r.Code != code {
		t.Fatalf("selfservicetest: got %d %q (%s), want %d %q", r.Status, r.Code, r.Body, status, code)
	}
	return r
}
