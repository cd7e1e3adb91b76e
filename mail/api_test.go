package mail_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

const (
	testIssuer = "https://id.example.test"
	testClient = "client-1"
	testKID    = "key-1"
	testUser   = "user-1"
)

// sixDigits finds a verification code in a mail.
var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// httpClient talks to the API and to Mailpit without keeping connections,
// so that TestMain's leak check sees only what the mailer left.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// signingKey is generated once per test binary: RSA generation is slow.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// apiServer is the library's real HTTP API, memory stores behind it, with
// one user.
type apiServer struct {
	url   string
	users *memstore.UserStore
}

// newAPI serves the API with mailer delivering its mails, for a user whose
// address is email and whose stored language is lang ("" for none).
func newAPI(t *testing.T, mailer selfservice.Mailer, email, lang string) *apiServer {
	t.Helper()
	key, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := idtoken.New(idtoken.Options{
		Issuer: testIssuer,
		Keyfunc: func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != testKID {
				return nil, errors.New("unknown kid")
			}
			return &key.PublicKey, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	typed, canonical, err := selfservice.CanonicalEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	users := memstore.NewUserStore(store.User{ID: testUser, Email: typed, CanonicalEmail: canonical, Language: lang})
	svc, err := selfservice.New(selfservice.Config{
		Users:      users,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testClient}),
		Verifier:   verifier,
		Mailer:     mailer,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(rand.Text() + rand.Text()),
		Budgets:    selfservice.Budgets{SendsPerEmail: []store.Limit{{N: 100, Window: time.Hour}}},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := svc.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("notices still running: %v", err)
		}
	})
	return &apiServer{url: srv.URL, users: users}
}

// token signs an id_token for the user, issued to testClient.
func (a *apiServer) token(t *testing.T) string {
	t.Helper()
	key, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    testIssuer,
		Subject:   testUser,
		Audience:  jwt.ClaimStrings{testClient},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	tok.Header["kid"] = testKID
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type apiReply struct {
	status int
	body   string
}

// post sends body to path with the headers the API requires, X-L lang and,
// when tok is set, the bearer token.
func (a *apiServer) post(t *testing.T, path, lang, tok, body string) apiReply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"Content-Type":            "application/json",
		"X-operating-sys-version": "linux6.1",
		"X-device-fingerprint":    "mail-test-device",
		"X-agent":                 "mail_test",
		"X-client-id":             testClient,
		"X-L":                     lang,
	} {
		req.Header.Set(k, v)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiReply{status: resp.StatusCode, body: string(raw)}
}
