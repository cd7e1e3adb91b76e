package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// base is the virtual clock the Limiter checks start from. It lies far in
// the past on purpose: a limiter that keeps time by its own clock (a sweep
// by time.Now, a Redis key expiring at PEXPIREAT now+Window) forgets the
// suite's events at once and fails.
var base = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// The send budget of one address, as the handlers use it.
var (
	perMinute = store.Limit{N: 1, Window: time.Minute}
	perDay    = store.Limit{N: 10, Window: 24 * time.Hour}
)

// TestLimiter checks a store.Limiter. newLimiter must return a limiter that
// has recorded no events.
//
// Every check passes virtual nows (a fixed instant plus offsets) in whole
// milliseconds, so that window edges are tested exactly without sleeping
// and a store that counts in milliseconds passes as well as one that counts
// in nanoseconds. Within a key, nows move forward except in the one check
// of callers whose nows disagree.
func TestLimiter(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
	t.Helper()
	const key = "UPDATE_EMAIL_EMS\x00alice@example.com"

	t.Run("N events fill a window to the millisecond", func(t *testing.T) {
		t.Parallel()
		for _, lim := range []store.Limit{
			{N: 1, Window: time.Millisecond},
			{N: 1, Window: time.Minute},
			{N: 3, Window: time.Hour},
			perDay,
			{N: 100, Window: 24 * time.Hour},
		} {
			t.Run(fmt.Sprintf("%d per %v", lim.N, lim.Window), func(t *testing.T) {
				l := newLimiter(t)
				limits := []store.Limit{lim}
				for i := range lim.N {
					mustReserve(t, l, fmt.Sprintf("event %d at base", i+1), key, limits, base)
				}
				last := base.Add(lim.Window - time.Millisecond)
				mustRefuse(t, l, "one more 1ms before the window ends", key, limits, last, time.Millisecond)
				end := base.Add(lim.Window)
				mustReserve(t, l, "one more as the window ends", key, limits, end)
				for i := range lim.N - 1 {
					mustReserve(t, l, fmt.Sprintf("event %d of the next window", i+2), key, limits, end)
				}
				mustRefuse(t, l, "past N in the next window", key, limits, end, lim.Window)
			})
		}
	})

	t.Run("RetryAfter is measured from now", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{{N: 2, Window: time.Minute}}
		mustReserve(t, l, "event at base", key, limits, base)
		mustReserve(t, l, "event at base+20s", key, limits, base.Add(20*time.Second))
		for _, tt := range []struct {
			at, want time.Duration
		}{
			{30 * time.Second, 30 * time.Second},
			{45*time.Second + 500*time.Millisecond, 14*time.Second + 500*time.Millisecond},
			{time.Minute - time.Millisecond, time.Millisecond},
		} {
			mustRefuse(t, l, fmt.Sprintf("at base+%v", tt.at), key, limits, base.Add(tt.at), tt.want)
		}
		mustReserve(t, l, "as the first event leaves", key, limits, base.Add(time.Minute))
		mustRefuse(t, l, "right after", key, limits, base.Add(time.Minute), 20*time.Second)
	})

	// A refused call that counted would keep a client that retries too
	// early locked out for good.
	t.Run("a refused call records nothing", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{perMinute, {N: 3, Window: time.Hour}}
		mustReserve(t, l, "first event", key, limits, base)
		for i := range 5 {
			at := base.Add(time.Duration(i+1) * 10 * time.Second)
			mustRefuse(t, l, fmt.Sprintf("retry %d within the minute", i+1), key, limits, at, time.Minute-time.Duration(i+1)*10*time.Second)
		}
		mustReserve(t, l, "one minute after the first", key, limits, base.Add(time.Minute))
		mustReserve(t, l, "two minutes after the first", key, limits, base.Add(2*time.Minute))
		mustRefuse(t, l, "the fourth in the hour", key, limits, base.Add(3*time.Minute), time.Hour-3*time.Minute)
	})

	// Daily windows fixed to the calendar let 20 sends through between
	// 23:50 and 00:09, 10 on either side of midnight. A sliding window
	// allows 10 in any 24 hours.
	t.Run("1 per minute and 10 per day hold across midnight", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{perMinute, perDay}
		start := time.Date(2031, 12, 31, 23, 50, 0, 0, time.UTC)
		for i := range 2 * perDay.N {
			at := start.Add(time.Duration(i) * time.Minute)
			what := fmt.Sprintf("send %d at %s", i+1, at.Format("15:04"))
			if i < perDay.N {
				mustReserve(t, l, what, key, limits, at)
			} else {
				mustRefuse(t, l, what, key, limits, at, start.Add(24*time.Hour).Sub(at))
			}
		}
		day := start.Add(24 * time.Hour)
		mustReserve(t, l, "a day after the first send", key, limits, day)
		mustRefuse(t, l, "30s later", key, limits, day.Add(30*time.Second), 30*time.Second)
		mustReserve(t, l, "a day after the second send", key, limits, day.Add(time.Minute))
	})

	t.Run("every limit holds against random events", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			seed   uint64
			limits []store.Limit
		}{
			{1, []store.Limit{{N: 3, Window: 10 * time.Second}, {N: 5, Window: time.Minute}}},
			{2, []store.Limit{{N: 1, Window: 2 * time.Second}, {N: 4, Window: 10 * time.Second}, {N: 6, Window: 30 * time.Second}}},
			{3, []store.Limit{{N: 7, Window: 20 * time.Second}}},
		} {
			t.Run(fmt.Sprintf("seed %d", tt.seed), func(t *testing.T) {
				checkRandomEvents(t, newLimiter(t), tt.seed, tt.limits)
			})
		}
	})

	t.Run("Cancel gives the slot back", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{{N: 2, Window: time.Hour}}
		first := mustReserve(t, l, "first", key, limits, base)
		mustReserve(t, l, "second", key, limits, base.Add(time.Second))
		mustRefuse(t, l, "third", key, limits, base.Add(2*time.Second), time.Hour-2*time.Second)
		mustCancel(t, l, "Cancel(first)", key, first)
		third := mustReserve(t, l, "third after Cancel(first)", key, limits, base.Add(2*time.Second))
		// The second event now leaves first.
		mustRefuse(t, l, "fourth", key, limits, base.Add(3*time.Second), time.Hour-2*time.Second)

		mustCancel(t, l, "Cancel(first) again", key, first)
		mustCancel(t, l, "Cancel(unknown id)", key, "no-such-id")
		mustCancel(t, l, `Cancel("")`, key, "")
		mustCancel(t, l, "Cancel(third) under another key", "LOGIN_EMS\x00alice@example.com", third)
		mustCancel(t, l, "Cancel(unknown key)", "UPDATE_EMAIL_EMS\x00nobody@example.com", third)
		mustRefuse(t, l, "fourth after cancels of other ids and keys", key, limits, base.Add(3*time.Second), time.Hour-2*time.Second)
	})

	t.Run("Cancel of every event leaves the key as new", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{perMinute, perDay}
		for i := range 3 {
			id := mustReserve(t, l, fmt.Sprintf("reserve %d", i+1), key, limits, base)
			mustCancel(t, l, fmt.Sprintf("cancel %d", i+1), key, id)
		}
		mustReserve(t, l, "reserve after the cancels", key, limits, base)
		mustRefuse(t, l, "and one more", key, limits, base, time.Minute)
	})

	t.Run("keys are limited separately", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{perMinute}
		mustReserve(t, l, "key", key, limits, base)
		mustRefuse(t, l, "key again", key, limits, base, time.Minute)
		for _, other := range []string{
			"LOGIN_EMS\x00alice@example.com",
			"UPDATE_EMAIL_EMS\x00bob@example.com",
			"UPDATE_EMAIL_EMS\x00Alice@example.com",
			"UPDATE_EMAIL_EMS\x00alice@example.co",
			"",
		} {
			mustReserve(t, l, fmt.Sprintf("key %q", other), other, limits, base)
		}
	})

	t.Run("invalid limits are an error and record nothing", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name   string
			limits []store.Limit
		}{
			{"nil", nil},
			{"empty", []store.Limit{}},
			{"N zero", []store.Limit{{N: 0, Window: time.Minute}}},
			{"N negative", []store.Limit{{N: -1, Window: time.Minute}}},
			{"Window zero", []store.Limit{{N: 1}}},
			{"Window negative", []store.Limit{{N: 1, Window: -time.Minute}}},
			{"one bad of two", []store.Limit{perMinute, {N: 0, Window: time.Hour}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				l := newLimiter(t)
				id, err := l.Reserve(t.Context(), key, tt.limits, base)
				if err == nil || errors.Is(err, store.ErrRateLimited) {
					t.Errorf("Reserve(%v) = %q, %v; want an error not wrapping %v", tt.limits, id, err, store.ErrRateLimited)
				}
				mustReserve(t, l, "Reserve(valid limits) afterwards", key, []store.Limit{perMinute}, base)
			})
		}
	})

	t.Run("of concurrent calls no more succeed than the limits allow", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			limits []store.Limit
			wantOK int
		}{
			{[]store.Limit{{N: 5, Window: time.Hour}}, 5},
			{[]store.Limit{perMinute, perDay}, 1},
			{[]store.Limit{{N: 20, Window: time.Hour}, {N: 7, Window: time.Minute}}, 7},
		} {
			t.Run(fmt.Sprint(tt.limits), func(t *testing.T) {
				l := newLimiter(t)
				ctx := t.Context()
				errs := race(40, func(int) error {
					_, err := l.Reserve(ctx, key, tt.limits, base)
					return err
				})
				checkRace(t, "Reserve", errs, tt.wantOK, store.ErrRateLimited)
			})
		}
	})

	// Callers take now before they call, and a call that took it earlier
	// may arrive later: nows within one window, in any order, let no more
	// than N events through.
	t.Run("nows out of order keep the bounds", func(t *testing.T) {
		t.Parallel()
		limits := []store.Limit{{N: 4, Window: time.Minute}}
		rng := rand.New(rand.NewPCG(7, 7))
		nows := make([]time.Time, 30)
		for i := range nows {
			nows[i] = base.Add(time.Duration(rng.IntN(int(time.Minute/time.Millisecond))) * time.Millisecond)
		}
		latest := slices.MaxFunc(nows, time.Time.Compare)

		t.Run("one by one", func(t *testing.T) {
			l := newLimiter(t)
			ok := 0
			var retry time.Time // when the last refusal said to retry
			for i, now := range nows {
				_, err := l.Reserve(t.Context(), key, limits, now)
				var rl *store.RateLimitError
				switch {
				case err == nil:
					ok++
				case !errors.As(err, &rl):
					t.Errorf("Reserve %d at base+%v: %v, want nil or a *store.RateLimitError", i, now.Sub(base), err)
				case rl.RetryAfter <= 0 || rl.RetryAfter > latest.Sub(now)+limits[0].Window:
					t.Errorf("Reserve %d at base+%v: RetryAfter %v, want in (0, %v]", i, now.Sub(base), rl.RetryAfter, latest.Sub(now)+limits[0].Window)
				default:
					retry = now.Add(rl.RetryAfter)
				}
			}
			if ok != limits[0].N {
				t.Errorf("%d of %d calls within one window succeeded, want %d", ok, len(nows), limits[0].N)
			}
			// RetryAfter counts from the now passed, not from a later one
			// the limiter may have used instead.
			mustReserve(t, l, fmt.Sprintf("retry at base+%v as the last refusal said", retry.Sub(base)), key, limits, retry)
		})

		t.Run("concurrently", func(t *testing.T) {
			l := newLimiter(t)
			ctx := t.Context()
			errs := race(len(nows), func(i int) error {
				_, err := l.Reserve(ctx, key, limits, nows[i])
				return err
			})
			checkRace(t, "Reserve", errs, limits[0].N, store.ErrRateLimited)
		})
	})

	t.Run("concurrent Reserve and Cancel hold no more than N at once", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{{N: 3, Window: time.Hour}}
		ctx := t.Context()
		var held, most atomic.Int32
		var mu sync.Mutex
		var failures []string
		race(20, func(g int) error {
			for i := range 10 {
				id, err := l.Reserve(ctx, key, limits, base)
				if err != nil {
					if !errors.Is(err, store.ErrRateLimited) {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("goroutine %d: Reserve %d: %v", g, i, err))
						mu.Unlock()
					}
					continue
				}
				raiseTo(&most, held.Add(1))
				held.Add(-1)
				if err := l.Cancel(ctx, key, id); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("goroutine %d: Cancel %d: %v", g, i, err))
					mu.Unlock()
				}
			}
			return nil
		})
		for _, f := range failures {
			t.Error(f)
		}
		if m := most.Load(); m > int32(limits[0].N) {
			t.Errorf("%d reservations held at once, want at most %d", m, limits[0].N)
		}
		// Every reservation was cancelled: the budget is whole again.
		for i := range limits[0].N {
			mustReserve(t, l, fmt.Sprintf("reserve %d after the race", i+1), key, limits, base)
		}
		mustRefuse(t, l, "one more", key, limits, base, time.Hour)
	})
}

// checkRandomEvents reserves at random nows moving forward and checks every
// answer against a model that keeps the accepted events in a list: a call
// succeeds exactly when the model allows it, a refusal's RetryAfter is the
// model's to the millisecond (one millisecond earlier is still refused, at
// RetryAfter the call succeeds), and at the end no window of any limit
// holds more than its N of the events left. One call in ten cancels a
// random event.
func checkRandomEvents(t *testing.T, l store.Limiter, seed uint64, limits []store.Limit) {
	t.Helper()
	const key = "random"
	rng := rand.New(rand.NewPCG(seed, 0x5e1f))
	var events []modelEvent
	now := base
	for step := range 150 {
		switch r := rng.IntN(20); {
		case r < 3: // same instant
		case r < 14:
			now = now.Add(time.Duration(1+rng.IntN(5000)) * time.Millisecond)
		default:
			now = now.Add(time.Duration(5+rng.IntN(40)) * time.Second)
		}
		if len(events) > 0 && rng.IntN(10) == 0 {
			i := rng.IntN(len(events))
			mustCancel(t, l, fmt.Sprintf("step %d: Cancel", step), key, events[i].id)
			events = slices.Delete(events, i, i+1)
		}
		what := fmt.Sprintf("step %d: Reserve at base+%v", step, now.Sub(base))
		if want := modelRetryAfter(events, limits, now); want > 0 {
			if !mustRefuse(t, l, what, key, limits, now, want) {
				return
			}
			if want > time.Millisecond {
				mustRefuse(t, l, what+" + RetryAfter - 1ms", key, limits, now.Add(want-time.Millisecond), time.Millisecond)
			}
			now = now.Add(want)
			what += " + RetryAfter"
		}
		id := mustReserve(t, l, what, key, limits, now)
		if t.Failed() {
			return
		}
		events = append(events, modelEvent{at: now, id: id})
	}
	for _, lim := range limits {
		for i, e := range events {
			n := 0
			for _, f := range events[i:] {
				if f.at.Before(e.at.Add(lim.Window)) {
					n++
				}
			}
			if n > lim.N {
				t.Errorf("%d events in [base+%v, +%v), want at most %d", n, e.at.Sub(base), lim.Window, lim.N)
			}
		}
	}
}

// modelEvent is an accepted event in checkRandomEvents' model.
type modelEvent struct {
	at time.Time
	id string
}

// modelRetryAfter returns how long after now a Reserve at now would be
// allowed, given the accepted events (oldest first, none after now): zero
// if it is allowed at now.
func modelRetryAfter(events []modelEvent, limits []store.Limit, now time.Time) time.Duration {
	var wait time.Duration
	for _, lim := range limits {
		var in []time.Time // the events in (now-Window, now], oldest first
		for _, e := range events {
			if e.at.After(now.Add(-lim.Window)) {
				in = append(in, e.at)
			}
		}
		if len(in) >= lim.N {
			// Once the oldest len(in)-N+1 have left, N-1 remain.
			wait = max(wait, in[len(in)-lim.N].Add(lim.Window).Sub(now))
		}
	}
	return wait
}

// raiseTo sets m to n if n is larger.
func raiseTo(m *atomic.Int32, n int32) {
	for old := m.Load(); n > old; old = m.Load() {
		if m.CompareAndSwap(old, n) {
			return
		}
	}
}

// mustReserve checks that Reserve succeeds and returns its id.
func mustReserve(t *testing.T, l store.Limiter, what, key string, limits []store.Limit, now time.Time) string {
	t.Helper()
	id, err := l.Reserve(t.Context(), key, limits, now)
	if err != nil {
		t.Errorf("%s: Reserve: %v, want success", what, err)
	}
	return id
}

// mustRefuse checks that Reserve is refused with a *store.RateLimitError
// wrapping store.ErrRateLimited whose RetryAfter is want, and reports
// whether it was.
func mustRefuse(t *testing.T, l store.Limiter, what, key string, limits []store.Limit, now time.Time, want time.Duration) bool {
	t.Helper()
	id, err := l.Reserve(t.Context(), key, limits, now)
	var rl *store.RateLimitError
	switch {
	case err == nil:
		t.Errorf("%s: Reserve succeeded (id %q), want a refusal with RetryAfter %v", what, id, want)
	case !errors.As(err, &rl) || !errors.Is(err, store.ErrRateLimited):
		t.Errorf("%s: Reserve: %v, want a *store.RateLimitError wrapping %v", what, err, store.ErrRateLimited)
	case rl.RetryAfter != want:
		t.Errorf("%s: RetryAfter = %v, want %v", what, rl.RetryAfter, want)
	default:
		return true
	}
	return false
}

// mustCancel checks that Cancel succeeds.
func mustCancel(t *testing.T, l store.Limiter, what, key, id string) {
	t.Helper()
	if err := l.Cancel(t.Context(), key, id); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}
