package memstore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// Batches keep the Limiter's bounds and its count of the logs' room, as
// Reserve does, however many of their keys are new or held, and a
// refused batch changes nothing: not the keys held, not their logs.
func TestReserveAllBounds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const max = 6
	l := NewLimiter(Options{MaxEntries: max})
	limits := []store.Limit{{N: 3, Window: time.Minute}, {N: 12, Window: time.Hour}}
	rng := rand.New(rand.NewPCG(3, 29))
	now := base
	for step := range 3000 {
		now = now.Add(time.Duration(rng.IntN(int(2 * time.Second))))
		var reqs []store.LimitRequest
		for _, k := range rng.Perm(20)[:1+rng.IntN(4)] {
			reqs = append(reqs, store.LimitRequest{Key: fmt.Sprint("key ", k), Limits: limits})
		}
		before := l.snapshot(now)
		ids, err := l.ReserveAll(ctx, reqs, now)
		switch {
		case errors.Is(err, store.ErrRateLimited):
			if after := l.snapshot(now); after != before {
				t.Fatalf("step %d: a refused batch changed the Limiter: %s, was %s", step, after, before)
			}
		case err != nil:
			t.Fatalf("step %d: %v", step, err)
		case rng.IntN(4) == 0:
			rs := make([]store.Reservation, len(ids))
			for i, id := range ids {
				rs[i] = store.Reservation{Key: reqs[i].Key, ID: id}
			}
			if err := l.CancelAll(ctx, rs); err != nil {
				t.Fatal(err)
			}
		}
		logged := 0
		for _, n := range l.keys.index {
			logged += cap(l.keys.at(n).val.events)
		}
		switch {
		case l.keys.len() > max:
			t.Fatalf("step %d: %d keys held, want at most %d", step, l.keys.len(), max)
		case logged != l.logged:
			t.Fatalf("step %d: the logs have room for %d events, the Limiter counts %d", step, logged, l.logged)
		case logged > eventsPerEntry*max:
			t.Fatalf("step %d: the logs have room for %d events, want at most %d", step, logged, eventsPerEntry*max)
		}
	}
	if l.spilled == 0 {
		t.Fatal("no key moved into the sketch: the test needs a full Limiter")
	}
}

// snapshot describes the keys l holds at now and their logs. (Expired
// keys leave on any call.)
func (l *Limiter) snapshot(now time.Time) string {
	var s string
	for i := range int(l.keys.used) {
		sl := l.keys.at(int32(i))
		if _, ok := l.keys.index[sl.key]; ok && sl.expiry > nanos(now) {
			s += fmt.Sprintf("%x:%d:%v;", sl.key[:4], sl.expiry, sl.val.events)
		}
	}
	return fmt.Sprintf("%d logged, %d spilled: %s", l.logged, l.spilled, s)
}

// A batch that cannot make room for its new key (store.ErrFull: the key
// to move into the sketch holds an event beyond the cells' years) takes
// back the events it recorded.
func TestReserveAllErrFullTakesBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := NewLimiter(Options{MaxEntries: 1})
	limits := []store.Limit{{N: 2, Window: time.Hour}}
	reserve := func(key string, now time.Time) error {
		_, err := l.Reserve(ctx, key, limits, now)
		return err
	}
	if err := reserve("a", base); err != nil {
		t.Fatal(err)
	}
	if err := reserve("b", base); err != nil { // a moves in; the cells' years start
		t.Fatal(err)
	}
	later := base.Add(70 * 365 * 24 * time.Hour)
	if err := reserve("b", later); err != nil {
		t.Fatal(err)
	}
	at := later.Add(30 * time.Minute)
	reqs := []store.LimitRequest{{Key: "b", Limits: limits}, {Key: "c", Limits: limits}}
	if ids, err := l.ReserveAll(ctx, reqs, at); !errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("ReserveAll(b, c) = %q, %v; want store.ErrFull", ids, err)
	}
	if l.logged != cap(l.keys.at(l.keys.index[limiterKey("b")]).val.events) || l.keys.len() != 1 {
		t.Fatalf("after the failure: %d keys, %d logged; want b alone, counted", l.keys.len(), l.logged)
	}
	if err := reserve("b", at); err != nil {
		t.Errorf("Reserve(b) after the failed batch: %v, want its slot given back", err)
	}
	if err := reserve("b", at); !errors.Is(err, store.ErrRateLimited) {
		t.Errorf("Reserve(b) once more: %v, want a refusal", err)
	}
}

// ReserveAll's ids are Reserve's, however many: cut from one string up
// to four, formatted one by one beyond.
func TestFormatIDs(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 4, 5, 9} {
		for _, first := range []uint64{1, 98, math.MaxUint64 - 9} {
			ids := formatIDs(first, n)
			if len(ids) != n {
				t.Fatalf("formatIDs(%d, %d) = %q", first, n, ids)
			}
			for i, id := range ids {
				if want := strconv.FormatUint(first+uint64(i), 10); id != want {
					t.Errorf("formatIDs(%d, %d)[%d] = %q, want %q", first, n, i, id, want)
				}
			}
		}
	}
}
