package memstore_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestUserStore(t *testing.T) {
	storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
		return memstore.NewUserStore(seed...)
	})
}

func TestCodeStore(t *testing.T) {
	storetest.TestCodeStore(t, func(t *testing.T) store.CodeStore {
		return memstore.NewCodeStore()
	})
}

func TestLimiter(t *testing.T) {
	storetest.TestLimiter(t, func(t *testing.T) store.Limiter {
		return memstore.NewLimiter()
	})
}

func TestBatchLimiter(t *testing.T) {
	storetest.TestBatchLimiter(t, func(t *testing.T) store.BatchLimiter {
		return memstore.NewLimiter()
	})
}

func TestClientRegistry(t *testing.T) {
	storetest.TestClientRegistry(t, func(t *testing.T, seed []store.Client) store.ClientRegistry {
		return memstore.NewClientRegistry(seed...)
	})
}

// base is the virtual clock of the tests below.
var base = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// codeKey returns a distinct key per i.
func codeKey(i int) store.CodeKey {
	return store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: fmt.Sprintf("user-%d@example.com", i)}
}

// check reports unless err is nil when want is, or wraps want.
func check(t *testing.T, what string, err, want error) {
	t.Helper()
	if (want == nil && err != nil) || !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// A full CodeStore makes room by evicting the code that expires soonest:
// the oldest when codes live equally long. The others, and their tries,
// are untouched.
func TestCodeStoreFullEvictsSoonestToExpire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := base
	s := memstore.NewCodeStore(memstore.Options{MaxEntries: 3, Now: func() time.Time { return now }})
	right := []byte("right")
	life := 10 * time.Minute
	put := func(i int, expiresAt time.Time) {
		t.Helper()
		check(t, fmt.Sprintf("Put(%d)", i), s.Put(ctx, codeKey(i), right, expiresAt), nil)
	}
	verify := func(what string, i int, h []byte, want error) {
		t.Helper()
		check(t, fmt.Sprintf("%s: Verify(%d)", what, i), s.Verify(ctx, codeKey(i), [][]byte{h}, 5, now), want)
	}
	for i := range 3 {
		put(i, now.Add(life+time.Duration(i)*time.Second))
	}
	put(3, now.Add(life+3*time.Second))
	verify("code 0 expired soonest and was evicted", 0, right, store.ErrCodeInvalid)
	put(1, now.Add(life+4*time.Second)) // replacing a held code evicts nothing
	put(4, now.Add(time.Minute))        // 2 expires soonest
	verify("code 2 expired soonest and was evicted", 2, right, store.ErrCodeInvalid)
	put(5, now.Add(life)) // now 4 does
	verify("code 4, put with the shortest life, was evicted", 4, right, store.ErrCodeInvalid)
	check(t, "Put(already expired) when full", s.Put(ctx, codeKey(6), right, now), nil)
	verify("the code put expired", 6, right, store.ErrCodeInvalid)
	for _, i := range []int{1, 3, 5} {
		verify("a code that was not the soonest to expire", i, right, nil)
	}
}

// Eviction never resets a code's tries: a code evicted after wrong
// guesses is gone, and the right code no longer works; only a new Put, a
// new code, has fresh tries. A code that is not evicted keeps its count.
func TestCodeStoreEvictionKeepsTries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const max, maxTries = 50, 5
	s := memstore.NewCodeStore(memstore.Options{MaxEntries: max})
	victim, other := codeKey(-1), codeKey(-2)
	right, wrong, fresh := []byte("right"), []byte("wrong"), []byte("fresh")
	now := time.Now()
	exp := now.Add(10 * time.Minute)
	check(t, "Put(victim)", s.Put(ctx, victim, right, exp), nil)
	check(t, "Put(other)", s.Put(ctx, other, right, exp.Add(time.Minute)), nil)
	for i := range maxTries - 1 {
		check(t, fmt.Sprintf("wrong try %d on victim", i+1), s.Verify(ctx, victim, [][]byte{wrong}, maxTries, now), store.ErrCodeInvalid)
		check(t, fmt.Sprintf("wrong try %d on other", i+1), s.Verify(ctx, other, [][]byte{wrong}, maxTries, now), store.ErrCodeInvalid)
	}
	// Fill the store and put one more: the victim's room goes, other's
	// stays.
	for i := range max - 1 {
		check(t, fmt.Sprintf("flood Put %d", i), s.Put(ctx, codeKey(i), right, exp.Add(time.Minute)), nil)
	}
	check(t, "Verify(victim, right) once evicted", s.Verify(ctx, victim, [][]byte{right}, maxTries, now), store.ErrCodeInvalid)
	check(t, "Verify(victim, wrong) once evicted", s.Verify(ctx, victim, [][]byte{wrong}, maxTries, now), store.ErrCodeInvalid)
	check(t, "the fifth wrong try on other", s.Verify(ctx, other, [][]byte{wrong}, maxTries, now), store.ErrCodeInvalid)
	check(t, "Verify(other, right) after five wrong tries", s.Verify(ctx, other, [][]byte{right}, maxTries, now), store.ErrCodeInvalid)

	check(t, "Put(victim) again: a new code", s.Put(ctx, victim, fresh, exp), nil)
	check(t, "Verify(victim, old code)", s.Verify(ctx, victim, [][]byte{right}, maxTries, now), store.ErrCodeInvalid)
	for i := range maxTries - 2 {
		check(t, fmt.Sprintf("wrong try %d on the new code", i+2), s.Verify(ctx, victim, [][]byte{wrong}, maxTries, now), store.ErrCodeInvalid)
	}
	check(t, "Verify(victim, new code)", s.Verify(ctx, victim, [][]byte{fresh}, maxTries, now), nil)
}

// The price of pushing a code out: a code outlives MaxEntries-1 puts of
// other codes after it, and the next one evicts it.
func TestCodeStoreEvictionPrice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const max = 1000
	s := memstore.NewCodeStore(memstore.Options{MaxEntries: max})
	first, second, right := codeKey(-1), codeKey(-2), []byte("right")
	exp := time.Now().Add(10 * time.Minute)
	check(t, "Put(first)", s.Put(ctx, first, right, exp), nil)
	check(t, "Put(second)", s.Put(ctx, second, right, exp.Add(1)), nil)
	for i := range max - 1 {
		check(t, fmt.Sprintf("Put(%d)", i), s.Put(ctx, codeKey(i), right, exp.Add(time.Duration(i+2))), nil)
	}
	now := time.Now()
	check(t, "Verify(first), MaxEntries puts after it", s.Verify(ctx, first, [][]byte{right}, 5, now), store.ErrCodeInvalid)
	check(t, "Verify(second), MaxEntries-1 puts after it", s.Verify(ctx, second, [][]byte{right}, 5, now), nil)
}

// A full Limiter moves the key that expires soonest into its sketch and
// takes the new one; the moved key keeps its limits.
func TestLimiterFullMovesKeysToSketch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := memstore.NewLimiter(memstore.Options{MaxEntries: 2})
	limits := []store.Limit{{N: 1, Window: time.Minute}}
	reserve := func(key string, now time.Time) (string, error) { return l.Reserve(ctx, key, limits, now) }
	mustRefuse := func(what string, err error, atLeast time.Duration) {
		t.Helper()
		var rl *store.RateLimitError
		if !errors.As(err, &rl) || rl.RetryAfter < atLeast {
			t.Errorf("%s: err = %v, want a *store.RateLimitError with RetryAfter at least %v", what, err, atLeast)
		}
	}

	_, err := reserve("a", base)
	check(t, "Reserve(a)", err, nil)
	_, err = reserve("b", base.Add(time.Second))
	check(t, "Reserve(b)", err, nil)
	_, err = reserve("c", base.Add(2*time.Second))
	check(t, "Reserve(c) when full", err, nil)
	_, err = reserve("a", base.Add(3*time.Second))
	mustRefuse("Reserve(a), moved into the sketch, within its window", err, time.Minute-3*time.Second)
	_, err = reserve("b", base.Add(30*time.Second))
	mustRefuse("Reserve(b) within its window", err, 30*time.Second)
	// A whole minute and a second later (the sketch rounds times up to the
	// second), a's event has left its window.
	_, err = reserve("a", base.Add(time.Minute+time.Second))
	check(t, "Reserve(a) once its event left its window", err, nil)
	// New keys are never refused for want of room. (Within one window
	// they could be, by keys in the same cells: the sketch of a Limiter
	// of two keys has 8 cells a row.)
	for i := range 20 {
		_, err = reserve(fmt.Sprint("new", i), base.Add(time.Duration(2+i)*time.Minute))
		check(t, fmt.Sprintf("Reserve(new key %d) when full", i), err, nil)
	}
}

// Cancel gives back exactly the event it names, or nothing: once its key
// has moved into the sketch it gives back nothing, and it never frees
// another key's event.
func TestLimiterCancelAfterMove(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := memstore.NewLimiter(memstore.Options{MaxEntries: 2})
	limits := []store.Limit{{N: 1, Window: time.Hour}}
	id, err := l.Reserve(ctx, "a", limits, base)
	check(t, "Reserve(a)", err, nil)
	idB, err := l.Reserve(ctx, "b", limits, base.Add(time.Second))
	check(t, "Reserve(b)", err, nil)
	check(t, "Cancel(b's id under key a)", l.Cancel(ctx, "a", idB), nil)
	_, err = l.Reserve(ctx, "a", limits, base)
	check(t, "Reserve(a) after a Cancel of another key's id", err, store.ErrRateLimited)
	_, err = l.Reserve(ctx, "c", limits, base) // a moves into the sketch
	check(t, "Reserve(c)", err, nil)
	check(t, "Cancel(a's id) after a moved", l.Cancel(ctx, "a", id), nil)
	check(t, `Cancel("0")`, l.Cancel(ctx, "a", "0"), nil)
	_, err = l.Reserve(ctx, "a", limits, base.Add(time.Minute))
	check(t, "Reserve(a): the cancel gave nothing back", err, store.ErrRateLimited)
	_, err = l.Reserve(ctx, "a", limits, base.Add(time.Hour+time.Second))
	check(t, "Reserve(a) an hour later", err, nil)
}

// limiterModel keeps the events a Limiter accepted, per key, minus those
// cancelled: the most any Limiter may count.
type limiterModel map[string][]modelEvent

type modelEvent struct {
	at time.Time
	id string
}

// wait returns how long after now key's events let one more through under
// limits: zero if they do now.
func (m limiterModel) wait(key string, limits []store.Limit, now time.Time) time.Duration {
	var wait time.Duration
	for _, lim := range limits {
		var in []time.Time
		for _, e := range m[key] {
			if e.at.After(now.Add(-lim.Window)) && !e.at.After(now) {
				in = append(in, e.at)
			}
		}
		if len(in) >= lim.N {
			wait = max(wait, in[len(in)-lim.N].Add(lim.Window).Sub(now))
		}
	}
	return wait
}

// cancelOne cancels one of key's events, picked by rng, in l and in m.
func (m limiterModel) cancelOne(t *testing.T, l *memstore.Limiter, rng *rand.Rand, step int, key string) {
	t.Helper()
	es := m[key]
	i := rng.IntN(len(es))
	check(t, fmt.Sprintf("step %d: Cancel", step), l.Cancel(t.Context(), key, es[i].id), nil)
	m[key] = slices.Delete(es, i, i+1)
}

// reserve asks l for an event of key at now and holds the answer to m's
// events: an accept they forbid, or a refusal that says to come back
// sooner than they allow, fails t; with exact, so does a refusal they do
// not call for, or a RetryAfter later than theirs rounded up to the
// millisecond. An accepted event is recorded in m; reserve reports whether
// there was one.
func (m limiterModel) reserve(t *testing.T, l *memstore.Limiter, step int, key string, limits []store.Limit, now time.Time, exact bool) bool {
	t.Helper()
	want := m.wait(key, limits, now)
	id, err := l.Reserve(t.Context(), key, limits, now)
	var rl *store.RateLimitError
	switch {
	case err == nil && want > 0:
		t.Fatalf("step %d: key %s at base+%v accepted; its events say wait %v", step, key, now.Sub(base), want)
	case err == nil:
		m[key] = append(m[key], modelEvent{now, id})
		return true
	case !errors.As(err, &rl):
		t.Fatalf("step %d: Reserve: %v", step, err)
	case rl.RetryAfter < want, exact && (want == 0 || rl.RetryAfter >= want+time.Millisecond):
		t.Fatalf("step %d: key %s: RetryAfter %v, its events say %v", step, key, rl.RetryAfter, want)
	}
	return false
}

// A Limiter far smaller than its traffic never lets a key through where
// the events it accepted (less those it was told to cancel) say no, and a
// refusal never says to come back sooner than they allow: it may refuse
// early, never late. Keys come and go at random, with repeat visitors,
// cancels and several lists of limits, so that keys move into the sketch
// and back many times.
func TestLimiterUnderPressureNeverFailsOpen(t *testing.T) {
	t.Parallel()
	lists := [][]store.Limit{
		{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}},
		{{N: 3, Window: time.Hour}, {N: 5, Window: 24 * time.Hour}},
		{{N: 2, Window: 10 * time.Second}},
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 17))
			l := memstore.NewLimiter(memstore.Options{MaxEntries: 8})
			model := limiterModel{}
			now := base
			accepted, refused := 0, 0
			for step := range 6000 {
				now = now.Add(time.Duration(rng.IntN(int(time.Minute)))) // 50 hours in all
				k := rng.IntN(40)                                        // 40 keys, room for 8
				key, limits := fmt.Sprint("key ", k), lists[k%len(lists)]
				if len(model[key]) > 0 && rng.IntN(8) == 0 {
					model.cancelOne(t, l, rng, step, key)
				}
				if model.reserve(t, l, step, key, limits, now, false) {
					accepted++
				} else {
					refused++
				}
			}
			t.Logf("%d accepted, %d refused", accepted, refused)
		})
	}
}

// Budgets of large N keep long logs, whose expired events forget finds by
// binary search: with room for every key, the Limiter agrees with the
// model exactly, accept for accept and wait for wait (to the
// millisecond), through
// bursts, quiet spells and cancels.
func TestLimiterLongLogsExact(t *testing.T) {
	t.Parallel()
	limits := []store.Limit{{N: 100, Window: 10 * time.Second}, {N: 500, Window: time.Minute}}
	rng := rand.New(rand.NewPCG(7, 17))
	l := memstore.NewLimiter()
	model := limiterModel{}
	now := base
	accepted, refused := 0, 0
	for step := range 20000 {
		gap := time.Duration(rng.IntN(int(50 * time.Millisecond)))
		if rng.IntN(5000) == 0 {
			gap = time.Duration(rng.IntN(int(time.Hour))) // a quiet spell
		}
		now = now.Add(gap)
		key := fmt.Sprint("key ", rng.IntN(3))
		if len(model[key]) > 0 && rng.IntN(16) == 0 {
			model.cancelOne(t, l, rng, step, key)
		}
		if model.reserve(t, l, step, key, limits, now, true) {
			accepted++
		} else {
			refused++
		}
	}
	if accepted < 1000 || refused < 1000 {
		t.Fatalf("%d accepted, %d refused: the logs never grew long or never filled", accepted, refused)
	}
	t.Logf("%d accepted, %d refused", accepted, refused)
}

// Keys and codes that expire make room for new ones as time goes on, so
// that a store far smaller than the traffic never fills.
func TestExpiredEntriesLeave(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const max, calls = 100, 20_000
	step := 100 * time.Millisecond // 10 new keys a second
	now := base
	codes := memstore.NewCodeStore(memstore.Options{MaxEntries: max, Now: func() time.Time { return now }})
	limiter := memstore.NewLimiter(memstore.Options{MaxEntries: max})
	// Codes live 5s and budgets 1s plus the minute's grace: at most 50
	// and 610 are live at once.
	limits := []store.Limit{{N: 1, Window: time.Second}}
	for i := range calls {
		now = now.Add(step)
		if err := codes.Put(ctx, codeKey(i), []byte("h"), now.Add(5*time.Second)); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		if i%10 == 0 { // 1 a second, 61 at once
			if _, err := limiter.Reserve(ctx, fmt.Sprint(i), limits, now); err != nil {
				t.Fatalf("Reserve %d: %v", i, err)
			}
		}
	}
}

func TestZeroValues(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var s memstore.CodeStore
	key := codeKey(0)
	check(t, "Put", s.Put(ctx, key, []byte("h"), time.Now().Add(time.Minute)), nil)
	check(t, "Verify", s.Verify(ctx, key, [][]byte{[]byte("h")}, 5, time.Now()), nil)

	var l memstore.Limiter
	limits := []store.Limit{{N: 1, Window: time.Minute}}
	id, err := l.Reserve(ctx, "k", limits, base)
	check(t, "Reserve", err, nil)
	check(t, "Cancel", l.Cancel(ctx, "k", id), nil)
	_, err = l.Reserve(ctx, "k", limits, base)
	check(t, "Reserve after Cancel", err, nil)
}

func TestConstructorsPanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    func()
	}{
		{"NewCodeStore(two Options)", func() { memstore.NewCodeStore(memstore.Options{}, memstore.Options{}) }},
		{"NewLimiter(two Options)", func() { memstore.NewLimiter(memstore.Options{}, memstore.Options{}) }},
		{"NewCodeStore(negative MaxEntries)", func() { memstore.NewCodeStore(memstore.Options{MaxEntries: -1}) }},
		{"NewLimiter(negative MaxEntries)", func() { memstore.NewLimiter(memstore.Options{MaxEntries: -1}) }},
		{"NewLimiter(MaxEntries above MaxInt32)", func() { memstore.NewLimiter(memstore.Options{MaxEntries: math.MaxInt32 + 1}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.f()
		})
	}
}
