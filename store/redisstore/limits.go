package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
)

var _ store.SendLimiter = (*SendLimiter)(nil)

// SendLimiter is a store.SendLimiter on Redis. Each limiter key is a hash
// under a key of its own, holding the last send, the end of the current
// window and the sends in it.
type SendLimiter struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewSendLimiter returns a limiter on rdb, a client the application opened.
//
// Panics if rdb is nil.
func NewSendLimiter(rdb redis.UniversalClient, opts Options) *SendLimiter {
	mustClient("NewSendLimiter", rdb)
	return &SendLimiter{rdb: rdb, prefix: opts.prefix()}
}

// reserveScript is Reserve in one atomic step.
//
//	KEYS[1]  the limiter key's hash key
//	ARGV[1]  now, Unix milliseconds
//	ARGV[2]  Interval, milliseconds
//	ARGV[3]  Daily
//	ARGV[4]  Window, milliseconds
//
// It returns 1 if the send is recorded and 0 if a limit refuses it, in
// which case it writes nothing. The key lives until both the window and the
// interval are over; after that a missing key and an old one mean the same.
// Numbers are written with %.0f because Lua's own conversion of large
// numbers may use an exponent.
var reserveScript = redis.NewScript(`
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local daily, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local sent = redis.call('HMGET', KEYS[1], 'last', 'wend', 'count')
local count = tonumber(sent[3]) or 0
local wend = tonumber(sent[2]) or 0
if count > 0 and now < tonumber(sent[1]) + interval then
	return 0
end
if count == 0 or now >= wend then
	count, wend = 0, now + window
end
if count >= daily then
	return 0
end
redis.call('HSET', KEYS[1], 'last', string.format('%.0f', now),
	'wend', string.format('%.0f', wend), 'count', count + 1)
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(wend - now, interval, 1)))
return 1
`)

// Reserve implements store.SendLimiter with one Lua script.
func (l *SendLimiter) Reserve(ctx context.Context, key string, limits store.SendLimits, now time.Time) error {
	ok, err := reserveScript.Run(ctx, l.rdb, []string{hashedKey(l.prefix, "send", key)},
		millis(now),
		strconv.FormatInt(limits.Interval.Milliseconds(), 10),
		strconv.Itoa(limits.Daily),
		strconv.FormatInt(limits.Window.Milliseconds(), 10),
	).Int()
	if err != nil {
		return fmt.Errorf("redisstore: reserve send: %w", err)
	}
	if ok != 1 {
		return store.ErrRateLimited
	}
	return nil
}
