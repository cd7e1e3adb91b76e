package selfservice_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

const testClient = testkit.Client

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

func (m *recordingMailer) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
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

func (c *countingCodes) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
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
	svc     *selfservice.Service
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
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testClient}),
		Verifier:   testkit.Verifier(t),
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
	f.svc = svc
	h := svc.Handler()
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func token(t testing.TB, sub string, edit func(*jwt.RegisteredClaims)) string {
	t.Helper()
	return testkit.Token(t, sub, edit)
}

func baseHeaders(lang string) http.Header { return testkit.Headers(lang) }

type reply = testkit.Reply

func (f *fixture) do(t testing.TB, method, path string, h http.Header, body string) reply {
	t.Helper()
	return testkit.Do(t, f.srv.Client(), method, f.srv.URL+path, h, body)
}

func quote(s string) string { return testkit.Quote(s) }

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

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
