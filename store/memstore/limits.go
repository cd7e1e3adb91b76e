package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// SendLimiter is an in-memory store.SendLimiter. The zero value is ready to
// use.
type SendLimiter struct {
	mu     sync.Mutex
	sends  map[string]*sendWindow
	writes int
}

type sendWindow struct {
	last        time.Time
	windowStart time.Time
	windowEnd   time.Time
	count       int
}

// NewSendLimiter returns an empty limiter.
func NewSendLimiter() *SendLimiter { return &SendLimiter{} }

// Reserve implements store.SendLimiter.
func (l *SendLimiter) Reserve(_ context.Context, key string, limits store.SendLimits, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sends == nil {
		l.sends = make(map[string]*sendWindow)
	}
	l.writes++
	if l.writes%sweepEvery == 0 {
		for k, w := range l.sends {
			if !now.Before(w.windowEnd) && !now.Before(w.last.Add(limits.Interval)) {
				delete(l.sends, k)
			}
		}
	}
	w, ok := l.sends[key]
	if !ok {
		w = &sendWindow{}
		l.sends[key] = w
	}
	if w.count > 0 && now.Before(w.last.Add(limits.Interval)) {
		return store.ErrRateLimited
	}
	if w.count == 0 || !now.Before(w.windowEnd) {
		w.windowStart, w.windowEnd, w.count = now, now.Add(limits.Window), 0
	}
	if w.count >= limits.Daily {
		return store.ErrRateLimited
	}
	w.count++
	w.last = now
	return nil
}
