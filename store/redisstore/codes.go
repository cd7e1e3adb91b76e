package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
)

var _ store.CodeStore = (*CodeStore)(nil)

// CodeStore is a store.CodeStore on Redis. Each code is a hash under a key
// of its own, holding the caller's keyed hash of the code, its expiry and
// the wrong tries so far.
type CodeStore struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewCodeStore returns a code store on rdb, a client the application
// opened.
//
// Panics if rdb is nil.
func NewCodeStore(rdb redis.UniversalClient, opts Options) *CodeStore {
	mustClient("NewCodeStore", rdb)
	return &CodeStore{rdb: rdb, prefix: opts.prefix()}
}

func (s *CodeStore) key(k store.CodeKey) string {
	return hashedKey(s.prefix, "code", k.Purpose+"\x00"+k.Email)
}

// Put implements store.CodeStore. It rewrites every field of the code's
// hash and its TTL in one MULTI/EXEC, so a concurrent Verify sees either the
// old code with its tries or the new one with none.
func (s *CodeStore) Put(ctx context.Context, key store.CodeKey, hash []byte, expiresAt time.Time) error {
	k := s.key(key)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k, "hash", hash, "expires", millis(expiresAt), "tries", 0)
		p.PExpireAt(ctx, k, expiresAt)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: put code: %w", err)
	}
	return nil
}

// verifyScript is Verify in one atomic step.
//
//	KEYS[1]  the code's hash key
//	ARGV[1]  the hash to check
//	ARGV[2]  maxTries
//	ARGV[3]  now, Unix milliseconds
//
// It returns 1 for a match and 0 otherwise, and deletes the code when it is
// used, expired or dead. HINCRBY and the check of tries run in the same
// script, so concurrent wrong guesses are all counted and no more than
// maxTries are ever compared against one code.
var verifyScript = redis.NewScript(`
local code = redis.call('HMGET', KEYS[1], 'hash', 'expires', 'tries')
if not code[1] then
	return 0
end
local maxTries = tonumber(ARGV[2])
if tonumber(ARGV[3]) >= tonumber(code[2]) or tonumber(code[3]) >= maxTries then
	redis.call('DEL', KEYS[1])
	return 0
end
if code[1] == ARGV[1] then
	redis.call('DEL', KEYS[1])
	return 1
end
if redis.call('HINCRBY', KEYS[1], 'tries', 1) >= maxTries then
	redis.call('DEL', KEYS[1])
end
return 0
`)

// Verify implements store.CodeStore with one Lua script, which Redis runs
// atomically.
//
// The script compares hashes with Lua's string equality, which is not
// constant-time. That is safe here because both sides are HMACs under a
// secret the attacker does not know: the time a comparison takes tells at
// most how many leading bytes of two unpredictable MACs agree, and that
// does not help to find a code whose MAC matches. The expiry check uses
// now; the key's TTL removes the code by the server's clock as well.
func (s *CodeStore) Verify(ctx context.Context, key store.CodeKey, hash []byte, maxTries int, now time.Time) error {
	ok, err := verifyScript.Run(ctx, s.rdb, []string{s.key(key)},
		hash, strconv.Itoa(maxTries), millis(now)).Int()
	if err != nil {
		return fmt.Errorf("redisstore: verify code: %w", err)
	}
	if ok != 1 {
		return store.ErrCodeInvalid
	}
	return nil
}
