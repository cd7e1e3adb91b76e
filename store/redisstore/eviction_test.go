package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// wrongCodes is the budget: ten wrong codes an hour.
var wrongCodes = []store.Limit{{N: 10, Window: time.Hour}}

// codeKey is the code the tests put and verify.
var codeKey = store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "alice@example.com"}

// stores is a code store and a limiter on one client.
type stores struct {
	codes   *redisstore.CodeStore
	limiter *redisstore.Limiter
}

func newStores(rdb redis.UniversalClient, opts redisstore.Options) stores {
	return stores{redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)}
}

// calls runs each of the stores' calls once and returns their errors by
// name; each call that should succeed does on a Redis that serves.
func (s stores) calls(ctx context.Context) map[string]error {
	now := time.Now()
	errs := map[string]error{}
	_, errs["Reserve"] = s.limiter.Reserve(ctx, "wrong-user\x00alice", wrongCodes, now)
	errs["Cancel"] = s.limiter.Cancel(ctx, "wrong-user\x00alice", "no-such-id")
	batch := []store.LimitRequest{{Key: "wrong-ip\x00192.0.2.1", Limits: wrongCodes}, {Key: "changes-user\x00alice", Limits: wrongCodes}}
	_, errs["ReserveAll"] = s.limiter.ReserveAll(ctx, batch, now)
	errs["CancelAll"] = s.limiter.CancelAll(ctx, []store.Reservation{{Key: "wrong-user\x00alice", ID: "no-such-id"}})
	errs["Put"] = s.codes.Put(ctx, codeKey, []byte("h"), now.Add(time.Minute))
	_, errs["CheckCode"] = s.codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{[]byte("h")}, MaxTries: 5, Now: now,
		Charges: []store.Charge{{LimitRequest: batch[0], KeepOn: store.OnMismatch}, {LimitRequest: batch[1], KeepOn: store.OnMatch}}})
	errs["Put again"] = s.codes.Put(ctx, codeKey, []byte("h"), now.Add(time.Minute))
	errs["Verify"] = s.codes.Verify(ctx, codeKey, [][]byte{[]byte("h")}, 5, now)
	return errs
}

// TestEvictionPolicy: on a Redis whose maxmemory-policy may evict the
// stores' keys, every call and Check fail with ErrEvictionPolicy, naming
// the policy, and write nothing; the policy is read from INFO where CONFIG
// is disabled, and a server that tells it nowhere is refused too. Only
// noeviction serves.
func TestEvictionPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		policy string // in LastPolicyCheck
		want   error
	}{
		{"noeviction", nil, "noeviction", nil},
		{"volatile-lru", []string{"--maxmemory-policy", "volatile-lru"}, "volatile-lru", redisstore.ErrEvictionPolicy},
		{"volatile-ttl", []string{"--maxmemory-policy", "volatile-ttl"}, "volatile-ttl", redisstore.ErrEvictionPolicy},
		{"allkeys-lfu", []string{"--maxmemory-policy", "allkeys-lfu"}, "allkeys-lfu", redisstore.ErrEvictionPolicy},
		{"CONFIG disabled, INFO says noeviction", []string{"--rename-command", "CONFIG", ""}, "noeviction", nil},
		{"CONFIG disabled, INFO says volatile-lru", []string{"--rename-command", "CONFIG", "", "--maxmemory-policy", "volatile-lru"}, "volatile-lru", redisstore.ErrEvictionPolicy},
		{"CONFIG and INFO disabled", []string{"--rename-command", "CONFIG", "", "--rename-command", "INFO", ""}, "", redisstore.ErrEvictionPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.StartServer(t, tt.args...).Client(t)
			ctx := t.Context()
			s := newStores(rdb, redisstore.Options{})
			for call, err := range s.calls(ctx) {
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Errorf("%s: %v, want %v", call, err, tt.want)
				}
				if tt.want != nil && tt.policy != "" && !strings.Contains(err.Error(), tt.policy) {
					t.Errorf("%s: %q does not name the policy %s", call, err, tt.policy)
				}
			}
			if err := s.limiter.Check(ctx); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Limiter.Check: %v, want %v", err, tt.want)
			}
			if err := s.codes.Check(ctx); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CodeStore.Check: %v, want %v", err, tt.want)
			}
			last := s.limiter.LastPolicyCheck()
			if last.Policy != tt.policy || last.CheckedAt.IsZero() || !errors.Is(last.Err, tt.want) {
				t.Errorf("LastPolicyCheck() = %+v, want policy %q, a time and %v", last, tt.policy, tt.want)
			}
			if tt.want != nil {
				if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
					t.Errorf("DBSIZE = %d, %v after refused calls; want 0", n, err)
				}
			}
		})
	}
}

// TestEvictionPolicyRing: with several servers, one that may evict is
// enough to refuse.
func TestEvictionPolicyRing(t *testing.T) {
	t.Parallel()
	safe := redistest.StartServer(t)
	evicting := redistest.StartServer(t, "--maxmemory-policy", "allkeys-lru")
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": safe.Addr, "b": evicting.Addr}})
	t.Cleanup(func() { ring.Close() })
	l := redisstore.NewLimiter(ring, redisstore.Options{})
	if err := l.Check(t.Context()); !errors.Is(err, redisstore.ErrEvictionPolicy) || !strings.Contains(err.Error(), "allkeys-lru") {
		t.Errorf("Check on a ring with an allkeys-lru shard: %v, want ErrEvictionPolicy naming allkeys-lru", err)
	}
}

// TestCheckUnreachable: a Redis that cannot be reached is an error, not a
// reading: it does not wrap ErrEvictionPolicy, and the next call reads
// again.
func TestCheckUnreachable(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := srv.Client(t)
	l := redisstore.NewLimiter(rdb, redisstore.Options{})
	srv.Kill(t)
	err := l.Check(t.Context())
	if err == nil || errors.Is(err, redisstore.ErrEvictionPolicy) {
		t.Errorf("Check with Redis down: %v, want a connection error", err)
	}
	if last := l.LastPolicyCheck(); !last.CheckedAt.IsZero() {
		t.Errorf("LastPolicyCheck() = %+v after a failed reading, want none", last)
	}
	srv.Restart(t)
	if _, err := l.Reserve(t.Context(), "k", wrongCodes, time.Now()); err != nil {
		t.Errorf("Reserve once Redis is back: %v", err)
	}
}

// TestAllowEviction: the opt-ins serve, and say so: a warning in the log
// and LastPolicyCheck's Err.
func TestAllowEviction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		opts redisstore.Options
	}{
		{"AllowEviction on volatile-lru", []string{"--maxmemory-policy", "volatile-lru"}, redisstore.Options{AllowEviction: true}},
		{"AllowUnknownPolicy without CONFIG and INFO", []string{"--rename-command", "CONFIG", "", "--rename-command", "INFO", ""}, redisstore.Options{AllowUnknownPolicy: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.StartServer(t, tt.args...).Client(t)
			var log bytes.Buffer
			tt.opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
			s := newStores(rdb, tt.opts)
			for call, err := range s.calls(t.Context()) {
				if err != nil && !errors.Is(err, store.ErrCodeInvalid) {
					t.Errorf("%s: %v, want it served", call, err)
				}
			}
			if err := s.limiter.Check(t.Context()); err != nil {
				t.Errorf("Check: %v, want nil: the application allowed it", err)
			}
			if last := s.limiter.LastPolicyCheck(); !errors.Is(last.Err, redisstore.ErrEvictionPolicy) {
				t.Errorf("LastPolicyCheck().Err = %v, want ErrEvictionPolicy", last.Err)
			}
			if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "may evict") {
				t.Errorf("log = %q, want a warning", log.String())
			}
		})
	}
}

// TestEvictionReplay is the scenario at store level: a budget
// spent on a noeviction Redis, the policy changed to volatile-lru at run
// time, memory filled with other keys that carry a TTL until Redis has
// evicted the budget. The limiter refuses to serve from the reading after
// the change on; one that allowed eviction admits the same key again: the
// reset the default prevents.
func TestEvictionReplay(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	rdb := redistest.StartServer(t, "--maxmemory", "2mb").Client(t)
	ctx := t.Context()
	l := redisstore.NewLimiter(rdb, redisstore.Options{PolicyCheckInterval: interval})
	allowing := redisstore.NewLimiter(rdb, redisstore.Options{PolicyCheckInterval: interval, AllowEviction: true, Logger: discard})
	const key = "wrong-user\x00alice"
	for i := range wrongCodes[0].N {
		if _, err := l.Reserve(ctx, key, wrongCodes, time.Now()); err != nil {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	if _, err := l.Reserve(ctx, key, wrongCodes, time.Now()); !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("wrong code %d: %v, want ErrRateLimited", wrongCodes[0].N+1, err)
	}

	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	budgetGone := func() bool {
		keys, err := rdb.Keys(ctx, redisstore.DefaultPrefix+"limit:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys) == 0
	}
	written := fill(t, rdb, budgetGone)
	evicted := infoInt(t, rdb, "stats", "evicted_keys")
	t.Logf("%d filler keys written, %d keys evicted, the budget among them", written, evicted)

	time.Sleep(interval)
	if _, err := l.Reserve(ctx, key, wrongCodes, time.Now()); !errors.Is(err, redisstore.ErrEvictionPolicy) {
		t.Errorf("Reserve after the eviction: %v, want ErrEvictionPolicy", err)
	}
	for i := range 3 {
		if _, err := allowing.Reserve(ctx, key, wrongCodes, time.Now()); err != nil {
			t.Errorf("with AllowEviction, wrong code %d after the eviction: %v; want it admitted, the budget having been reset", wrongCodes[0].N+1+i, err)
		}
	}
}

// TestPolicyChangeNoticed: a policy changed with CONFIG SET is noticed by
// the first call after PolicyCheckInterval, and the calls before it cost
// no reading; the fix back to noeviction is noticed by the next call.
func TestPolicyChangeNoticed(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	rdb := redistest.StartServer(t).Client(t)
	ctx := t.Context()
	l := redisstore.NewLimiter(rdb, redisstore.Options{PolicyCheckInterval: interval})
	limits := []store.Limit{{N: 1 << 20, Window: time.Minute}}
	reserve := func() error {
		_, err := l.Reserve(ctx, "k", limits, time.Now())
		return err
	}
	if err := reserve(); err != nil {
		t.Fatal(err)
	}
	readings := func() int64 { return infoInt(t, rdb, "commandstats", "cmdstat_config|get") }
	before := readings()
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	var served int
	for {
		err := reserve()
		if errors.Is(err, redisstore.ErrEvictionPolicy) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		served++
		if time.Since(changed) > interval+2*time.Second {
			t.Fatalf("still serving %v after the change to allkeys-lru (PolicyCheckInterval %v)", time.Since(changed), interval)
		}
		time.Sleep(time.Millisecond)
	}
	noticed := time.Since(changed)
	if n := readings() - before; n != 1 {
		t.Errorf("%d CONFIG GET calls for %d Reserves served and the one refused, want the one reading that noticed", n, served)
	}
	if noticed > interval+300*time.Millisecond {
		t.Errorf("noticed %v after the change, want within the interval %v", noticed, interval)
	}
	t.Logf("noticed after %v and %d calls served without a reading", noticed, served)

	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := reserve(); err != nil {
		t.Errorf("first Reserve after the fix: %v, want it served", err)
	}
}

// TestNoevictionFull: on a full noeviction Redis every call that would
// write fails with Redis's OOM error, and nothing is admitted beyond a
// limit: a spent budget still refuses, a budget with room fails instead of
// admitting, a code is compared with no hash (no oracle for wrong guesses
// whose tries Redis could not count). Once memory is freed the code still
// works: the failed calls spent none of its tries.
func TestNoevictionFull(t *testing.T) {
	t.Parallel()
	rdb, s := beforeFull(t)
	ctx, limits, right, wrong := t.Context(), fullLimits, fullRight, []byte("wrong")
	makeFull(t, rdb)

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 20 {
		wg.Go(func() {
			_, err := s.limiter.Reserve(ctx, "spent", limits, time.Now())
			errs <- err
		})
		wg.Go(func() {
			_, err := s.limiter.Reserve(ctx, "room", limits, time.Now())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("Reserve admitted on a full Redis")
		} else if !errors.Is(err, store.ErrRateLimited) && !isOOM(err) {
			t.Errorf("Reserve on a full Redis: %v, want ErrRateLimited or an OOM error", err)
		}
	}
	if _, err := s.limiter.Reserve(ctx, "spent", limits, time.Now()); !errors.Is(err, store.ErrRateLimited) {
		t.Errorf("Reserve of a spent budget: %v, want ErrRateLimited", err)
	}
	if _, err := s.limiter.Reserve(ctx, "room", limits, time.Now()); !isOOM(err) {
		t.Errorf("Reserve of a budget with room: %v, want an OOM error", err)
	}
	if _, err := s.limiter.Reserve(ctx, "new", limits, time.Now()); !isOOM(err) {
		t.Errorf("Reserve of a new budget: %v, want an OOM error", err)
	}
	for i := range 10 {
		if err := s.codes.Verify(ctx, codeKey, [][]byte{wrong}, 5, time.Now()); !isOOM(err) {
			t.Errorf("wrong guess %d: %v, want an OOM error", i+1, err)
		}
	}
	if err := s.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()); !isOOM(err) {
		t.Errorf("the right code: %v, want an OOM error", err)
	}
	if err := s.codes.Put(ctx, store.CodeKey{Purpose: "P", Email: "bob@example.com"}, right, time.Now().Add(time.Hour)); !isOOM(err) {
		t.Errorf("Put: %v, want an OOM error", err)
	}

	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()); err != nil {
		t.Errorf("the right code once memory is free: %v", err)
	}
}

// discard is a logger for the warnings a test does not read.
var discard = slog.New(slog.DiscardHandler)

// fill writes keys of a kilobyte with an hour's TTL, not under the
// stores' prefix, until done reports true (asked every 100 keys), and
// returns how many it wrote. It fails t after 100,000.
func fill(t *testing.T, rdb *redis.Client, done func() bool) int {
	t.Helper()
	value := strings.Repeat("x", 1024)
	for n := 0; n < 100_000; n += 100 {
		if done() {
			return n
		}
		_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
			for i := range 100 {
				p.Set(t.Context(), "filler:"+strconv.Itoa(n+i), value, time.Hour)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	t.Fatal("fill: not done after 100,000 keys")
	return 0
}

// makeFull fills a noeviction Redis with a megabyte and a half of other
// keys and then sets maxmemory to half of what it uses, so that it stays
// full whatever its buffers do meanwhile.
// fullLimits are the budgets of beforeFull's keys, and fullRight the hash
// of its code.
var (
	fullLimits = []store.Limit{{N: 3, Window: time.Hour}}
	fullRight  = []byte("right")
)

// beforeFull starts a Redis of the test's own, as the tests of a full
// Redis want it before makeFull: the budget "spent" spent, the budget
// "room" with room, the code fullRight stored at codeKey.
func beforeFull(t *testing.T) (*redis.Client, stores) {
	t.Helper()
	rdb := redistest.StartServer(t).Client(t)
	ctx := t.Context()
	s := newStores(rdb, redisstore.Options{})
	for range 3 {
		if _, err := s.limiter.Reserve(ctx, "spent", fullLimits, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.limiter.Reserve(ctx, "room", fullLimits, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.codes.Put(ctx, codeKey, fullRight, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return rdb, s
}

// isOOM reports whether err is Redis's refusal of a write when full.
func isOOM(err error) bool { return err != nil && strings.Contains(err.Error(), "OOM") }

func makeFull(t *testing.T, rdb *redis.Client) {
	t.Helper()
	n := 0
	fill(t, rdb, func() bool { n++; return n > 15 })
	used := infoInt(t, rdb, "memory", "used_memory")
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(used/2, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(t.Context(), "probe", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("SET on the full Redis: %v, want an OOM error", err)
	}
}

// infoInt returns the integer field of an INFO section; for a
// commandstats entry, its calls.
func infoInt(t *testing.T, rdb *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":")
		if !ok {
			continue
		}
		if calls, ok := strings.CutPrefix(v, "calls="); ok {
			v, _, _ = strings.Cut(calls, ",")
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("INFO %s %s: %v", section, field, err)
		}
		return n
	}
	if section == "commandstats" {
		return 0
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}
