package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestBatchLimiter(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestBatchLimiter(t, func(t *testing.T) store.BatchLimiter {
		rdb, prefix := redistest.Open(t)
		return redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	})
}

func TestCodeChecker(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestCodeChecker(t, func(t *testing.T) (store.CodeChecker, store.Limiter) {
		rdb, prefix := redistest.Open(t)
		opts := redisstore.Options{Prefix: prefix}
		return redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)
	})
}

// On a ring the keys of one batch live on different servers: ReserveAll
// reserves them one by one and gives back what it took when one refuses,
// which passes the suite, races included.
func TestBatchLimiterRing(t *testing.T) {
	t.Parallel()
	a, b := redistest.StartServer(t), redistest.StartServer(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
	t.Cleanup(func() { ring.Close() })
	var n atomic.Int64
	t.Run("suite", func(t *testing.T) { // returns once its parallel subtests have
		storetest.TestBatchLimiter(t, func(t *testing.T) store.BatchLimiter {
			return redisstore.NewLimiter(ring, redisstore.Options{Prefix: "ring" + strconv.FormatInt(n.Add(1), 10) + ":"})
		})
	})
	for _, c := range []*redis.Client{a.Client(t), b.Client(t)} {
		if n, err := c.DBSize(t.Context()).Result(); err != nil || n == 0 {
			t.Errorf("a server of the ring holds %d keys (%v): the batches did not span both", n, err)
		}
	}
}

// On Redis Cluster no script may touch keys of two hash slots: ReserveAll
// goes key by key, and SharesBudgets is false, so that the Service never
// asks for CheckCode.
func TestBatchLimiterCluster(t *testing.T) {
	t.Parallel()
	rdb := startCluster(t)
	var n atomic.Int64
	newLimiter := func(t *testing.T) store.BatchLimiter {
		return redisstore.NewLimiter(rdb, redisstore.Options{Prefix: "cluster" + strconv.FormatInt(n.Add(1), 10) + ":"})
	}
	t.Run("suite", func(t *testing.T) { storetest.TestBatchLimiter(t, newLimiter) })

	opts := redisstore.Options{Prefix: "cluster-codes:"}
	codes, limiter := redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)
	if codes.SharesBudgets(limiter) {
		t.Error("SharesBudgets on a cluster client = true, want false")
	}
	_, err := codes.CheckCode(t.Context(), store.CodeCheck{
		Key: codeKey, Hashes: [][]byte{[]byte("h")}, MaxTries: 5, Now: time.Now(),
		Charges: []store.Charge{{LimitRequest: store.LimitRequest{Key: "k", Limits: wrongCodes}, KeepOn: store.OnMismatch}},
	})
	if err == nil || errors.Is(err, store.ErrCodeInvalid) {
		t.Errorf("CheckCode on a cluster: %v, want a failure", err)
	}
}

// startCluster starts a Redis Cluster of one node that serves every slot,
// and returns a cluster client of it.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	// The cluster bus listens on a port of its own, by default the
	// client port plus 10000, which may be taken or out of range.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bus := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	srv := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", bus)
	node := srv.Client(t)
	ctx := t.Context()
	if err := node.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := node.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not ok after 10s: %v %s", err, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// SharesBudgets accepts a Limiter only when CheckCode's charges land in
// its keys and are guarded as its own calls guard them.
func TestSharesBudgets(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	other := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() {
		for _, c := range []interface{ Close() error }{rdb, other, ring, cluster} {
			c.Close()
		}
	})
	p := redisstore.Options{Prefix: "p:"}
	with := func(edit func(*redisstore.Options)) redisstore.Options {
		o := p
		edit(&o)
		return o
	}
	var nilLimiter *redisstore.Limiter
	for _, tt := range []struct {
		name    string
		codes   *redisstore.CodeStore
		limiter store.Limiter
		want    bool
	}{
		{"same client and prefix", redisstore.NewCodeStore(rdb, p), redisstore.NewLimiter(rdb, p), true},
		{"default prefix on both", redisstore.NewCodeStore(rdb, redisstore.Options{}), redisstore.NewLimiter(rdb, redisstore.Options{Prefix: redisstore.DefaultPrefix}), true},
		{"another prefix", redisstore.NewCodeStore(rdb, p), redisstore.NewLimiter(rdb, redisstore.Options{Prefix: "q:"}), false},
		{"another client of the same server", redisstore.NewCodeStore(rdb, p), redisstore.NewLimiter(other, p), false},
		{"a memstore Limiter", redisstore.NewCodeStore(rdb, p), memstore.NewLimiter(), false},
		{"a nil *Limiter", redisstore.NewCodeStore(rdb, p), nilLimiter, false},
		{"a ring", redisstore.NewCodeStore(ring, p), redisstore.NewLimiter(ring, p), false},
		{"a cluster", redisstore.NewCodeStore(cluster, p), redisstore.NewLimiter(cluster, p), false},
		{"the Limiter waits for a replica, the codes do not",
			redisstore.NewCodeStore(rdb, p), redisstore.NewLimiter(rdb, with(func(o *redisstore.Options) { o.Replicas = 1 })), false},
		{"the codes wait for a replica, the Limiter does not",
			redisstore.NewCodeStore(rdb, with(func(o *redisstore.Options) { o.Replicas = 1 })), redisstore.NewLimiter(rdb, p), true},
		{"the codes allow eviction, the Limiter does not",
			redisstore.NewCodeStore(rdb, with(func(o *redisstore.Options) { o.AllowEviction = true })), redisstore.NewLimiter(rdb, p), false},
		{"both allow eviction",
			redisstore.NewCodeStore(rdb, with(func(o *redisstore.Options) { o.AllowEviction = true })),
			redisstore.NewLimiter(rdb, with(func(o *redisstore.Options) { o.AllowEviction = true })), true},
		{"the codes allow an unknown policy, the Limiter does not",
			redisstore.NewCodeStore(rdb, with(func(o *redisstore.Options) { o.AllowUnknownPolicy = true })), redisstore.NewLimiter(rdb, p), false},
		{"the Limiter allows eviction, the codes do not",
			redisstore.NewCodeStore(rdb, p), redisstore.NewLimiter(rdb, with(func(o *redisstore.Options) { o.AllowEviction = true })), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.codes.SharesBudgets(tt.limiter); got != tt.want {
				t.Errorf("SharesBudgets = %v, want %v", got, tt.want)
			}
		})
	}
}

// roundTrips counts the commands and pipelines a client sends: each is
// one round trip.
type roundTrips struct{ n atomic.Int64 }

func (*roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// The calls that charge several budgets cost one round trip each, once
// the policy is read and the scripts are cached.
func TestBatchRoundTrips(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	ctx := t.Context()
	var rt roundTrips
	rdb.AddHook(&rt)
	opts := redisstore.Options{Prefix: prefix}
	codes, limiter := redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)
	limits := []store.Limit{{N: 100, Window: time.Hour}}
	reqs := []store.LimitRequest{{Key: "a", Limits: limits}, {Key: "b", Limits: limits}, {Key: "c", Limits: limits}}
	charges := []store.Charge{
		{LimitRequest: reqs[0], KeepOn: store.OnMismatch},
		{LimitRequest: reqs[1], KeepOn: store.OnMismatch},
		{LimitRequest: reqs[2], KeepOn: store.OnMatch},
	}
	right := []byte("right")
	calls := []struct {
		name string
		f    func() error
	}{
		{"ReserveAll", func() error { _, err := limiter.ReserveAll(ctx, reqs, time.Now()); return err }},
		{"CancelAll", func() error {
			return limiter.CancelAll(ctx, []store.Reservation{{Key: "a", ID: "x"}, {Key: "b", ID: "y"}, {Key: "c", ID: "z"}})
		}},
		{"Put", func() error { return codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)) }},
		{"CheckCode", func() error {
			_, err := codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{right}, MaxTries: 5, Now: time.Now(), Charges: charges})
			return err
		}},
	}
	for _, c := range calls { // warm-up: the policy, the script cache
		if err := c.f(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	for _, c := range calls {
		before := rt.n.Load()
		if err := c.f(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n := rt.n.Load() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", c.name, n)
		}
	}
}

// The budgets written by ReserveAll and CheckCode are the Limiter's keys,
// with its TTL: the longest window from the newest event, and a minute.
func TestBatchKeysAndTTL(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	ctx := t.Context()
	opts := redisstore.Options{Prefix: prefix}
	codes, limiter := redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)
	limits := []store.Limit{{N: 5, Window: time.Minute}, {N: 10, Window: time.Hour}}
	now := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // far from Redis's clock
	if _, err := limiter.ReserveAll(ctx, []store.LimitRequest{{Key: "a", Limits: limits}, {Key: "b", Limits: limits}}, now); err != nil {
		t.Fatal(err)
	}
	_, err := codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{[]byte("h")}, MaxTries: 5, Now: now,
		Charges: []store.Charge{{LimitRequest: store.LimitRequest{Key: "c", Limits: limits}, KeepOn: store.OnMismatch}}})
	if !errors.Is(err, store.ErrCodeInvalid) {
		t.Fatalf("CheckCode without a code: %v", err)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Errorf("keys under the prefix: %q, want three budgets", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix+"limit:") {
			t.Errorf("key %q is not a budget", k)
		}
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl <= time.Hour || ttl > time.Hour+time.Minute {
			t.Errorf("PTTL(%q) = %v, %v; want an hour and up to a minute", k, ttl, err)
		}
	}
	for _, key := range []string{"a", "b", "c"} {
		if _, err := limiter.Reserve(ctx, key, []store.Limit{{N: 1, Window: time.Hour}}, now); !errors.Is(err, store.ErrRateLimited) {
			t.Errorf("Reserve(%s) under 1 an hour: %v, want the batch's event to refuse it", key, err)
		}
	}
}

// On a full noeviction Redis the batch calls fail closed, with nothing
// written: a batch with room fails, a spent budget still refuses (naming
// it), and CheckCode compares no hash, right or wrong, and records no
// charge. Once memory is freed the code and the budgets are as before.
func TestNoevictionFullBatch(t *testing.T) {
	t.Parallel()
	rdb, s := beforeFull(t)
	ctx, limits, right, wrong := t.Context(), fullLimits, fullRight, []byte("wrong")
	events := func() int64 {
		t.Helper()
		keys, err := rdb.Keys(ctx, redisstore.DefaultPrefix+"limit:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, k := range keys {
			c, err := rdb.ZCard(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += c
		}
		return n
	}
	before := events()
	makeFull(t, rdb)

	req := func(key string) store.LimitRequest { return store.LimitRequest{Key: key, Limits: limits} }
	charge := func(key string, keep store.Outcome) store.Charge {
		return store.Charge{LimitRequest: req(key), KeepOn: keep}
	}
	reserveAll := func(keys ...string) error {
		reqs := make([]store.LimitRequest, len(keys))
		for i, k := range keys {
			reqs[i] = req(k)
		}
		_, err := s.limiter.ReserveAll(ctx, reqs, time.Now())
		return err
	}
	checkCode := func(h []byte, charges ...store.Charge) error {
		_, err := s.codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{h}, MaxTries: 5, Now: time.Now(), Charges: charges})
		return err
	}
	for _, tt := range []struct {
		name string
		err  error
		oom  bool   // else a refusal
		key  string // that refused
	}{
		{"ReserveAll(room, new)", reserveAll("room", "new"), true, ""},
		{"ReserveAll(room, spent)", reserveAll("room", "spent"), false, "spent"},
		{"CheckCode(wrong)", checkCode(wrong, charge("room", store.OnMismatch), charge("new", store.OnMatch)), true, ""},
		{"CheckCode(right)", checkCode(right, charge("room", store.OnMismatch), charge("new", store.OnMatch)), true, ""},
		{"CheckCode(right) kept on a match only", checkCode(right, charge("new", store.OnMatch)), true, ""},
		{"CheckCode(right), spent", checkCode(right, charge("room", store.OnMismatch), charge("spent", store.OnMismatch)), false, "spent"},
	} {
		var rl *store.RateLimitError
		switch {
		case tt.oom && !isOOM(tt.err):
			t.Errorf("%s on a full Redis: %v, want an OOM error", tt.name, tt.err)
		case !tt.oom && (!errors.As(tt.err, &rl) || rl.Key != tt.key):
			t.Errorf("%s on a full Redis: %v, want a refusal by %q", tt.name, tt.err, tt.key)
		}
	}
	if n := events(); n != before {
		t.Errorf("%d events recorded on the full Redis, want %d as before", n, before)
	}

	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The failed calls spent no try: four tries of five are left, and
	// the code still matches.
	for i := range 4 {
		if err := s.codes.Verify(ctx, codeKey, [][]byte{wrong}, 5, time.Now()); !errors.Is(err, store.ErrCodeInvalid) {
			t.Fatalf("wrong try %d once memory is free: %v", i+1, err)
		}
	}
	if err := checkCode(right, charge("room", store.OnMismatch), charge("new", store.OnMatch)); err != nil {
		t.Errorf("the right code once memory is free: %v", err)
	}
}

// With Options.Replicas the batch calls wait for the replica as Reserve
// and Verify do: before a partition they succeed and the replica holds
// their writes; during one they fail with ErrReplication after the
// timeout, and a refusal is still answered as one.
func TestBatchWithReplicas(t *testing.T) {
	t.Parallel()
	pr := startPair(t, true)
	ctx := t.Context()
	const timeout = 300 * time.Millisecond
	s := newStores(pr.primary, redisstore.Options{Replicas: 1, ReplicaTimeout: timeout})
	onReplica := newStores(pr.replica, redisstore.Options{})
	limits := []store.Limit{{N: 2, Window: time.Hour}}
	reqs := []store.LimitRequest{{Key: "a", Limits: limits}, {Key: "b", Limits: limits}}
	charges := []store.Charge{{LimitRequest: reqs[0], KeepOn: store.OnMismatch}, {LimitRequest: reqs[1], KeepOn: store.OnMatch}}
	right := []byte("right")
	if err := s.codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	pr.sync(t)
	if _, err := s.limiter.ReserveAll(ctx, reqs, time.Now()); err != nil {
		t.Fatalf("ReserveAll, replicated: %v", err)
	}
	if _, err := s.codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{right}, MaxTries: 5, Now: time.Now(), Charges: charges}); err != nil {
		t.Fatalf("CheckCode, replicated: %v", err)
	}
	// The replica acknowledged both: the code is spent there, and b is
	// spent (the batch's event and the match's).
	if err := onReplica.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()); !errors.Is(err, store.ErrCodeInvalid) {
		t.Errorf("the right code on the replica: %v, want it spent", err)
	}
	if n, err := pr.replica.Keys(ctx, redisstore.DefaultPrefix+"limit:*").Result(); err != nil || len(n) != 2 {
		t.Errorf("budgets on the replica: %q, %v; want a and b", n, err)
	}

	pr.link.Cut()
	if err := s.codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, reserveAll := s.limiter.ReserveAll(ctx, []store.LimitRequest{{Key: "c", Limits: limits}}, time.Now())
	_, checkCode := s.codes.CheckCode(ctx, store.CodeCheck{Key: codeKey, Hashes: [][]byte{right}, MaxTries: 5, Now: time.Now(),
		Charges: []store.Charge{{LimitRequest: store.LimitRequest{Key: "d", Limits: limits}, KeepOn: store.OnMatch}}})
	took := time.Since(start)
	for name, err := range map[string]error{"ReserveAll": reserveAll, "CheckCode": checkCode} {
		if !errors.Is(err, redisstore.ErrReplication) {
			t.Errorf("%s on the partitioned primary: %v, want ErrReplication", name, err)
		}
	}
	if took < 2*timeout {
		t.Errorf("the two calls took %v, want at least twice the ReplicaTimeout %v", took, timeout)
	}
	_, err := s.limiter.ReserveAll(ctx, reqs, time.Now())
	var rl *store.RateLimitError
	if !errors.As(err, &rl) || rl.Key != "b" {
		t.Errorf("ReserveAll of the spent b on the partitioned primary: %v, want a refusal by b", err)
	}
}
