package redisstore

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "selfservice:"

// sentinel is the type of the sentinel errors: constants, so that no
// importer can reassign them.
type sentinel string

func (s sentinel) Error() string { return string(s) }

// Sentinel errors, wrapped by the errors of the stores' methods so that
// errors.Is works. Neither wraps a store sentinel: the Service answers
// both as an internal failure and logs them with their cause.
const (
	// ErrEvictionPolicy: the Redis server's maxmemory-policy is not
	// noeviction, or the server would not tell it, so a full Redis could
	// drop a budget or a code; the store refuses to serve (see
	// Options.AllowEviction). The error's text names the policy found.
	ErrEvictionPolicy sentinel = "redisstore: Redis eviction policy is not noeviction"
	// ErrReplication: fewer replicas than Options.Replicas acknowledged a
	// write within Options.ReplicaTimeout. The write is done on the
	// primary, but a failover now could lose it, so the store does not
	// report it done.
	ErrReplication sentinel = "redisstore: write not acknowledged by the replicas"
)

// DefaultReplicaTimeout is how long a store waits for its replicas'
// acknowledgements when Options.Replicas is set and ReplicaTimeout is not.
const DefaultReplicaTimeout = 100 * time.Millisecond

// Options configures a store. The zero value is ready to use: it serves
// only from a Redis whose maxmemory-policy is noeviction, and waits for no
// replica.
type Options struct {
	// Prefix starts the name of every key the store writes, so that one
	// Redis can serve several applications or environments. Default:
	// DefaultPrefix.
	Prefix string

	// AllowEviction lets the store serve from a Redis whose
	// maxmemory-policy can evict its keys (any policy but noeviction:
	// every key the store writes carries a TTL, so the volatile-*
	// policies evict them as readily as the allkeys-* ones). An evicted
	// budget is a budget reset: the wrong-code and send budgets then fail
	// open under memory pressure, which an attacker may cause. Leave it
	// false in production; with it set, every reading of the policy logs
	// a warning and LastPolicyCheck reports the risk. Default: false, and
	// calls fail with ErrEvictionPolicy.
	AllowEviction bool
	// AllowUnknownPolicy lets the store serve when the server answers
	// but tells its policy neither to CONFIG GET maxmemory-policy nor in
	// INFO memory (some proxies and managed services), for an application
	// that has made sure of noeviction by other means. The same warning
	// and report as with AllowEviction. Default: false, and calls fail
	// with ErrEvictionPolicy.
	AllowUnknownPolicy bool
	// PolicyCheckInterval is how long a reading of the policy that lets
	// the store serve is trusted: the first call after it reads the
	// policy again (one extra round trip, for that call only), so that a
	// CONFIG SET at run time is noticed. Default (zero or negative):
	// DefaultPolicyCheckInterval.
	PolicyCheckInterval time.Duration
	// Logger receives the warnings of AllowEviction and
	// AllowUnknownPolicy. Default: slog.Default().
	Logger *slog.Logger

	// Replicas is how many replicas must acknowledge a code's
	// consumption or wrong try (Verify, CheckCode) and a budget's new
	// event (Reserve, ReserveAll, CheckCode) before the store reports it: Redis replicates
	// asynchronously, and a failover to a replica that had not received
	// the write would bring a consumed code back or reset a budget. The
	// store sends WAIT Replicas ReplicaTimeout on the same connection
	// after the script; when fewer acknowledge, the call fails with
	// ErrReplication. It needs rdb to be a *redis.Client (also from
	// redis.NewFailoverClient) or a *redis.ClusterClient. Default: 0, no
	// wait.
	Replicas int
	// ReplicaTimeout bounds the wait for Replicas; keep it below the
	// client's ReadTimeout. Default (zero or negative):
	// DefaultReplicaTimeout.
	ReplicaTimeout time.Duration
}

// prefix returns the prefix in force.
func (o Options) prefix() string {
	if o.Prefix == "" {
		return DefaultPrefix
	}
	return o.Prefix
}

// hashedKey returns prefix+kind+":"+hex(SHA-256(name)), so that names,
// which hold addresses, never appear in clear in Redis.
func hashedKey(prefix, kind, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + kind + ":" + hex.EncodeToString(sum[:])
}

// millis formats t as Unix milliseconds for a script argument.
func millis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// mustClient panics if rdb is nil, or if opts.Replicas is set and rdb
// cannot run a script and WAIT on one connection; fn names the constructor
// for the message.
func mustClient(fn string, rdb redis.UniversalClient, opts Options) {
	if rdb == nil {
		panic("redisstore: " + fn + ": nil Redis client")
	}
	if opts.Replicas < 0 {
		panic("redisstore: " + fn + ": negative Options.Replicas")
	}
	if opts.Replicas > 0 {
		if _, ok := singleServer(rdb); !ok {
			panic("redisstore: " + fn + ": Options.Replicas needs a *redis.Client or a *redis.ClusterClient")
		}
	}
}
