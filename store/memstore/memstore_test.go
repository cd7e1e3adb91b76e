package memstore_test

import (
	"errors"
	"fmt"
	"math"
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

// checkFull reports unless err wraps store.ErrFull and not
// store.ErrRateLimited.
func checkFull(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrRateLimited) {
		t.Errorf("%s: err = %v, want one wrapping %v only", what, err, store.ErrFull)
	}
}

// check reports unless err is nil when want is, or wraps want.
func check(t *testing.T, what string, err, want error) {
	t.Helper()
	if (want == nil && err != nil) || !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func TestCodeStoreFull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := base
	s := memstore.NewCodeStore(memstore.Options{MaxEntries: 3, Now: func() time.Time { return now }})
	right, wrong := []byte("right"), []byte("wrong")
	life := 10 * time.Minute
	put := func(what string, i int, want error) {
		t.Helper()
		check(t, what, s.Put(ctx, codeKey(i), right, now.Add(life)), want)
	}
	for i := range 3 {
		put(fmt.Sprintf("Put(%d)", i), i, nil)
	}
	checkFull(t, "Put(new key) when full", s.Put(ctx, codeKey(3), right, now.Add(life)))
	put("Put(held key) when full", 0, nil)
	check(t, "Verify(wrong) when full", s.Verify(ctx, codeKey(2), wrong, 5, now), store.ErrCodeInvalid)
	check(t, "Verify(right) when full", s.Verify(ctx, codeKey(1), right, 5, now), nil)
	put("Put(new key) after a Verify used a code", 3, nil)
	checkFull(t, "Put(another new key)", s.Put(ctx, codeKey(4), right, now.Add(life)))
	check(t, "Put(new key, already expired) when full", s.Put(ctx, codeKey(4), right, now), nil)
	check(t, "Verify of the code put expired", s.Verify(ctx, codeKey(4), right, 5, now), store.ErrCodeInvalid)

	// Codes 0, 2 and 3 expire: their room comes back without a sweep.
	now = now.Add(life - time.Nanosecond)
	checkFull(t, "Put(new key) just before the codes expire", s.Put(ctx, codeKey(4), right, now.Add(life)))
	now = now.Add(time.Nanosecond)
	for i := 4; i < 7; i++ {
		put(fmt.Sprintf("Put(%d) once the others expired", i), i, nil)
	}
	checkFull(t, "Put(new key) when full of live codes again", s.Put(ctx, codeKey(7), right, now.Add(life)))
	for i := 4; i < 7; i++ {
		check(t, fmt.Sprintf("Verify(%d)", i), s.Verify(ctx, codeKey(i), right, 5, now), nil)
	}
}

func TestLimiterFull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := memstore.NewLimiter(memstore.Options{MaxEntries: 2})
	limits := []store.Limit{{N: 1, Window: time.Minute}}
	reserve := func(key string, now time.Time) (string, error) { return l.Reserve(ctx, key, limits, now) }

	_, err := reserve("a", base)
	check(t, "Reserve(a)", err, nil)
	b, err := reserve("b", base)
	check(t, "Reserve(b)", err, nil)
	_, err = reserve("c", base)
	checkFull(t, "Reserve(new key) when full", err)
	_, err = reserve("a", base.Add(time.Second))
	check(t, "Reserve(held key, within its limit) when full", err, store.ErrRateLimited)
	_, err = reserve("a", base.Add(time.Minute))
	check(t, "Reserve(held key, a minute later) when full", err, nil)
	check(t, "Cancel(b)", l.Cancel(ctx, "b", b), nil)
	_, err = reserve("c", base.Add(time.Minute))
	check(t, "Reserve(new key) after Cancel took b's only event", err, nil)

	// a and c last reserved at base+1m: they leave a minute (their
	// window) and a minute (the grace for clocks) later.
	gone := base.Add(3 * time.Minute)
	_, err = reserve("d", gone.Add(-time.Nanosecond))
	checkFull(t, "Reserve(new key) just before the others leave", err)
	for _, k := range []string{"d", "e"} {
		_, err = reserve(k, gone)
		check(t, fmt.Sprintf("Reserve(%s) once the others left", k), err, nil)
	}
	_, err = reserve("f", gone)
	checkFull(t, "Reserve(new key) when full again", err)
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
	check(t, "Verify", s.Verify(ctx, key, []byte("h"), 5, time.Now()), nil)

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
