package selfservice_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

const (
	testIssuer = "https://id.example.test"
	testClient = "client-1"
	testKID    = "key-1"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

// signingKey is generated once per test binary: RSA generation is slow.
func signingKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

// recordingMailer keeps every message and fails while err is set.
type recordingMailer struct {
	mu   sync.Mutex
	msgs []selfservice.Message
	err  error
}

func (m *recordingMailer) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *recordingMailer) last(t *testing.T) selfservice.Message {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.msgs) == 0 {
		t.Fatal("no mail was sent")
	}
	return m.msgs[len(m.msgs)-1]
}

// countingCodes counts the calls that reach the code store and can fail them.
type countingCodes struct {
	store.CodeStore
	mu            sync.Mutex
	puts, verifys int
	err           error
}

func (c *countingCodes) Put(ctx context.Context, k store.CodeKey, h []byte, exp time.Time) error {
	c.mu.Lock()
	c.puts++
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.CodeStore.Put(ctx, k, h, exp)
}

func (c *countingCodes) Verify(ctx context.Context, k store.CodeKey, h []byte, max int, now time.Time) error {
	c.mu.Lock()
	c.verifys++
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.CodeStore.Verify(ctx, k, h, max, now)
}

func (c *countingCodes) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts + c.verifys
}

// failingUsers fails every call while err is set.
type failingUsers struct {
	store.UserStore
	mu  sync.Mutex
	err error
}

func (f *failingUsers) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *failingUsers) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *failingUsers) User(ctx context.Context, id string) (store.User, error) {
	if err := f.get(); err != nil {
		return store.User{}, err
	}
	return f.UserStore.User(ctx, id)
}

func (f *failingUsers) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	if err := f.get(); err != nil {
		return err
	}
	return f.UserStore.UpdateEmail(ctx, id, email, canonical)
}

// fixture is the whole API on an httptest server over memory stores.
type fixture struct {
	srv     *httptest.Server
	users   *memstore.UserStore
	fusers  *failingUsers
	codes   *countingCodes
	mail    *recordingMailer
	captcha *captchaSwitch
}

type captchaSwitch struct {
	mu  sync.Mutex
	err error
}

func (c *captchaSwitch) VerifyCaptcha(context.Context, string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *captchaSwitch) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

func mustUser(t testing.TB, id, email string) store.User {
	t.Helper()
	u := store.User{ID: id}
	if email != "" {
		var err error
		u.Email, u.CanonicalEmail, err = selfservice.CanonicalEmail(email)
		if err != nil {
			t.Fatalf("seed email %q: %v", email, err)
		}
	}
	return u
}

func newFixture(t *testing.T, users ...store.User) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, users...)
}

// newFixtureWith is newFixture with edit applied to the Config.
func newFixtureWith(t *testing.T, edit func(*selfservice.Config), users ...store.User) *fixture {
	t.Helper()
	key := signingKey(t)
	verifier, err := middleware.NewVerifier(middleware.VerifierOptions{
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
	f := &fixture{
		users:   memstore.NewUserStore(users...),
		codes:   &countingCodes{CodeStore: memstore.NewCodeStore()},
		mail:    &recordingMailer{},
		captcha: &captchaSwitch{},
	}
	f.fusers = &failingUsers{UserStore: f.users}
	cfg := selfservice.Config{
		Users:      f.fusers,
		Codes:      f.codes,
		Limiter:    memstore.NewSendLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testClient}),
		Verifier:   verifier,
		Mailer:     f.mail,
		Captcha:    f.captcha,
		CodeSecret: []byte(strings.Repeat("s", selfservice.MinCodeSecretLen)),
		Logger:     discardLogger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := selfservice.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// token signs an id_token for sub issued to testClient; edit may change
// the claims before signing.
func token(t testing.TB, sub string, edit func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{
		Issuer:    testIssuer,
		Subject:   sub,
		Audience:  jwt.ClaimStrings{testClient},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	if edit != nil {
		edit(&c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = testKID
	s, err := tok.SignedString(signingKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// baseHeaders are a complete, valid set of request headers without
// Authorization.
func baseHeaders(lang string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-operating-sys-version", "windows10.1.1")
	h.Set("X-device-fingerprint", "156aysdna213sc50")
	h.Set("X-device-ip", "192.168.1.2")
	h.Set("X-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)")
	h.Set("X-client-id", testClient)
	if lang != "" {
		h.Set("X-L", lang)
	}
	return h
}

type reply struct {
	Status int
	Code   string `json:"error_code"`
	Msg    string `json:"error_msg"`
	Raw    string
	Header http.Header
}

func (f *fixture) do(t testing.TB, method, path string, h http.Header, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{Status: resp.StatusCode, Raw: string(raw), Header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("body %q is not JSON: %v", raw, err)
		}
	}
	return r
}

// sendCode asks for a code for email and returns the code mailed.
func (f *fixture) sendCode(t testing.TB, email string) string {
	t.Helper()
	r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":`+quote(email)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("send code to %q: %d %s", email, r.Status, r.Raw)
	}
	f.mail.mu.Lock()
	defer f.mail.mu.Unlock()
	return f.mail.msgs[len(f.mail.msgs)-1].Code
}

func (f *fixture) update(t testing.TB, tok, lang, email, code string) reply {
	t.Helper()
	h := baseHeaders(lang)
	h.Set("Authorization", "Bearer "+tok)
	return f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h,
		`{"email":`+quote(email)+`,"verify_code":`+quote(code)+`}`)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
