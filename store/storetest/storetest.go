// Package storetest checks implementations of the store interfaces against
// the contracts written in package store, in the spirit of
// testing/fstest.TestFS: one exported suite that every store runs, so that
// the in-memory reference and the real engines cannot drift apart.
//
// Each Test function takes a factory. The suite calls it once per subtest,
// often from parallel subtests, so every call must return a store that
// shares nothing with the stores of other calls (its own instance, schema or
// key prefix) and holds only the seed it was given. A factory runs in the
// subtest's goroutine and may call t.Fatal, t.Skip and t.Cleanup.
//
// Quick start, in a store's own _test.go file:
//
//	func TestUserStore(t *testing.T) {
//		storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
//			s := mystore.New(openTestDB(t))
//			for _, u := range seed {
//				if err := s.CreateUser(t.Context(), u); err != nil {
//					t.Fatalf("seed: %v", err)
//				}
//			}
//			return s
//		})
//	}
//
// Code expiry checks sleep for a few hundred milliseconds of real time and
// pass time.Now() as now, so that a store which also keeps time by its own
// clock (Redis TTLs, a database's now()) passes them as well as one that
// trusts the caller's. One check passes now equal to a code's expiresAt,
// since the contract names that instant as the code's death. Limiter checks
// never sleep: they pass virtual nows in whole milliseconds, far from the
// wall clock, to test window edges exactly. TestChangeStore checks a
// store.ChangeStore, the change of an address recorded with its notice and
// its undo, and the Outbox the courier leases notices from; it never sleeps
// either. TestBatchLimiter and TestCodeChecker check the optional
// interfaces that charge several budgets in one step: all or none, and
// the charges kept on a verification's outcome. The whole suite takes
// about a second per store.
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// race runs f(0) ... f(n-1) in n goroutines released together and returns
// their errors by index. It never touches a *testing.T, so the caller asserts
// from its own goroutine.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts the nil errors among errs and those wrapping want, and
// describes any other error.
func tally(errs []error, want error) (ok, matched int, other []string) {
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			matched++
		default:
			other = append(other, fmt.Sprintf("call %d: %v", i, err))
		}
	}
	return ok, matched, other
}

// checkErr reports an error unless err is nil when want is, or wraps want.
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: err = %v, want nil", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want one wrapping %v", what, err, want)
	}
}

// checkRace reports unless exactly wantOK of errs are nil and all the others
// wrap want.
func checkRace(t *testing.T, what string, errs []error, wantOK int, want error) {
	t.Helper()
	ok, matched, other := tally(errs, want)
	if ok != wantOK || matched != len(errs)-wantOK {
		t.Errorf("%s: %d of %d calls succeeded and %d returned %v, want %d and %d",
			what, ok, len(errs), matched, want, wantOK, len(errs)-wantOK)
	}
	for _, o := range other {
		t.Errorf("%s: unexpected error: %s", what, o)
	}
}

// sleepUntil sleeps until deadline has passed.
func sleepUntil(deadline time.Time) {
	time.Sleep(time.Until(deadline))
}
