package memstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// A batch of more keys than the Limiter has room for still counts every
// one of them: those that do not fit move into the sketch with their new
// event.
func TestReserveAllLargerThanTheLimiter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := memstore.NewLimiter(memstore.Options{MaxEntries: 2})
	limits := []store.Limit{{N: 1, Window: time.Hour}}
	reqs := []store.LimitRequest{{Key: "a", Limits: limits}, {Key: "b", Limits: limits}, {Key: "c", Limits: limits}}
	ids, err := l.ReserveAll(ctx, reqs, base)
	check(t, "ReserveAll of three keys in a Limiter of two", err, nil)
	if len(ids) != 3 {
		t.Fatalf("ids = %q, want 3", ids)
	}
	for _, r := range reqs {
		_, err := l.Reserve(ctx, r.Key, limits, base.Add(time.Minute))
		check(t, fmt.Sprintf("Reserve(%s) within the hour", r.Key), err, store.ErrRateLimited)
	}
	_, err = l.ReserveAll(ctx, reqs, base.Add(time.Minute))
	check(t, "ReserveAll again within the hour", err, store.ErrRateLimited)
	_, err = l.ReserveAll(ctx, reqs, base.Add(time.Hour+time.Second))
	check(t, "ReserveAll an hour later", err, nil)
}

// ReserveAll in a Limiter far smaller than its traffic never admits a
// batch that the events accepted so far (less those cancelled) refuse, and
// its refusals name a key of the batch no later than the first the events
// refuse, with a RetryAfter no shorter than that key's events say: as
// Reserve, it may refuse early, never late.
func TestReserveAllUnderPressureNeverFailsOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	lists := [][]store.Limit{
		{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}},
		{{N: 3, Window: time.Hour}, {N: 5, Window: 24 * time.Hour}},
		{{N: 2, Window: 10 * time.Second}},
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 23))
			l := memstore.NewLimiter(memstore.Options{MaxEntries: 8})
			model := limiterModel{}
			now := base
			accepted, refused := 0, 0
			for step := range 4000 {
				now = now.Add(time.Duration(rng.IntN(int(time.Minute))))
				var reqs []store.LimitRequest
				for _, k := range rng.Perm(40)[:1+rng.IntN(3)] { // 40 keys, room for 8
					reqs = append(reqs, store.LimitRequest{Key: fmt.Sprint("key ", k), Limits: lists[k%len(lists)]})
				}
				if rng.IntN(8) == 0 {
					var rs []store.Reservation
					for _, r := range reqs {
						if es := model[r.Key]; len(es) > 0 {
							i := rng.IntN(len(es))
							rs = append(rs, store.Reservation{Key: r.Key, ID: es[i].id})
							model[r.Key] = slices.Delete(es, i, i+1)
						}
					}
					check(t, fmt.Sprintf("step %d: CancelAll", step), l.CancelAll(ctx, rs), nil)
				}
				first := -1 // the first request the model refuses
				for i, r := range reqs {
					if model.wait(r.Key, r.Limits, now) > 0 {
						first = i
						break
					}
				}
				ids, err := l.ReserveAll(ctx, reqs, now)
				var rl *store.RateLimitError
				switch {
				case err == nil && first >= 0:
					t.Fatalf("step %d: batch at base+%v accepted; %s's events say wait %v", step, now.Sub(base), reqs[first].Key, model.wait(reqs[first].Key, reqs[first].Limits, now))
				case err == nil:
					accepted++
					for i, r := range reqs {
						model[r.Key] = append(model[r.Key], modelEvent{now, ids[i]})
					}
				case !errors.As(err, &rl):
					t.Fatalf("step %d: ReserveAll: %v", step, err)
				default:
					refused++
					i := slices.IndexFunc(reqs, func(r store.LimitRequest) bool { return r.Key == rl.Key })
					switch {
					case i < 0:
						t.Fatalf("step %d: refused by %q, not a key of the batch", step, rl.Key)
					case first >= 0 && i > first:
						t.Fatalf("step %d: refused by request %d, but request %d refuses first", step, i, first)
					case rl.RetryAfter < model.wait(rl.Key, reqs[i].Limits, now):
						t.Fatalf("step %d: %s: RetryAfter %v, its events say %v", step, rl.Key, rl.RetryAfter, model.wait(rl.Key, reqs[i].Limits, now))
					}
				}
			}
			t.Logf("%d accepted, %d refused", accepted, refused)
		})
	}
}
