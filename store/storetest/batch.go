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

// TestBatchLimiter checks a store.BatchLimiter: ReserveAll judges every
// request as Reserve would and records all of them or none, a refusal
// names the first refusing request, the ids come in the order of the
// requests and cancel their own events, and concurrent batches over
// overlapping keys never admit more than a key's limits. newLimiter must
// return a limiter that has recorded no events.
//
// Like TestLimiter it passes virtual nows in whole milliseconds and never
// sleeps.
func TestBatchLimiter(t *testing.T, newLimiter func(t *testing.T) store.BatchLimiter) {
	t.Helper()
	const (
		user = "wrong-user\x00alice"
		ip   = "wrong-ip\x00192.0.2.1"
		chg  = "changes-user\x00alice"
	)
	keys := []string{user, ip, chg}

	t.Run("a batch fills each window to the millisecond", func(t *testing.T) {
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
				reqs := requests([]store.Limit{lim}, keys...)
				for i := range lim.N {
					mustReserveAll(t, l, fmt.Sprintf("batch %d at base", i+1), reqs, base)
				}
				last := base.Add(lim.Window - time.Millisecond)
				mustRefuseAll(t, l, "one more 1ms before the window ends", reqs, last, user, time.Millisecond)
				end := base.Add(lim.Window)
				mustReserveAll(t, l, "one more as the window ends", reqs, end)
				for i := range lim.N - 1 {
					mustReserveAll(t, l, fmt.Sprintf("batch %d of the next window", i+2), reqs, end)
				}
				mustRefuseAll(t, l, "past N in the next window", reqs, end, user, lim.Window)
			})
		}
	})

	// Whichever request refuses, the others record nothing: a batch that
	// half counted would charge a client for a request it never got.
	t.Run("one refusing key refuses the batch and records nothing", func(t *testing.T) {
		t.Parallel()
		limits := []store.Limit{{N: 2, Window: time.Hour}, perDay}
		for full := range keys {
			t.Run(fmt.Sprintf("refused by request %d", full+1), func(t *testing.T) {
				l := newLimiter(t)
				for i := range 2 {
					mustReserve(t, l, fmt.Sprintf("event %d of %q", i+1, keys[full]), keys[full], limits, base)
				}
				reqs := requests(limits, keys...)
				at := base.Add(10 * time.Second)
				for i := range 3 {
					mustRefuseAll(t, l, fmt.Sprintf("batch %d", i+1), reqs, at, keys[full], time.Hour-10*time.Second)
				}
				for i, key := range keys {
					if i != full {
						checkSpare(t, l, fmt.Sprintf("%q after the refusals", key), key, limits, at, 2)
					}
				}
			})
		}
	})

	t.Run("the first refusing request names the refusal", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		hourly, minutely := []store.Limit{{N: 1, Window: time.Hour}}, []store.Limit{perMinute}
		mustReserve(t, l, "the hourly key", ip, hourly, base)
		mustReserve(t, l, "the minutely key", chg, minutely, base)
		at := base.Add(time.Second)
		user := store.LimitRequest{Key: user, Limits: hourly}
		ip := store.LimitRequest{Key: ip, Limits: hourly}
		chg := store.LimitRequest{Key: chg, Limits: minutely}
		for _, tt := range []struct {
			reqs       []store.LimitRequest
			key        string
			retryAfter time.Duration
		}{
			{[]store.LimitRequest{user, ip, chg}, ip.Key, time.Hour - time.Second},
			{[]store.LimitRequest{user, chg, ip}, chg.Key, time.Minute - time.Second},
			{[]store.LimitRequest{chg, ip}, chg.Key, time.Minute - time.Second},
			{[]store.LimitRequest{ip}, ip.Key, time.Hour - time.Second},
		} {
			mustRefuseAll(t, l, fmt.Sprintf("batch %q", keysOf(tt.reqs)), tt.reqs, at, tt.key, tt.retryAfter)
		}
		checkSpare(t, l, "the free key after the refusals", user.Key, hourly, at, 1)
	})

	t.Run("each request is judged under its own limits", func(t *testing.T) {
		t.Parallel()
		for _, seed := range []uint64{1, 2, 3} {
			t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
				checkRandomBatches(t, newLimiter(t), seed)
			})
		}
	})

	t.Run("ids come in order and cancel their own events", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{{N: 1, Window: time.Hour}}
		ids := mustReserveAll(t, l, "batch", requests(limits, keys...), base)
		if len(ids) != len(keys) {
			t.FailNow()
		}
		if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
			t.Errorf("ids %q are not distinct", ids)
		}
		for _, key := range keys {
			mustRefuse(t, l, fmt.Sprintf("%q after the batch", key), key, limits, base, time.Hour)
		}
		for _, tt := range []struct {
			what string
			rs   []store.Reservation
		}{
			{"ids swapped between keys", []store.Reservation{{Key: user, ID: ids[1]}, {Key: ip, ID: ids[0]}, {Key: chg, ID: ids[0]}}},
			{"unknown ids and keys", []store.Reservation{{Key: user, ID: "no-such-id"}, {Key: user, ID: ""}, {Key: "nobody", ID: ids[0]}}},
			{"none", nil},
		} {
			if err := l.CancelAll(t.Context(), tt.rs); err != nil {
				t.Errorf("CancelAll(%s): %v", tt.what, err)
			}
		}
		for _, key := range keys {
			mustRefuse(t, l, fmt.Sprintf("%q after cancels of other ids", key), key, limits, base, time.Hour)
		}
		if err := l.CancelAll(t.Context(), []store.Reservation{{Key: user, ID: ids[0]}, {Key: ip, ID: ids[1]}}); err != nil {
			t.Errorf("CancelAll(the first two): %v", err)
		}
		mustCancel(t, l, "Cancel(the third)", chg, ids[2])
		for _, key := range keys {
			checkSpare(t, l, fmt.Sprintf("%q after its event was cancelled", key), key, limits, base, 1)
		}
	})

	t.Run("invalid limits fail the batch and record nothing", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name   string
			limits []store.Limit
		}{
			{"nil", nil},
			{"N zero", []store.Limit{{N: 0, Window: time.Minute}}},
			{"Window negative", []store.Limit{{N: 1, Window: -time.Minute}}},
			{"one bad of two", []store.Limit{perMinute, {N: 0, Window: time.Hour}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				l := newLimiter(t)
				reqs := requests([]store.Limit{perMinute}, keys...)
				reqs[1].Limits = tt.limits
				ids, err := l.ReserveAll(t.Context(), reqs, base)
				if err == nil || errors.Is(err, store.ErrRateLimited) {
					t.Errorf("ReserveAll(%v in the second request) = %q, %v; want an error not wrapping %v", tt.limits, ids, err, store.ErrRateLimited)
				}
				for _, key := range []string{user, chg} {
					checkSpare(t, l, fmt.Sprintf("%q afterwards", key), key, []store.Limit{perMinute}, base, 1)
				}
			})
		}
	})

	// The contract asks for distinct keys; a limiter that took a key named
	// twice as one event would let a caller's mistake exceed the limit.
	t.Run("a key named twice is not admitted twice", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{perMinute}
		ids, err := l.ReserveAll(t.Context(), requests(limits, user, ip, user), base)
		if err == nil {
			t.Errorf("ReserveAll naming %q twice under 1 a minute = %q, want an error", user, ids)
		}
		for _, key := range []string{user, ip} {
			checkSpare(t, l, fmt.Sprintf("%q afterwards", key), key, limits, base, 1)
		}
	})

	t.Run("of concurrent batches sharing a key no more succeed than its limits allow", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		scarce := []store.Limit{{N: 7, Window: time.Hour}}
		roomy := []store.Limit{{N: 1000, Window: time.Hour}}
		ctx := t.Context()
		errs := race(40, func(i int) error {
			own := store.LimitRequest{Key: fmt.Sprint("own ", i), Limits: roomy}
			shared := store.LimitRequest{Key: user, Limits: scarce}
			reqs := []store.LimitRequest{shared, own}
			if i%2 == 1 {
				reqs = []store.LimitRequest{own, shared}
			}
			_, err := l.ReserveAll(ctx, reqs, base)
			return err
		})
		checkRace(t, "ReserveAll", errs, scarce[0].N, store.ErrRateLimited)
		// A refused batch left nothing under its own key either.
		for i, err := range errs {
			spare := 0
			if err != nil {
				spare = 1
			}
			checkSpare(t, l, fmt.Sprintf("the own key of batch %d (%v)", i, err), fmt.Sprint("own ", i), []store.Limit{{N: 1, Window: time.Hour}}, base, spare)
		}
	})

	// Batches over overlapping sets of scarce keys, in every order: each
	// key admits no more than its N, and what a key has left afterwards is
	// exactly N less the batches that succeeded with it, so no refused
	// batch left an event behind.
	t.Run("concurrent batches over overlapping keys never over-admit", func(t *testing.T) {
		t.Parallel()
		const n = 5
		limits := []store.Limit{{N: n, Window: time.Hour}}
		for _, seed := range []uint64{1, 2} {
			t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
				l := newLimiter(t)
				rng := rand.New(rand.NewPCG(seed, 19))
				sets := make([][]string, 40)
				for i := range sets {
					for _, k := range rng.Perm(4)[:2+rng.IntN(3)] {
						sets[i] = append(sets[i], fmt.Sprint("scarce ", k))
					}
				}
				ctx := t.Context()
				errs := race(len(sets), func(i int) error {
					_, err := l.ReserveAll(ctx, requests(limits, sets[i]...), base)
					return err
				})
				admitted := map[string]int{}
				for i, err := range errs {
					switch {
					case err == nil:
						for _, k := range sets[i] {
							admitted[k]++
						}
					case !errors.Is(err, store.ErrRateLimited):
						t.Errorf("ReserveAll(%q): %v", sets[i], err)
					}
				}
				for k := range 4 {
					key := fmt.Sprint("scarce ", k)
					if admitted[key] > n {
						t.Errorf("%q admitted %d batches, want at most %d", key, admitted[key], n)
						continue
					}
					checkSpare(t, l, fmt.Sprintf("%q after %d batches admitted it", key, admitted[key]), key, limits, base, n-admitted[key])
				}
			})
		}
	})

	t.Run("concurrent ReserveAll and CancelAll hold no more than N at once", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limits := []store.Limit{{N: 3, Window: time.Hour}}
		ctx := t.Context()
		var held, most atomic.Int32
		var mu sync.Mutex
		var failures []string
		fail := func(format string, args ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		race(20, func(g int) error {
			own := fmt.Sprint("own ", g)
			for i := range 10 {
				reqs := requests(limits, own, user)
				ids, err := l.ReserveAll(ctx, reqs, base)
				if err != nil {
					if !errors.Is(err, store.ErrRateLimited) {
						fail("goroutine %d: ReserveAll %d: %v", g, i, err)
					}
					continue
				}
				raiseTo(&most, held.Add(1))
				held.Add(-1)
				if err := l.CancelAll(ctx, []store.Reservation{{Key: own, ID: ids[0]}, {Key: user, ID: ids[1]}}); err != nil {
					fail("goroutine %d: CancelAll %d: %v", g, i, err)
				}
			}
			return nil
		})
		for _, f := range failures {
			t.Error(f)
		}
		if m := most.Load(); m > int32(limits[0].N) {
			t.Errorf("%d batches held at once, want at most %d", m, limits[0].N)
		}
		checkSpare(t, l, "the shared key after the race", user, limits, base, limits[0].N)
	})
}

// requests returns one request a key, each under limits.
func requests(limits []store.Limit, keys ...string) []store.LimitRequest {
	reqs := make([]store.LimitRequest, len(keys))
	for i, k := range keys {
		reqs[i] = store.LimitRequest{Key: k, Limits: limits}
	}
	return reqs
}

// keysOf returns the keys of reqs.
func keysOf(reqs []store.LimitRequest) []string {
	keys := make([]string, len(reqs))
	for i, r := range reqs {
		keys[i] = r.Key
	}
	return keys
}

// checkRandomBatches runs batches of random subsets of three keys, each
// under limits of its own, at random nows moving forward, mixed with
// single Reserves that set the keys apart and with cancels, and checks
// every answer against a model: a batch succeeds exactly when every key's
// events allow it, and a refusal names the first key in the batch's order
// that refuses, with that key's RetryAfter to the millisecond.
func checkRandomBatches(t *testing.T, l store.BatchLimiter, seed uint64) {
	t.Helper()
	keys := []struct {
		key    string
		limits []store.Limit
	}{
		{"random 1", []store.Limit{{N: 3, Window: 10 * time.Second}, {N: 5, Window: time.Minute}}},
		{"random 2", []store.Limit{{N: 1, Window: 2 * time.Second}, {N: 4, Window: 10 * time.Second}, {N: 6, Window: 30 * time.Second}}},
		{"random 3", []store.Limit{{N: 7, Window: 20 * time.Second}}},
	}
	rng := rand.New(rand.NewPCG(seed, 0xba7c4))
	events := make([][]modelEvent, len(keys))
	now := base
	admitted, refused := 0, 0
	for step := range 300 {
		switch r := rng.IntN(20); {
		case r < 4: // same instant
		case r < 15:
			now = now.Add(time.Duration(1+rng.IntN(3000)) * time.Millisecond)
		default:
			now = now.Add(time.Duration(5+rng.IntN(30)) * time.Second)
		}
		switch r := rng.IntN(10); {
		case r == 0:
			// Cancel a random event of each key that has one.
			var rs []store.Reservation
			for k := range keys {
				if es := events[k]; len(es) > 0 {
					i := rng.IntN(len(es))
					rs = append(rs, store.Reservation{Key: keys[k].key, ID: es[i].id})
					events[k] = slices.Delete(es, i, i+1)
				}
			}
			if err := l.CancelAll(t.Context(), rs); err != nil {
				t.Fatalf("step %d: CancelAll: %v", step, err)
			}
		case r < 3:
			k := rng.IntN(len(keys))
			what := fmt.Sprintf("step %d: Reserve(%s) at base+%v", step, keys[k].key, now.Sub(base))
			if want := modelRetryAfter(events[k], keys[k].limits, now); want > 0 {
				if !mustRefuse(t, l, what, keys[k].key, keys[k].limits, now, want) {
					return
				}
				continue
			}
			id := mustReserve(t, l, what, keys[k].key, keys[k].limits, now)
			if t.Failed() {
				return
			}
			events[k] = append(events[k], modelEvent{at: now, id: id})
		default:
			order := rng.Perm(len(keys))[:1+rng.IntN(len(keys))]
			reqs := make([]store.LimitRequest, len(order))
			refusing, wait := "", time.Duration(0)
			for i, k := range order {
				reqs[i] = store.LimitRequest{Key: keys[k].key, Limits: keys[k].limits}
				if w := modelRetryAfter(events[k], keys[k].limits, now); w > 0 && refusing == "" {
					refusing, wait = keys[k].key, w
				}
			}
			what := fmt.Sprintf("step %d: ReserveAll(%q) at base+%v", step, keysOf(reqs), now.Sub(base))
			if refusing != "" {
				refused++
				if !mustRefuseAll(t, l, what, reqs, now, refusing, wait) {
					return
				}
				continue
			}
			admitted++
			ids := mustReserveAll(t, l, what, reqs, now)
			if t.Failed() {
				return
			}
			for i, k := range order {
				events[k] = append(events[k], modelEvent{at: now, id: ids[i]})
			}
		}
	}
	if admitted == 0 || refused == 0 {
		t.Errorf("%d batches admitted and %d refused: the check needs both", admitted, refused)
	}
}

// mustReserveAll checks that ReserveAll succeeds with one id a request and
// returns the ids.
func mustReserveAll(t *testing.T, l store.BatchLimiter, what string, reqs []store.LimitRequest, now time.Time) []string {
	t.Helper()
	ids, err := l.ReserveAll(t.Context(), reqs, now)
	switch {
	case err != nil:
		t.Errorf("%s: ReserveAll: %v, want success", what, err)
	case len(ids) != len(reqs):
		t.Errorf("%s: ReserveAll returned %d ids for %d requests", what, len(ids), len(reqs))
	case slices.Contains(ids, ""):
		t.Errorf("%s: ReserveAll returned an empty id: %q", what, ids)
	}
	return ids
}

// mustRefuseAll checks that ReserveAll is refused with a
// *store.RateLimitError wrapping store.ErrRateLimited that names key and
// whose RetryAfter is want, and reports whether it was.
func mustRefuseAll(t *testing.T, l store.BatchLimiter, what string, reqs []store.LimitRequest, now time.Time, key string, want time.Duration) bool {
	t.Helper()
	ids, err := l.ReserveAll(t.Context(), reqs, now)
	var rl *store.RateLimitError
	switch {
	case err == nil:
		t.Errorf("%s: ReserveAll succeeded (ids %q), want a refusal by %q with RetryAfter %v", what, ids, key, want)
	case !errors.As(err, &rl) || !errors.Is(err, store.ErrRateLimited):
		t.Errorf("%s: ReserveAll: %v, want a *store.RateLimitError wrapping %v", what, err, store.ErrRateLimited)
	case rl.Key != key || rl.RetryAfter != want:
		t.Errorf("%s: refused by %q after %v, want %q after %v", what, rl.Key, rl.RetryAfter, key, want)
	default:
		return true
	}
	return false
}

// checkSpare checks that exactly n more events fit under key at now: n
// Reserves succeed and the next is refused. It spends them.
func checkSpare(t *testing.T, l store.Limiter, what, key string, limits []store.Limit, now time.Time, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Reserve(t.Context(), key, limits, now); err != nil {
			t.Errorf("%s: Reserve %d of the %d that should fit: %v", what, i+1, n, err)
			return
		}
	}
	if id, err := l.Reserve(t.Context(), key, limits, now); !errors.Is(err, store.ErrRateLimited) {
		t.Errorf("%s: Reserve %d, beyond the %d that should fit: %q, %v; want a refusal", what, n+1, n, id, err)
	}
}
