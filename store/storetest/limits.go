package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// TestSendLimiter checks a store.SendLimiter. newLimiter must return a
// limiter that has recorded no sends.
func TestSendLimiter(t *testing.T, newLimiter func(t *testing.T) store.SendLimiter) {
	t.Helper()
	const key = "UPDATE_EMAIL_EMS\x00alice@example.com"

	// reserve checks one Reserve call at now.
	reserve := func(t *testing.T, l store.SendLimiter, what, key string, limits store.SendLimits, now time.Time, want error) {
		t.Helper()
		checkErr(t, what, l.Reserve(t.Context(), key, limits, now), want)
	}

	t.Run("Interval spaces sends", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Interval: 300 * time.Millisecond, Daily: 10, Window: time.Hour}
		first := time.Now()
		reserve(t, l, "first send", key, limits, first, nil)
		reserve(t, l, "send within Interval", key, limits, time.Now(), store.ErrRateLimited)
		sleepUntil(first.Add(limits.Interval + 100*time.Millisecond))
		reserve(t, l, "send after Interval", key, limits, time.Now(), nil)
	})

	t.Run("Daily caps sends in a window", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Daily: 3, Window: time.Hour}
		for i := range limits.Daily {
			reserve(t, l, fmt.Sprintf("send %d", i+1), key, limits, time.Now(), nil)
		}
		reserve(t, l, "send past Daily", key, limits, time.Now(), store.ErrRateLimited)
	})

	t.Run("a new window allows Daily sends again", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Daily: 2, Window: 300 * time.Millisecond}
		first := time.Now()
		reserve(t, l, "send 1", key, limits, first, nil)
		reserve(t, l, "send 2", key, limits, time.Now(), nil)
		reserve(t, l, "send past Daily", key, limits, time.Now(), store.ErrRateLimited)
		sleepUntil(first.Add(limits.Window + 100*time.Millisecond))
		reserve(t, l, "send 1 of the next window", key, limits, time.Now(), nil)
		reserve(t, l, "send 2 of the next window", key, limits, time.Now(), nil)
		reserve(t, l, "send past Daily in the next window", key, limits, time.Now(), store.ErrRateLimited)
	})

	// A refused send that moved the interval's start would keep a client that
	// retries too early locked out for good.
	t.Run("a refused send records nothing", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Interval: 400 * time.Millisecond, Daily: 10, Window: time.Hour}
		first := time.Now()
		reserve(t, l, "first send", key, limits, first, nil)
		sleepUntil(first.Add(100 * time.Millisecond))
		reserve(t, l, "send within Interval", key, limits, time.Now(), store.ErrRateLimited)
		sleepUntil(first.Add(limits.Interval + 50*time.Millisecond))
		reserve(t, l, "send one Interval after the first", key, limits, time.Now(), nil)
	})

	t.Run("keys are limited separately", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Interval: time.Minute, Daily: 10, Window: time.Hour}
		reserve(t, l, "send to key", key, limits, time.Now(), nil)
		reserve(t, l, "send to key again", key, limits, time.Now(), store.ErrRateLimited)
		for _, other := range []string{"LOGIN_EMS\x00alice@example.com", "UPDATE_EMAIL_EMS\x00bob@example.com"} {
			reserve(t, l, fmt.Sprintf("send to %q", other), other, limits, time.Now(), nil)
		}
	})

	t.Run("of concurrent sends within Interval exactly one succeeds", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Interval: time.Minute, Daily: 10, Window: time.Hour}
		ctx, now := t.Context(), time.Now()
		errs := race(20, func(int) error { return l.Reserve(ctx, key, limits, now) })
		checkRace(t, "Reserve", errs, 1, store.ErrRateLimited)
	})

	t.Run("of concurrent sends no more than Daily succeed", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := store.SendLimits{Daily: 5, Window: time.Hour}
		ctx, now := t.Context(), time.Now()
		errs := race(20, func(int) error { return l.Reserve(ctx, key, limits, now) })
		checkRace(t, "Reserve", errs, limits.Daily, store.ErrRateLimited)
	})
}
