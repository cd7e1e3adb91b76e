package redisstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
)

var _ store.CodeChecker = (*CodeStore)(nil)

// CodeStore is a store.CodeStore on Redis. Each code is a hash under a key
// of its own, holding the caller's keyed hash of the code, its expiry and
// the wrong tries so far.
type CodeStore struct {
	rdb    redis.UniversalClient
	prefix string
	policy *policyGuard
	run    runner
}

// NewCodeStore returns a code store on rdb, a client the application
// opened. It sends nothing to Redis: the eviction policy is read at the
// first call (see Check).
//
// Panics if rdb is nil, if opts.Replicas is negative, or if it is set and
// rdb is neither a *redis.Client nor a *redis.ClusterClient.
func NewCodeStore(rdb redis.UniversalClient, opts Options) *CodeStore {
	mustClient("NewCodeStore", rdb, opts)
	return &CodeStore{rdb: rdb, prefix: opts.prefix(), policy: newPolicyGuard(rdb, opts, "code store"), run: newRunner(rdb, opts)}
}

// Check reads the server's eviction policy now and returns what the
// store's calls will return until the next reading: nil, or an error
// wrapping ErrEvictionPolicy (see Options.AllowEviction), or the failure
// to reach Redis. Call it at start-up and from readiness probes, so that
// a Redis that may evict keys stops a deployment before its first
// request.
func (s *CodeStore) Check(ctx context.Context) error {
	return s.policy.check(ctx)
}

// LastPolicyCheck returns what the store's last reading of the eviction
// policy found.
func (s *CodeStore) LastPolicyCheck() PolicyCheck {
	return s.policy.last()
}

func (s *CodeStore) key(k store.CodeKey) string {
	return hashedKey(s.prefix, "code", k.Purpose+"\x00"+k.Email)
}

// Put implements store.CodeStore. It rewrites every field of the code's
// hash and its TTL in one MULTI/EXEC, so a concurrent Verify sees either the
// old code with its tries or the new one with none.
//
// Put waits for no replica (Options.Replicas): a code lost in a failover
// only makes its user ask for another, and the code it replaced, if that
// survives, was mailed to the same address.
func (s *CodeStore) Put(ctx context.Context, key store.CodeKey, hash []byte, expiresAt time.Time) error {
	if err := s.policy.admit(ctx); err != nil {
		return fmt.Errorf("redisstore: put code: %w", err)
	}
	k := s.key(key)
	cmds, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k, "hash", hash, "expires", millis(expiresAt), "tries", 0)
		p.PExpireAt(ctx, k, expiresAt)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: put code: %w", queuedError(err, cmds))
	}
	return nil
}

// queuedError returns, for a transaction that Redis aborted (EXECABORT),
// the error of the command that made it abort, such as the OOM of a full
// Redis, and err itself otherwise.
func queuedError(err error, cmds []redis.Cmder) error {
	if !redis.HasErrorPrefix(err, "EXECABORT") {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil && !redis.HasErrorPrefix(cerr, "EXECABORT") {
			return cerr
		}
	}
	return err
}

// verifyScript is Verify in one atomic step.
//
//	KEYS[1]  the code's hash key
//	ARGV[1]  maxTries
//	ARGV[2]  now, Unix milliseconds
//	ARGV[3], ARGV[4], ...  the hashes to check: the submitted code's under
//	         each accepted code secret; one try for all of them
//
// It returns 1 for a match and 0 otherwise, and deletes the code when it is
// used, expired or dead. HINCRBY and the check of tries run in the same
// script, so concurrent wrong guesses are all counted and no more than
// maxTries are ever compared against one code.
//
// The try is counted before the hashes are compared, even the try that
// matches: HINCRBY is the script's first write, and Redis refuses a
// script's first write that may grow memory while it is over maxmemory.
// On a full Redis (noeviction) Verify then fails before any comparison,
// instead of comparing and then failing to count a wrong try, which would
// give unlimited guesses with the right one still answered.
var verifyScript = redis.NewScript(`
local code = redis.call('HMGET', KEYS[1], 'hash', 'expires', 'tries')
if not code[1] then
	return 0
end
local maxTries = tonumber(ARGV[1])
if tonumber(ARGV[2]) >= tonumber(code[2]) or tonumber(code[3]) >= maxTries then
	redis.call('DEL', KEYS[1])
	return 0
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
for i = 3, #ARGV do
	if code[1] == ARGV[i] then
		redis.call('DEL', KEYS[1])
		return 1
	end
end
if tries >= maxTries then
	redis.call('DEL', KEYS[1])
end
return 0
`)

// Verify implements store.CodeStore with one Lua script, which Redis runs
// atomically, followed by WAIT when Options.Replicas is set: a wrong try
// or a consumption that too few replicas acknowledged fails with
// ErrReplication, whatever the script found, so that no answer rests on a
// write a failover could undo.
//
// The script compares hashes with Lua's string equality, which is not
// constant-time. That is safe here because both sides are HMACs under a
// secret the attacker does not know: the time a comparison takes tells at
// most how many leading bytes of two unpredictable MACs agree, and that
// does not help to find a code whose MAC matches. The expiry check uses
// now; the key's TTL removes the code by the server's clock as well.
func (s *CodeStore) Verify(ctx context.Context, key store.CodeKey, hashes [][]byte, maxTries int, now time.Time) error {
	if err := s.policy.admit(ctx); err != nil {
		return fmt.Errorf("redisstore: verify code: %w", err)
	}
	if len(hashes) == 0 {
		return errors.New("redisstore: verify code: no hash")
	}
	args := make([]any, 0, 2+len(hashes))
	args = append(args, strconv.Itoa(maxTries), millis(now))
	for _, h := range hashes {
		args = append(args, h)
	}
	res, replicated := s.run.run(ctx, verifyScript, []string{s.key(key)}, args...)
	ok, err := res.Int()
	if err == nil {
		err = replicated
	}
	if err != nil {
		return fmt.Errorf("redisstore: verify code: %w", err)
	}
	if ok != 1 {
		return store.ErrCodeInvalid
	}
	return nil
}

// SharesBudgets implements store.CodeChecker: it reports whether l is a
// *Limiter on the same client and prefix, so that CheckCode's charges
// land in l's keys, on a single server (not a cluster or a ring, where a
// code and its budgets live on different servers), and whether this
// store's Options guard those charges as l's would guard them: it waits
// for at least as many replicas, and serves from an evicting Redis or one
// of unknown policy only if l does too.
func (s *CodeStore) SharesBudgets(l store.Limiter) bool {
	rl, ok := l.(*Limiter)
	switch {
	case !ok || rl == nil || sharded(s.rdb) || !sameClient(s.rdb, rl.rdb) || s.prefix != rl.prefix:
		return false
	case s.run.replicas < rl.run.replicas:
		return false
	case s.policy.allowEviction && !rl.policy.allowEviction, s.policy.allowUnknown && !rl.policy.allowUnknown:
		return false
	}
	return true
}

// sameClient reports whether a and b are one client. (Clients are
// pointers, but an application's own UniversalClient need not be
// comparable.)
func sameClient(a, b redis.UniversalClient) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// CheckCode implements store.CodeChecker with one Lua script (checkScript)
// over the code and the budgets, on the store's client and prefix, so
// that a successful update-email costs one round trip, followed by WAIT
// when Options.Replicas is set: a call whose writes too few replicas
// acknowledged fails with ErrReplication, whatever the script found, and
// its charges stay recorded. A refusal, which writes nothing, is answered
// as such whatever the replicas did. The budgets are those of the Limiter
// SharesBudgets accepts; on a cluster or a ring, which it never accepts,
// CheckCode fails. Comparisons and expiry are Verify's; the charges are
// judged as the Limiter's ReserveAll judges them, in whole milliseconds.
func (s *CodeStore) CheckCode(ctx context.Context, c store.CodeCheck) ([]string, error) {
	if len(c.Hashes) == 0 {
		return nil, errors.New("redisstore: check code: no hash")
	}
	ids, names := newIDs(len(c.Charges)), make([]string, len(c.Charges))
	size := 3 + len(c.Hashes)
	for _, ch := range c.Charges {
		size += budgetArgs(ch.Limits)
	}
	args := make([]any, 0, size)
	args = append(args, strconv.Itoa(c.MaxTries), millis(c.Now), strconv.Itoa(len(c.Hashes)))
	for _, h := range c.Hashes {
		args = append(args, h)
	}
	for i, ch := range c.Charges {
		names[i] = ch.Key
		keep, ok := keepArg[ch.KeepOn]
		if !ok {
			return nil, fmt.Errorf("redisstore: check code: charge %d: KeepOn %d is neither OnMatch nor OnMismatch", i, ch.KeepOn)
		}
		var err error
		if args, err = appendBudget(args, ids[i], keep, ch.Limits); err != nil {
			return nil, fmt.Errorf("redisstore: check code: charge %d: %w", i, err)
		}
	}
	budgets, err := budgetKeys(s.prefix, names)
	if err != nil {
		return nil, err
	}
	if sharded(s.rdb) {
		return nil, errors.New("redisstore: check code: a cluster or a ring keeps codes and budgets on different servers")
	}
	if err := s.policy.admit(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: check code: %w", err)
	}
	keys := append([]string{s.key(c.Key)}, budgets...)
	cmd, replicated := s.run.run(ctx, checkScript, keys, args...)
	res, err := cmd.Int64Slice()
	switch {
	case err != nil:
		return nil, fmt.Errorf("redisstore: check code: %w", err)
	case len(res) > 0 && res[0] == 0:
		return nil, refusal(res, names)
	case len(res) != 2+len(c.Charges) || res[0] != 1:
		return nil, fmt.Errorf("redisstore: check code: script returned %v", res)
	case replicated != nil:
		return nil, fmt.Errorf("redisstore: check code: %w", replicated)
	}
	kept := make([]string, len(c.Charges))
	for i := range kept {
		if res[2+i] == 1 {
			kept[i] = ids[i]
		}
	}
	if res[1] != 1 {
		return kept, store.ErrCodeInvalid
	}
	return kept, nil
}
