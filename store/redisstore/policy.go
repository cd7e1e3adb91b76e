package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// SafePolicy is the only maxmemory-policy under which the stores serve by
// default: a full Redis then refuses writes instead of dropping keys.
const SafePolicy = "noeviction"

// DefaultPolicyCheckInterval is how long a store trusts the eviction
// policy it last read when Options.PolicyCheckInterval is zero.
const DefaultPolicyCheckInterval = time.Minute

// PolicyCheck is what a store's last reading of the server's
// maxmemory-policy found (see Options.AllowEviction).
type PolicyCheck struct {
	// Policy is the policy read ("noeviction", "volatile-lru", ...), or
	// empty when it could not be read or nothing has been read yet. With
	// several servers (a cluster, a ring) it is the first policy other
	// than noeviction, if any.
	Policy string
	// CheckedAt is when it was read; the zero time before the first
	// reading.
	CheckedAt time.Time
	// Err is nil when the policy is noeviction. Otherwise it wraps
	// ErrEvictionPolicy and says why, also when AllowEviction or
	// AllowUnknownPolicy lets the store serve anyway: this is how an
	// application sees that it runs at risk.
	Err error
}

// policyGuard reads the servers' eviction policy at a store's first use
// and again once its reading is older than the interval, piggybacking on
// a call: no goroutine of its own, and no round trip on the calls in
// between, which cost an atomic load and a clock reading.
type policyGuard struct {
	rdb                         redis.UniversalClient
	interval                    time.Duration
	allowEviction, allowUnknown bool
	logger                      *slog.Logger
	// store names the store in log lines: "code store", "limiter".
	store string

	// state is the last reading that succeeded, nil before the first.
	state atomic.Pointer[policyState]

	mu sync.Mutex
	// reading is the reading in progress, nil when none runs: one call
	// reads and the calls that meet it share its outcome instead of
	// asking Redis in turn, so that a Redis that never answers costs
	// each of them one timeout, not one per call ahead of it.
	reading *policyReading
	// begun counts the readings begun; a reading's n is its place.
	begun uint64
}

// policyReading is one reading of the policy. Its fields other than n and
// done are written by the call that runs it before done is closed, and
// read by the others after.
type policyReading struct {
	n    uint64
	done chan struct{}
	st   *policyState
	err  error
	// abandoned is a reading that failed because its caller's context
	// ended: it tells nothing about Redis, so those who waited for it
	// read again rather than fail with another call's cancellation.
	abandoned bool
}

// policyState is one reading that succeeded.
type policyState struct {
	n     uint64 // the reading's place (policyReading.n)
	check PolicyCheck
	at    time.Time // monotonic: CheckedAt as time.Now returned it
	// refuse is what the store's calls return until the next reading:
	// check.Err unless the options accept it.
	refuse   error
	interval time.Duration
}

// fresh reports whether the reading lets the store serve without reading
// again.
func (st *policyState) fresh() bool {
	return st.refuse == nil && time.Since(st.at) < st.interval
}

func newPolicyGuard(rdb redis.UniversalClient, opts Options, store string) *policyGuard {
	g := &policyGuard{
		rdb:           rdb,
		interval:      opts.PolicyCheckInterval,
		allowEviction: opts.AllowEviction,
		allowUnknown:  opts.AllowUnknownPolicy,
		logger:        opts.Logger,
		store:         store,
	}
	if g.interval <= 0 {
		g.interval = DefaultPolicyCheckInterval
	}
	if g.logger == nil {
		g.logger = slog.Default()
	}
	return g
}

// admit returns nil when the store may serve a call: the policy last read
// is safe or accepted. A reading that serves is trusted for the interval;
// one that refuses is not trusted at all, so that the call after a fix
// (CONFIG SET maxmemory-policy noeviction) serves again: the next call
// reads again, while those that meet a reading in progress are refused as
// the last reading says. Before the first reading there is nothing to go
// on: calls share the reading in progress and wait for it as long as
// their context lets them.
func (g *policyGuard) admit(ctx context.Context) error {
	st := g.state.Load()
	if st != nil && st.fresh() {
		return nil
	}
	var after uint64
	if st != nil {
		after = st.n
	}
	st, err := g.share(ctx, after, st)
	if err != nil {
		return err
	}
	return st.refuse
}

// check reads the policy now, whatever the age of the last reading, and
// returns what the store's calls will return. A reading in progress may
// have asked before the call: check waits it out and shares the next.
func (g *policyGuard) check(ctx context.Context) error {
	g.mu.Lock()
	after := g.begun
	g.mu.Unlock()
	st, err := g.share(ctx, after, nil)
	if err != nil {
		return err
	}
	return st.refuse
}

// share returns the outcome of a reading begun after the first after
// readings: the last one that succeeded if it is such, else the one in
// progress, else one that this call runs itself. A call that has a last
// reading to go on (last) does not wait for one in progress: it gets last
// back, older than the interval by no more than that reading's round
// trip. Waiting ends with ctx; running the reading is bounded as any
// round trip of the client is (its ReadTimeout, and the context only with
// ContextTimeoutEnabled).
func (g *policyGuard) share(ctx context.Context, after uint64, last *policyState) (*policyState, error) {
	for {
		g.mu.Lock()
		st, r := g.state.Load(), g.reading
		switch {
		case st != nil && st.n > after:
			g.mu.Unlock()
			return st, nil
		case r == nil:
			g.begun++
			r = &policyReading{n: g.begun, done: make(chan struct{})}
			g.reading = r
			g.mu.Unlock()
			return g.run(ctx, r)
		}
		g.mu.Unlock()
		if last != nil {
			return last, nil
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("redisstore: check eviction policy: %w", ctx.Err())
		}
		if r.n > after && !r.abandoned {
			return r.st, r.err
		}
	}
}

// run runs the reading r and hands its outcome to the calls that wait for
// it.
func (g *policyGuard) run(ctx context.Context, r *policyReading) (*policyState, error) {
	// Stays if read panics, so that the waiters fail instead of finding
	// no outcome.
	r.err = errors.New("redisstore: check eviction policy: the reading panicked")
	defer func() {
		g.mu.Lock()
		g.reading = nil
		g.mu.Unlock()
		close(r.done)
	}()
	r.st, r.err = g.read(ctx, r.n)
	r.abandoned = r.err != nil && ctx.Err() != nil
	return r.st, r.err
}

// last returns the last reading.
func (g *policyGuard) last() PolicyCheck {
	if st := g.state.Load(); st != nil {
		return st.check
	}
	return PolicyCheck{}
}

// read reads the policy of every server and stores the result. A failure
// to reach a server is returned and stores nothing, so the next call reads
// again; a server that answers but will not tell its policy is a reading
// (an unknown policy).
func (g *policyGuard) read(ctx context.Context, n uint64) (*policyState, error) {
	policy, err := readPolicies(ctx, g.rdb)
	now := time.Now()
	st := &policyState{n: n, at: now, interval: g.interval, check: PolicyCheck{Policy: policy, CheckedAt: now}}
	var unknown *unknownPolicyError
	switch {
	case errors.As(err, &unknown):
		st.check.Err = fmt.Errorf("%w: the server does not tell its maxmemory-policy (%v), so the store cannot tell whether Redis may evict its keys; configure %s and set Options.AllowUnknownPolicy", ErrEvictionPolicy, unknown.err, SafePolicy)
		if !g.allowUnknown {
			st.refuse = st.check.Err
		}
	case err != nil:
		return nil, fmt.Errorf("redisstore: check eviction policy: %w", err)
	case policy != SafePolicy:
		st.check.Err = fmt.Errorf("%w: maxmemory-policy is %q, under which a full Redis evicts keys that carry a TTL, as every key of this store does (a budget evicted is a budget reset); configure %s", ErrEvictionPolicy, policy, SafePolicy)
		if !g.allowEviction {
			st.refuse = st.check.Err
		}
	}
	if st.check.Err != nil && st.refuse == nil {
		g.logger.WarnContext(ctx, "redisstore: serving although Redis may evict this store's keys, as the application allowed: budgets and codes can be lost under memory pressure",
			"store", g.store, "policy", policy, "error", st.check.Err)
	}
	g.state.Store(st)
	return st, nil
}

// unknownPolicyError is a server that answers but does not tell its
// eviction policy.
type unknownPolicyError struct{ err error }

func (e *unknownPolicyError) Error() string { return e.err.Error() }

// shardedClient is a client of several servers: a cluster or a ring.
type shardedClient interface {
	ForEachShard(ctx context.Context, fn func(ctx context.Context, client *redis.Client) error) error
}

// readPolicies returns the policy of the server behind rdb or, for a
// cluster or ring, of each of its servers (replicas too: a replica
// promoted brings its own): SafePolicy when all are safe, else the first
// other one. It returns an *unknownPolicyError when a server will not
// tell.
func readPolicies(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	sharded, ok := rdb.(shardedClient)
	if !ok {
		return readPolicy(ctx, rdb)
	}
	var (
		mu      sync.Mutex
		worst   = SafePolicy
		unknown error
	)
	err := sharded.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		p, err := readPolicy(ctx, c)
		var u *unknownPolicyError
		if errors.As(err, &u) {
			mu.Lock()
			unknown = err
			mu.Unlock()
			return nil
		}
		if err != nil {
			return err
		}
		mu.Lock()
		if worst == SafePolicy {
			worst = p
		}
		mu.Unlock()
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case worst != SafePolicy:
		return worst, nil
	case unknown != nil:
		return "", unknown
	}
	return worst, nil
}

// readPolicy asks CONFIG GET maxmemory-policy and, where CONFIG is refused
// (managed services rename or forbid it), INFO memory's maxmemory_policy.
func readPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	conf, cerr := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if p := conf["maxmemory-policy"]; cerr == nil && p != "" {
		return p, nil
	}
	if cerr != nil && !isServerError(cerr) {
		return "", cerr
	}
	info, ierr := c.Info(ctx, "memory").Result()
	if ierr != nil && !isServerError(ierr) {
		return "", ierr
	}
	if ierr == nil {
		if p := infoField(info, "maxmemory_policy"); p != "" {
			return p, nil
		}
		ierr = errors.New("no maxmemory_policy in INFO memory")
	}
	if cerr == nil {
		cerr = errors.New("no maxmemory-policy in CONFIG GET's answer")
	}
	return "", &unknownPolicyError{fmt.Errorf("CONFIG GET: %v; INFO: %v", cerr, ierr)}
}

// isServerError reports whether err is the server's answer (an unknown or
// forbidden command) rather than a failure to reach it.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// infoField returns the value of name in an INFO answer, or "".
func infoField(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
