package selfservice_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// redisRoundTrips counts what a go-redis client sends: each command, and
// each pipeline or transaction as a whole, is one round trip.
type redisRoundTrips struct{ n atomic.Int64 }

func (*redisRoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *redisRoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *redisRoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestRedisRoundTrips is issue 19's count: with codes and budgets in one
// Redis, a send-code costs two round trips (its two send budgets in one
// script, then the code's Put) and an update-email one (its three budgets
// and the code in one script), right code or wrong. A change that adds a
// round trip to either fails here.
func TestRedisRoundTrips(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	var rt redisRoundTrips
	rdb.AddHook(&rt)
	f := newFixtureWith(t, func(c *selfservice.Config) {
		opts := redisstore.Options{Prefix: prefix}
		c.Codes = redisstore.NewCodeStore(rdb, opts)
		c.Limiter = redisstore.NewLimiter(rdb, opts)
	}, mustUser(t, "alice", "alice@example.com"))
	tok := token(t, "alice", nil)

	// Warm-up: each store reads the eviction policy at its first call,
	// and Redis loads each script once.
	f.changeTo(t, tok, "warm@example.com")
	if r := f.update(t, tok, "en", "wrong@example.com", "000000"); r.Status == http.StatusOK {
		t.Fatalf("a code never sent was accepted: %s", r.Raw)
	}

	measure := func(what string, most int64, op func()) {
		t.Helper()
		before := rt.n.Load()
		op()
		n := rt.n.Load() - before
		t.Logf("%s: %d Redis round trips", what, n)
		if n > most {
			t.Errorf("%s: %d Redis round trips, want at most %d", what, n, most)
		}
	}
	var code string
	measure("a successful send-code", 2, func() { code = f.sendCode(t, "new@example.com") })
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	measure("an update-email with a wrong code", 1, func() {
		if r := f.update(t, tok, "en", "new@example.com", wrong); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Errorf("update-email with a wrong code: %d %s, want CAPTCHA.0007", r.Status, r.Raw)
		}
	})
	measure("a successful update-email", 1, func() {
		if r := f.update(t, tok, "en", "new@example.com", code); r.Status != http.StatusOK {
			t.Errorf("update-email with the right code: %d %s", r.Status, r.Raw)
		}
	})
}

// countingLimiter counts the calls that reach a memstore.Limiter, each of
// which takes its lock once.
type countingLimiter struct {
	*memstore.Limiter
	mu    sync.Mutex
	calls map[string]int
}

func (l *countingLimiter) count(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[name]++
}

// take returns the calls counted since the last take.
func (l *countingLimiter) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls := l.calls
	l.calls = map[string]int{}
	return calls
}

func (l *countingLimiter) Reserve(ctx context.Context, key string, limits []store.Limit, now time.Time) (string, error) {
	l.count("Reserve")
	return l.Limiter.Reserve(ctx, key, limits, now)
}

func (l *countingLimiter) Cancel(ctx context.Context, key, id string) error {
	l.count("Cancel")
	return l.Limiter.Cancel(ctx, key, id)
}

func (l *countingLimiter) ReserveAll(ctx context.Context, reqs []store.LimitRequest, now time.Time) ([]string, error) {
	l.count("ReserveAll")
	return l.Limiter.ReserveAll(ctx, reqs, now)
}

func (l *countingLimiter) CancelAll(ctx context.Context, rs []store.Reservation) error {
	l.count("CancelAll")
	return l.Limiter.CancelAll(ctx, rs)
}

// TestMemoryLimiterLocks: in memory the budgets of a request are charged
// under one lock of the Limiter, and given back under one more: a
// send-code takes it once, an update-email twice (its three budgets, then
// the slots its outcome gives back), where one Reserve or Cancel a budget
// took it up to five times.
func TestMemoryLimiterLocks(t *testing.T) {
	t.Parallel()
	l := &countingLimiter{Limiter: memstore.NewLimiter(), calls: map[string]int{}}
	f := newFixtureWith(t, func(c *selfservice.Config) { c.Limiter = l }, mustUser(t, "alice", "alice@example.com"))
	tok := token(t, "alice", nil)
	check := func(what string, want map[string]int) {
		t.Helper()
		got := l.take()
		for _, name := range []string{"Reserve", "Cancel", "ReserveAll", "CancelAll"} {
			if got[name] != want[name] {
				t.Errorf("%s: %d calls of %s, want %d (all: %v)", what, got[name], name, want[name], got)
			}
		}
	}
	code := f.sendCode(t, "new@example.com")
	check("a successful send-code", map[string]int{"ReserveAll": 1})
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	f.update(t, tok, "en", "new@example.com", wrong)
	check("an update-email with a wrong code", map[string]int{"ReserveAll": 1, "CancelAll": 1})
	if r := f.update(t, tok, "en", "new@example.com", code); r.Status != http.StatusOK {
		t.Fatalf("update-email with the right code: %d %s", r.Status, r.Raw)
	}
	check("a successful update-email", map[string]int{"ReserveAll": 1, "CancelAll": 1})
}
