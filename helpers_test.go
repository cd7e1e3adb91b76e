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

func (c *countingCodes) Verify(ctx context.Context, k store.CodeKey, h [][]byte, max int, now time.Time) error {
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

// failingUsers fails every call but the outbox's while err is set.
type failingUsers struct {
	store.ChangeStore
	mu       sync.Mutex
	err      error
	leaseErr error // of LeaseNotices alone
	hang     bool  // the outbox's calls wait for their context to end
}

// hangOutbox makes the outbox's calls hang until their context ends, as
// on a database that stopped answering, or (false) answer again.
func (f *failingUsers) hangOutbox(hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = hang
}

func (f *failingUsers) hung(ctx context.Context) error {
	f.mu.Lock()
	hang := f.hang
	f.mu.Unlock()
	if !hang {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *failingUsers) NoticeBacklog(ctx context.Context) (int, time.Time, error) {
	if err := f.hung(ctx); err != nil {
		return 0, time.Time{}, err
	}
	return f.ChangeStore.NoticeBacklog(ctx)
}

// failLeases makes LeaseNotices fail with err (nil: work again).
func (f *failingUsers) failLeases(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaseErr = err
}

func (f *failingUsers) LeaseNotices(ctx context.Context, max int, now time.Time, lease time.Duration) ([]store.Notice, error) {
	f.mu.Lock()
	err := f.leaseErr
	f.mu.Unlock()
	if err == nil {
		err = f.hung(ctx)
	}
	if err != nil {
		return nil, err
	}
	return f.ChangeStore.LeaseNotices(ctx, max, now, lease)
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
	return f.ChangeStore.User(ctx, id)
}

func (f *failingUsers) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	if err := f.get(); err != nil {
		return err
	}
	return f.ChangeStore.UpdateEmail(ctx, id, email, canonical)
}

func (f *failingUsers) ChangeEmail(ctx context.Context, c store.EmailChange) error {
	if err := f.get(); err != nil {
		return err
	}
	return f.ChangeStore.ChangeEmail(ctx, c)
}

func (f *failingUsers) RevertEmail(ctx context.Context, r store.EmailRevert) (store.Reverted, error) {
	if err := f.get(); err != nil {
		return store.Reverted{}, err
	}
	return f.ChangeStore.RevertEmail(ctx, r)
}

// fixture is the whole API on an httptest server over memory stores.
type fixture struct {
	cfg     selfservice.Config // as given to New
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
	f.fusers = &failingUsers{ChangeStore: f.users}
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
	f.cfg = cfg
	svc, err := selfservice.NewWithFastCourier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
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
	for i := len(f.mail.msgs) - 1; i >= 0; i-- {
		// The courier may have mailed a notice since.
		if m := f.mail.msgs[i]; m.Kind == selfservice.MailCode {
			return m.Code
		}
	}
	t.Fatalf("no code mailed to %q", email)
	return ""
}

func (f *fixture) update(t testing.TB, tok, lang, email, code string) reply {
	t.Helper()
	h := baseHeaders(lang)
	h.Set("Authorization", "Bearer "+tok)
	return f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h,
		`{"email":`+quote(email)+`,"verify_code":`+quote(code)+`}`)
}

// changeTo changes the address of tok's user to email, through the API.
func (f *fixture) changeTo(t testing.TB, tok, email string) {
	t.Helper()
	code := f.sendCode(t, email)
	if r := f.update(t, tok, "en", email, code); r.Status != http.StatusOK {
		t.Fatalf("change to %s: %d %s", email, r.Status, r.Raw)
	}
}

// revertToken waits for the latest notice to the old address to and
// returns its undo token.
func (f *fixture) revertToken(t testing.TB, to string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns := f.notices()
		for i := len(ns) - 1; i >= 0; i-- {
			if ns[i].To == to {
				return ns[i].RevertToken
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notice to %s after 10 s; notices %v", to, ns)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fixture) revert(t testing.TB, revertToken string) reply {
	t.Helper()
	return f.do(t, http.MethodPost, selfservice.RevertEmailPath, baseHeaders("en"), `{"revert_token":`+quote(revertToken)+`}`)
}

// notices returns the notices f's mailer has taken so far.
func (f *fixture) notices() []selfservice.Message {
	f.mail.mu.Lock()
	defer f.mail.mu.Unlock()
	var ns []selfservice.Message
	for _, m := range f.mail.msgs {
		if m.Kind == selfservice.MailEmailChanged {
			ns = append(ns, m)
		}
	}
	return ns
}

// waitNotices waits until f's mailer has taken n notices, and returns
// them.
func (f *fixture) waitNotices(t testing.TB, n int) []selfservice.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns := f.notices()
		if len(ns) >= n {
			return ns
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the mailer has %d notices, want %d", len(ns), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
