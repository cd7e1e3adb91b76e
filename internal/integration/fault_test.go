package integration_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/tcpproxy"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// lastCode keeps the code of the last mail.
type lastCode struct {
	mu   sync.Mutex
	code string
}

func (m *lastCode) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if msg.Code != "" {
		m.code = msg.Code
	}
	return nil
}

func (m *lastCode) get() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.code
}

// shutdown stops svc's notice workers, which goleak would otherwise find
// after the tests.
func shutdown(t *testing.T, svc *selfservice.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// postgresVia opens the test database through addr (a proxy, or the
// server itself) in a schema of its own, dropped when t ends.
func postgresVia(t *testing.T, addr string) *sql.DB {
	t.Helper()
	return pgtest.Open(t, addr)
}

func pgAddr(t *testing.T) string { return pgtest.Addr(t) }

func redisVia(t *testing.T, addr string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Lookup(t, testenv.Redis))
	if err != nil {
		t.Fatal(err)
	}
	opts.Addr = addr
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func redisAddr(t *testing.T) string {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Lookup(t, testenv.Redis))
	if err != nil {
		t.Fatal(err)
	}
	return opts.Addr
}

// TestServiceCutMidRun cuts the connection to PostgreSQL and to Redis in
// turn while the API serves: both endpoints answer the internal-error code
// with 500, no code is accepted while the code store is down, and requests
// succeed again once the connection is back, without a restart.
func TestServiceCutMidRun(t *testing.T) {
	pgProxy := tcpproxy.Start(t, pgAddr(t))
	redisProxy := tcpproxy.Start(t, redisAddr(t))

	db := postgresVia(t, pgProxy.Addr())
	if err := sqlstore.Migrate(t.Context(), db, sqlstore.Postgres); err != nil {
		t.Fatal(err)
	}
	users := sqlstore.NewUserStore(db, sqlstore.Postgres)
	clients := sqlstore.NewClientRegistry(db, sqlstore.Postgres)
	if err := clients.CreateClient(t.Context(), store.Client{ID: testkit.Client}); err != nil {
		t.Fatal(err)
	}
	if err := users.CreateUser(t.Context(), store.User{ID: "alice", Email: "alice@example.com", CanonicalEmail: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	rdb := redisVia(t, redisProxy.Addr())
	opts := redisstore.Options{Prefix: "selfservice-fault-" + randomSuffix() + ":"}
	mail := &lastCode{}
	svc, err := selfservice.New(selfservice.Config{
		Users:      users,
		Codes:      redisstore.NewCodeStore(rdb, opts),
		Limiter:    redisstore.NewLimiter(rdb, opts),
		Clients:    clients,
		Verifier:   testkit.Verifier(t),
		Mailer:     mail,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(strings.Repeat("f", selfservice.MinCodeSecretLen)),
		// A code per step to the same address.
		Budgets: testkit.LooseBudgets(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, svc) })
	h := svc.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok := testkit.Token(t, "alice", nil)

	send := func(email string) testkit.Reply {
		return testkit.Do(t, srv.Client(), http.MethodPost, srv.URL+selfservice.SendCodePath, testkit.Headers("en"),
			`{"email":`+testkit.Quote(email)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	}
	update := func(email, code string) testkit.Reply {
		h := testkit.Headers("en")
		h.Set("Authorization", "Bearer "+tok)
		return testkit.Do(t, srv.Client(), http.MethodPost, srv.URL+selfservice.UpdateEmailPath, h,
			`{"email":`+testkit.Quote(email)+`,"verify_code":`+testkit.Quote(code)+`}`)
	}
	want := func(step string, r testkit.Reply, status int, code string) {
		t.Helper()
		if r.Status != status || r.Code != code {
			t.Fatalf("%s: got %d %q (%s), want %d %q", step, r.Status, r.Code, r.Raw, status, code)
		}
		if status == http.StatusInternalServerError && (strings.Contains(r.Raw, "redis") || strings.Contains(r.Raw, "EOF") || strings.Contains(r.Raw, "sql")) {
			t.Fatalf("%s: the body leaks the cause: %s", step, r.Raw)
		}
	}

	want("healthy send", send("one@example.com"), 200, "")
	code := mail.get()

	t.Log("cut Redis")
	redisProxy.Cut()
	want("send, Redis cut", send("one@example.com"), 500, "IDAAS.SDK.SYS.9001")
	want("update with the right code, Redis cut", update("one@example.com", code), 500, "IDAAS.SDK.SYS.9001")
	if u, _ := users.User(t.Context(), "alice"); u.Email != "alice@example.com" {
		t.Fatalf("email changed to %q while the code store was down", u.Email)
	}
	redisProxy.Restore()
	t.Log("Redis back")
	want("update with the same code, Redis back", update("one@example.com", code), 200, "")

	t.Log("cut PostgreSQL")
	pgProxy.Cut()
	// The client's registration is cached (Config.ClientCacheTTL), and a
	// send needs nothing else from PostgreSQL; a client id not cached yet
	// must ask the registry, which fails closed.
	want("send, PostgreSQL cut, cached client", send("two@example.com"), 200, "")
	other := testkit.Headers("en")
	other.Set("X-client-id", "not-cached")
	want("send, PostgreSQL cut, client not cached", testkit.Do(t, srv.Client(), http.MethodPost, srv.URL+selfservice.SendCodePath, other,
		`{"email":"two@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`), 500, "IDAAS.SDK.SYS.9001")
	want("update, PostgreSQL cut", update("two@example.com", mail.get()), 500, "IDAAS.SDK.SYS.9001")
	pgProxy.Restore()
	t.Log("PostgreSQL back")
	want("send, PostgreSQL back", send("two@example.com"), 200, "")
	want("update, PostgreSQL back", update("two@example.com", mail.get()), 200, "")
	if u, _ := users.User(t.Context(), "alice"); u.Email != "two@example.com" {
		t.Fatalf("email is %q at the end", u.Email)
	}
}
