package integration_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/loadgen"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// soakDuration is how long TestSoak drives the API: SELFSERVICE_SOAK
// (a time.ParseDuration value, e.g. 5m) or 15 seconds, so that CI stays
// quick while a longer soak is one variable away.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("SELFSERVICE_SOAK")
	if v == "" {
		return 15 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("SELFSERVICE_SOAK=%q is not a positive duration", v)
	}
	return d
}

// heapAfterGC is the live heap, measured after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSoak drives the whole API on PostgreSQL and Redis with mixed valid and
// invalid traffic at high concurrency: no 5xx and no unexpected answer,
// every confirmed change in the store exactly as the load saw it, the live
// heap flat from the first third of the run to its end, and (TestMain) no
// goroutine left behind.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	db := postgresVia(t, pgAddr(t))
	if err := sqlstore.Migrate(t.Context(), db, sqlstore.Postgres); err != nil {
		t.Fatal(err)
	}
	rdb := redisVia(t, redisAddr(t))
	users := sqlstore.NewUserStore(db, sqlstore.Postgres)
	const nUsers, concurrency = 128, 32
	var load []loadgen.User
	for i := range nUsers {
		u := store.User{ID: fmt.Sprintf("soak-%03d", i)}
		u.Email = u.ID + "@example.com"
		u.CanonicalEmail = u.Email
		if err := users.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		load = append(load, loadgen.User{ID: u.ID, Email: u.Email, Token: testkit.Token(t, u.ID, func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(duration + time.Hour))
		})})
	}
	mails := loadgen.NewMailLog()
	prefix := redisstore.Options{Prefix: "selfservice-soak-" + randomSuffix() + ":"}
	svc, err := selfservice.New(selfservice.Config{
		Users:      users,
		Codes:      redisstore.NewCodeStore(rdb, prefix),
		Limiter:    redisstore.NewLimiter(rdb, prefix),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testkit.Client}),
		Verifier:   testkit.Verifier(t),
		Mailer:     selfservice.NewLogMailer(mails),
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(strings.Repeat("s", selfservice.MinCodeSecretLen)),
		// The load mails every user a code per round, all from one
		// address.
		Budgets: testkit.LooseBudgets(),
		// A send holds a mail slot through its budget and code writes
		// too, which a loaded machine stretches: with the default 16
		// slots for 32 clients, sends found them all busy and were
		// refused (CAPTCHA.0006, a 500) under two busy loops. Mail
		// backpressure has tests of its own; here every client gets one.
		MailConcurrency: concurrency,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, svc) })
	h := svc.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	opts := loadgen.Options{
		BaseURL:     srv.URL,
		ClientID:    testkit.Client,
		Users:       load,
		Codes:       mails,
		Concurrency: concurrency,
		Duration:    duration,
		Requests:    10_000_000,
	}
	// The heap is sampled a third of the way in, once the pools and
	// caches are warm, and again at the end.
	var heapMid uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		time.Sleep(duration / 3)
		heapMid = heapAfterGC()
	}()
	rep, err := loadgen.Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	<-sampled
	heapEnd := heapAfterGC()
	t.Logf("soak: %d requests in %v (%.0f/s) at concurrency %d, %d changes; status %v; p50 %v p99 %v; live heap %d KiB at 1/3, %d KiB at the end",
		rep.Requests, rep.Elapsed.Round(time.Millisecond), rep.RPS, concurrency, rep.Changes, rep.Status,
		rep.Latency.P50, rep.Latency.P99, heapMid>>10, heapEnd>>10)

	for status, n := range rep.Status {
		if status >= 500 {
			t.Errorf("%d answers with status %d", n, status)
		}
	}
	if rep.Unexpected > 0 {
		t.Errorf("%d unexpected answers, e.g. %q", rep.Unexpected, rep.Samples)
	}
	if rep.Changes == 0 {
		t.Fatal("no change was made")
	}
	// Every change the load saw confirmed is in the store, as confirmed:
	// applied, and applied once (a second application would have moved
	// the user on, or failed a later flow).
	for id, want := range rep.Final {
		u, err := users.User(t.Context(), id)
		if err != nil || u.Email != want {
			t.Errorf("user %s: store has %q (%v), load confirmed %q", id, u.Email, err, want)
		}
	}
	if bad, err := loadgen.Check(t.Context(), opts, rep.Final); err != nil || len(bad) > 0 {
		t.Errorf("Check: %v %v", bad, err)
	}
	// Flat memory: the live heap may wobble, not grow with the requests.
	if heapEnd > heapMid+heapMid/2+(4<<20) {
		t.Errorf("live heap grew from %d KiB to %d KiB", heapMid>>10, heapEnd>>10)
	}
}
