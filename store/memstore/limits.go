package memstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// Limiter is an in-memory store.Limiter holding budgets for at most
// Options.MaxEntries keys (see Options for what happens when it is full).
// The zero value is ready to use, with the default Options.
//
// Each key keeps a log of its events, oldest first: those within the
// longest Window of its limits, and of them at most the largest N, 16 bytes
// each, besides some 100 bytes for the key, which is kept as a digest, not
// in clear. For each limit Reserve looks at the Nth newest event only, so a
// call costs O(limits) plus the events it forgets. A key leaves the Limiter
// once its newest event is older than its longest window (and a minute's
// grace for callers whose clocks disagree), or when Cancel takes its last
// event.
type Limiter struct {
	mu     sync.Mutex
	opts   Options // resolved on first use
	keys   table[limitKey, budget]
	lastID uint64
}

// limitKey is what a Limiter keys a budget by: the first half of the
// SHA-256 of the caller's key. Two keys that collided would share one
// budget, which refuses more events, never fewer.
type limitKey [16]byte

// limiterKey returns the limitKey of key.
func limiterKey(key string) limitKey {
	d := digest(key)
	return limitKey(d[:16])
}

// budget is the log of one key.
type budget struct {
	events []event // oldest first
	// latest is the latest now a Reserve for the key has passed. An
	// earlier now counts as latest, so that the log stays in order and
	// every limit holds however callers' nows interleave.
	latest int64
}

// event is one reserved event: when (Unix nanoseconds) and its id.
type event struct {
	at int64
	id uint64
}

// clockGrace is how long a key outlives its longest window. A key that
// left while a caller with a slightly earlier clock was about to reserve
// would let that caller exceed the limits.
const clockGrace = int64(time.Minute)

// NewLimiter returns an empty limiter configured by opts, of which it takes
// at most one; none means the zero Options.
//
// Panics if given more than one Options or if MaxEntries is negative or
// above math.MaxInt32.
func NewLimiter(opts ...Options) *Limiter {
	l := &Limiter{opts: oneOptions("NewLimiter", opts)}
	l.keys.init(l.opts.MaxEntries)
	return l
}

// lock takes l.mu and sets up a zero Limiter.
func (l *Limiter) lock() {
	l.mu.Lock()
	if l.keys.index == nil {
		l.opts = l.opts.resolve("Limiter")
		l.keys.init(l.opts.MaxEntries)
	}
}

// Reserve implements store.Limiter. A Reserve for a key without recorded
// events when the Limiter is full returns an error wrapping store.ErrFull
// and records nothing; keys already held go on working. Reservation ids are
// decimal numbers, unique within the Limiter.
func (l *Limiter) Reserve(_ context.Context, key string, limits []store.Limit, now time.Time) (string, error) {
	longest, most, err := checkLimits(limits)
	if err != nil {
		return "", err
	}
	k, t := limiterKey(key), nanos(now)
	l.lock()
	defer l.mu.Unlock()
	l.keys.dropExpired(t, dropPerWrite)
	n, s := l.keys.lookup(k)
	if s == nil {
		n, s, err = l.keys.insert(k, math.MaxInt64, t)
		if err != nil {
			return "", fmt.Errorf("memstore: reserve: %d keys held: %w", l.keys.len(), err)
		}
		s.val.latest = t
	}
	b := &s.val
	b.latest = max(b.latest, t)
	at := b.latest
	b.forget(addSat(at, -longest), most)

	var wait int64
	for _, lim := range limits {
		// The events are at or before at, so the limit is reached when the
		// Nth newest is inside (at-Window, at]; it must leave first.
		if k := len(b.events) - lim.N; k >= 0 {
			if leaves := addSat(b.events[k].at, int64(lim.Window)); leaves > at {
				wait = max(wait, leaves-at)
			}
		}
	}
	if wait > 0 {
		return "", &store.RateLimitError{RetryAfter: retryAfter(wait + at - t)}
	}
	l.lastID++
	b.events = append(b.events, event{at: at, id: l.lastID})
	l.keys.setExpiry(n, addSat(at, addSat(longest, clockGrace)))
	return strconv.FormatUint(l.lastID, 10), nil
}

// Cancel implements store.Limiter. Taking a key's last event removes the
// key and frees its room.
func (l *Limiter) Cancel(_ context.Context, key, id string) error {
	want, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil // not an id of this Limiter: unknown
	}
	k := limiterKey(key)
	l.lock()
	defer l.mu.Unlock()
	n, s := l.keys.lookup(k)
	if s == nil {
		return nil
	}
	b := &s.val
	for i, e := range b.events {
		if e.id != want {
			continue
		}
		b.events = append(b.events[:i], b.events[i+1:]...)
		if len(b.events) == 0 {
			l.keys.remove(n)
		}
		// The expiry stays that of the cancelled event when it was the
		// newest: the key lingers a little, which costs room but never a
		// limit.
		return nil
	}
	return nil
}

// forget drops the events at or before oldest, which no limit counts any
// more, and all but the newest most, which no limit looks at.
func (b *budget) forget(oldest int64, most int) {
	k := max(len(b.events)-most, 0)
	for k < len(b.events) && b.events[k].at <= oldest {
		k++
	}
	if k == 0 {
		return
	}
	live := len(b.events) - k
	if c := cap(b.events); c > 8 && live <= c/4 {
		// After a burst, give back what the burst needed.
		b.events = append(make([]event, 0, 2*live), b.events[k:]...)
		return
	}
	b.events = b.events[:copy(b.events, b.events[k:])]
}

// checkLimits returns the longest Window and the largest N of limits, or
// an error if the list is empty or a limit is not positive.
func checkLimits(limits []store.Limit) (longest int64, most int, err error) {
	if len(limits) == 0 {
		return 0, 0, errors.New("memstore: reserve: no limits")
	}
	for i, lim := range limits {
		if lim.N <= 0 || lim.Window <= 0 {
			return 0, 0, fmt.Errorf("memstore: reserve: limit %d (N %d, Window %v): N and Window must be positive", i, lim.N, lim.Window)
		}
		longest, most = max(longest, int64(lim.Window)), max(most, lim.N)
	}
	return longest, most, nil
}

// retryAfter returns a wait of d nanoseconds as a RetryAfter, which the
// contract wants at least a millisecond long.
func retryAfter(d int64) time.Duration {
	return max(time.Duration(d), time.Millisecond)
}

// addSat returns a+b, saturating at the bounds of int64.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}
