package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
)

var _ store.BatchLimiter = (*Limiter)(nil)

// Limiter is a store.Limiter on Redis. Each limiter key is a sorted set
// under a key of its own, holding the key's events within the longest
// window of its limits: member the reservation id, score the event's time
// in Unix milliseconds.
//
// Redis keeps time in whole milliseconds: now is truncated to one, a
// Window is rounded up to one and RetryAfter counts from the truncated now,
// so it is at most a millisecond long and never short.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	policy *policyGuard
	run    runner
}

// NewLimiter returns a limiter on rdb, a client the application opened.
// It sends nothing to Redis: the eviction policy is read at the first
// call (see Check).
//
// Panics if rdb is nil, if opts.Replicas is negative, or if it is set and
// rdb is neither a *redis.Client nor a *redis.ClusterClient.
func NewLimiter(rdb redis.UniversalClient, opts Options) *Limiter {
	mustClient("NewLimiter", rdb, opts)
	return &Limiter{rdb: rdb, prefix: opts.prefix(), policy: newPolicyGuard(rdb, opts, "limiter"), run: newRunner(rdb, opts)}
}

// Check reads the server's eviction policy now and returns what the
// limiter's calls will return until the next reading: nil, or an error
// wrapping ErrEvictionPolicy (see Options.AllowEviction), or the failure
// to reach Redis. Call it at start-up and from readiness probes, so that
// a Redis that may evict budgets stops a deployment before its first
// request.
func (l *Limiter) Check(ctx context.Context) error {
	return l.policy.check(ctx)
}

// LastPolicyCheck returns what the limiter's last reading of the eviction
// policy found.
func (l *Limiter) LastPolicyCheck() PolicyCheck {
	return l.policy.last()
}

func (l *Limiter) key(key string) string {
	return hashedKey(l.prefix, "limit", key)
}

// reserveScript is Reserve in one atomic step.
//
//	KEYS[1]  the limiter key's sorted set
//	ARGV[1]  now, Unix milliseconds
//	ARGV[2]  the reservation id
//	ARGV[3]  the longest Window, milliseconds
//	ARGV[4]  the largest N
//	ARGV[5], ARGV[6], ...  N and Window (milliseconds) of each limit
//
// It returns {1, 0} if the event is recorded and {0, wait} if a limit
// refuses it, wait being milliseconds from ARGV[1]; a refusal writes
// nothing but forgets events no limit counts.
//
// A now before the newest event counts as that event's time (at), so that
// the set stays one ordered log and callers whose clocks disagree a little
// cannot exceed a limit together. Every event is then at or before at, and
// a limit of N is reached exactly when the set's Nth newest event is still
// in (at-Window, at]; it is also the event that must leave before another
// fits, so one ZRANGE by rank answers both the count and RetryAfter.
//
// The script decides before it writes, and ZADD is its first write when
// it admits: Redis refuses a script's first write that may grow memory
// while it is over maxmemory, so a full Redis (noeviction) fails the calls
// that would be admitted, and still refuses those a limit refuses. Had a
// trim come first, Redis would let the ZADD through past maxmemory. The
// set is trimmed after, to the events the longest window and the largest
// N still count.
//
// The TTL is relative, the longest window from the newest event and a
// minute's grace, so that it does not depend on the application's and
// Redis's clocks agreeing, and a caller whose now was taken a little
// before the newest event's still finds the events its window holds.
// Numbers are written with %.0f because Lua's own conversion of large
// numbers may use an exponent.
var reserveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local longest, most = tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local at = now
if newest[2] and tonumber(newest[2]) > at then
	at = tonumber(newest[2])
end
local wait = 0
for i = 5, #ARGV, 2 do
	local n, window = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
	local nth = redis.call('ZRANGE', KEYS[1], -n, -n, 'WITHSCORES')
	if nth[2] then
		local leaves = tonumber(nth[2]) + window
		if leaves - at > wait then
			wait = leaves - at
		end
	end
end
if wait == 0 then
	redis.call('ZADD', KEYS[1], string.format('%.0f', at), ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', at - longest))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -most - 1)
if wait > 0 then
	return {0, wait + at - now}
end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', longest + 60000))
return {1, 0}
`)

// Reserve implements store.Limiter with one Lua script, followed by WAIT
// when Options.Replicas is set: an event that too few replicas
// acknowledged fails with ErrReplication (it stays recorded on the
// primary, which only counts against the key). A refusal is answered as
// such whatever the replicas did. Reservation ids are 32 random hex
// digits.
func (l *Limiter) Reserve(ctx context.Context, key string, limits []store.Limit, now time.Time) (string, error) {
	args, err := limitArgs(limits)
	if err != nil {
		return "", err
	}
	if err := l.policy.admit(ctx); err != nil {
		return "", fmt.Errorf("redisstore: reserve: %w", err)
	}
	var idBytes [16]byte
	rand.Read(idBytes[:])
	id := hex.EncodeToString(idBytes[:])
	args[0], args[1] = millis(now), id
	cmd, replicated := l.run.run(ctx, reserveScript, []string{l.key(key)}, args...)
	res, err := cmd.Int64Slice()
	if err != nil {
		return "", fmt.Errorf("redisstore: reserve: %w", err)
	}
	if len(res) != 2 {
		return "", fmt.Errorf("redisstore: reserve: script returned %v", res)
	}
	if res[0] != 1 {
		return "", &store.RateLimitError{RetryAfter: retryAfter(res[1])}
	}
	if replicated != nil {
		return "", fmt.Errorf("redisstore: reserve: %w", replicated)
	}
	return id, nil
}

// Cancel implements store.Limiter with one ZREM. The key's TTL stays: it
// may outlive its events a little, which costs nothing. It waits for no
// replica: a cancel lost in a failover leaves an event counted, the safe
// side.
func (l *Limiter) Cancel(ctx context.Context, key, id string) error {
	if err := l.policy.admit(ctx); err != nil {
		return fmt.Errorf("redisstore: cancel: %w", err)
	}
	if err := l.rdb.ZRem(ctx, l.key(key), id).Err(); err != nil {
		return fmt.Errorf("redisstore: cancel: %w", err)
	}
	return nil
}

// ReserveAll implements store.BatchLimiter. On a single server (a
// *redis.Client, also from redis.NewFailoverClient) it is one Lua script
// over every key, atomic as Reserve's is for one: one round trip, and
// WAIT when Options.Replicas is set, as for Reserve. A refusal writes
// nothing. A full Redis (noeviction) fails the batch with nothing
// recorded, or refuses it as a limit says.
//
// A cluster or a ring keeps each key where its hash says, and no script
// reaches keys on two servers (nor, in a cluster, in two hash slots, which
// the keys of one request's budgets almost never share). There ReserveAll
// reserves the keys one by one, in order, each with Reserve, and cancels
// those taken when one refuses or fails. That never admits more than a
// key's limits: each key's check and record is still one atomic step, and
// an event taken back was counted while it stood. What it does not give is
// atomicity across keys: for the moment between the reservation of one
// key and the cancel of it, a concurrent caller sees the event and may be
// refused for it, by a batch that then admits nothing (an early refusal,
// never a late one; its RetryAfter may be longer than the events that stay
// would say). A cancel that fails leaves the event counted until it leaves
// its windows, the safe side; its error is joined to the call's.
func (l *Limiter) ReserveAll(ctx context.Context, reqs []store.LimitRequest, now time.Time) ([]string, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	ids, names := newIDs(len(reqs)), make([]string, len(reqs))
	size := 1
	for _, r := range reqs {
		size += budgetArgs(r.Limits)
	}
	args := append(make([]any, 0, size), millis(now))
	for i, r := range reqs {
		names[i] = r.Key
		var err error
		if args, err = appendBudget(args, ids[i], "0", r.Limits); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	keys, err := budgetKeys(l.prefix, names)
	if err != nil {
		return nil, err
	}
	if sharded(l.rdb) {
		return l.reserveEach(ctx, reqs, now)
	}
	if err := l.policy.admit(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: reserve: %w", err)
	}
	cmd, replicated := l.run.run(ctx, reserveAllScript, keys, args...)
	res, err := cmd.Int64Slice()
	switch {
	case err != nil:
		return nil, fmt.Errorf("redisstore: reserve: %w", err)
	case len(res) == 0:
		return nil, fmt.Errorf("redisstore: reserve: script returned %v", res)
	case res[0] != 1:
		return nil, refusal(res, names)
	case replicated != nil:
		return nil, fmt.Errorf("redisstore: reserve: %w", replicated)
	}
	return ids, nil
}

// reserveEach is ReserveAll for a cluster or a ring: Reserve of each key
// in order, and the cancel of those taken when one does not succeed.
func (l *Limiter) reserveEach(ctx context.Context, reqs []store.LimitRequest, now time.Time) ([]string, error) {
	ids := make([]string, 0, len(reqs))
	for i, r := range reqs {
		id, err := l.Reserve(ctx, r.Key, r.Limits, now)
		if err == nil {
			ids = append(ids, id)
			continue
		}
		var rl *store.RateLimitError
		if errors.As(err, &rl) {
			rl.Key = r.Key
		}
		taken := make([]store.Reservation, len(ids))
		for j, id := range ids {
			taken[j] = store.Reservation{Key: reqs[j].Key, ID: id}
		}
		if cerr := l.CancelAll(context.WithoutCancel(ctx), taken); cerr != nil {
			err = errors.Join(err, fmt.Errorf("redisstore: give back %d of %d reservations: %w", i, len(reqs), cerr))
		}
		return nil, err
	}
	return ids, nil
}

// CancelAll implements store.BatchLimiter with one ZREM a reservation, in
// one pipeline: one round trip to a single server (a cluster or a ring
// sends each server its own). Like Cancel it waits for no replica.
func (l *Limiter) CancelAll(ctx context.Context, rs []store.Reservation) error {
	if len(rs) == 0 {
		return nil
	}
	if err := l.policy.admit(ctx); err != nil {
		return fmt.Errorf("redisstore: cancel: %w", err)
	}
	if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range rs {
			p.ZRem(ctx, l.key(r.Key), r.ID)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("redisstore: cancel: %w", err)
	}
	return nil
}

// retryAfter returns a script's wait, in milliseconds, as a RetryAfter:
// at least a millisecond, as the contract wants.
func retryAfter(ms int64) time.Duration {
	return max(time.Duration(ms)*time.Millisecond, time.Millisecond)
}

// limitArgs returns the arguments of reserveScript for limits, leaving the
// first two (now and id) to the caller, or an error if the list is empty
// or a limit is not positive.
func limitArgs(limits []store.Limit) ([]any, error) {
	args, err := appendLimits(make([]any, 4, 6+2*len(limits)), limits)
	if err != nil {
		return nil, err
	}
	args[2], args[3] = args[len(args)-2], args[len(args)-1]
	return args[:len(args)-2], nil
}

// appendLimits appends N and Window (milliseconds, rounded up) of each
// limit to args, then the longest Window and the largest N, or returns an
// error if the list is empty or a limit is not positive.
func appendLimits(args []any, limits []store.Limit) ([]any, error) {
	if len(limits) == 0 {
		return nil, errors.New("redisstore: reserve: no limits")
	}
	var longest int64
	most := 0
	for i, lim := range limits {
		if lim.N <= 0 || lim.Window <= 0 {
			return nil, fmt.Errorf("redisstore: reserve: limit %d (N %d, Window %v): N and Window must be positive", i, lim.N, lim.Window)
		}
		window := int64(lim.Window / time.Millisecond)
		if lim.Window%time.Millisecond != 0 {
			window++
		}
		longest, most = max(longest, window), max(most, lim.N)
		args = append(args, strconv.Itoa(lim.N), strconv.FormatInt(window, 10))
	}
	return append(args, strconv.FormatInt(longest, 10), strconv.Itoa(most)), nil
}
