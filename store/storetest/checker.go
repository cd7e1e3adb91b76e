package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// TestCodeChecker checks a store.CodeChecker with the store.Limiter whose
// budgets it charges: a refusal records nothing and evaluates no code, a
// match keeps the charges kept on a match and gives back the others, a
// mismatch the reverse and counts one try, several hashes are one try,
// of concurrent right codes one matches, and the charges are the
// Limiter's own, which a later Reserve or Cancel of the same key sees.
// newPair must return an empty code store and the Limiter it shares
// budgets with (SharesBudgets reports true), recording no events.
//
// Codes live by the wall clock, as in TestCodeStore; the charges are
// taken at the now of each subtest's start, in whole milliseconds, so
// that RetryAfter is exact.
func TestCodeChecker(t *testing.T, newPair func(t *testing.T) (store.CodeChecker, store.Limiter)) {
	t.Helper()
	key := store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "alice@example.com"}
	right, wrong, other := hash("123456"), hash("654321"), hash("123456 under a retired secret")
	const (
		user = "wrong-user\x00alice"
		ip   = "wrong-ip\x00192.0.2.1"
		chg  = "changes-user\x00alice"
	)
	// charges returns the update's charges, as the Service makes them,
	// each under limits.
	charges := func(limits []store.Limit) []store.Charge {
		return []store.Charge{
			{LimitRequest: store.LimitRequest{Key: user, Limits: limits}, KeepOn: store.OnMismatch},
			{LimitRequest: store.LimitRequest{Key: ip, Limits: limits}, KeepOn: store.OnMismatch},
			{LimitRequest: store.LimitRequest{Key: chg, Limits: limits}, KeepOn: store.OnMatch},
		}
	}
	start := func(t *testing.T, put bool) (store.CodeChecker, store.Limiter, time.Time) {
		t.Helper()
		c, l := newPair(t)
		now := time.Now().Truncate(time.Millisecond)
		if put {
			if err := c.Put(t.Context(), key, right, now.Add(codeLife)); err != nil {
				t.Fatalf("Put: %v", err)
			}
		}
		return c, l, now
	}
	check := func(hashes [][]byte, maxTries int, now time.Time, cs []store.Charge) store.CodeCheck {
		return store.CodeCheck{Key: key, Hashes: hashes, MaxTries: maxTries, Now: now, Charges: cs}
	}
	// mustCheck runs CheckCode, checks its error and which charges it
	// kept, and returns their ids.
	mustCheck := func(t *testing.T, c store.CodeChecker, what string, cc store.CodeCheck, want error, keep ...bool) []string {
		t.Helper()
		kept, err := c.CheckCode(t.Context(), cc)
		checkErr(t, what, err, want)
		if len(kept) != len(keep) {
			t.Errorf("%s: kept %q, want %d ids", what, kept, len(keep))
			return kept
		}
		for i, k := range keep {
			if (kept[i] != "") != k {
				t.Errorf("%s: kept %q, want charge %d kept: %v", what, kept, i, k)
			}
		}
		return kept
	}

	t.Run("it shares budgets with its Limiter", func(t *testing.T) {
		t.Parallel()
		c, l := newPair(t)
		if !c.SharesBudgets(l) {
			t.Errorf("SharesBudgets(its Limiter) = false")
		}
	})

	t.Run("a match keeps the OnMatch charges and gives back the others", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, true)
		limits := []store.Limit{{N: 2, Window: time.Hour}}
		kept := mustCheck(t, c, "the right code", check([][]byte{right}, maxTries, now, charges(limits)), nil, false, false, true)
		checkErr(t, "Verify(the right code) after the match", c.Verify(t.Context(), key, [][]byte{right}, maxTries, now), store.ErrCodeInvalid)
		checkSpare(t, l, "the wrong codes of the user", user, limits, now, 2)
		checkSpare(t, l, "the wrong codes of the IP", ip, limits, now, 2)
		if len(kept) == 3 {
			// The id kept is the Limiter's: Cancel gives the change back.
			mustReserve(t, l, "one change besides the kept one", chg, limits, now)
			mustRefuse(t, l, "a third change", chg, limits, now, time.Hour)
			mustCancel(t, l, "Cancel(the kept id)", chg, kept[2])
			checkSpare(t, l, "the changes after Cancel(the kept id)", chg, limits, now, 1)
		}
	})

	t.Run("a mismatch keeps the OnMismatch charges, gives back the others and counts one try", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, true)
		limits := []store.Limit{{N: 5, Window: time.Hour}}
		kept := mustCheck(t, c, "wrong code 1 of 2 tries", check([][]byte{wrong}, 2, now, charges(limits)), store.ErrCodeInvalid, true, true, false)
		mustCheck(t, c, "wrong code 2 of 2 tries", check([][]byte{wrong}, 2, now, charges(limits)), store.ErrCodeInvalid, true, true, false)
		mustCheck(t, c, "the right code after 2 tries", check([][]byte{right}, 2, now, charges(limits)), store.ErrCodeInvalid, true, true, false)
		if len(kept) == 3 {
			mustCancel(t, l, "Cancel(the first kept id)", user, kept[0])
		}
		checkSpare(t, l, "the wrong codes of the user, one given back", user, limits, now, 3)
		checkSpare(t, l, "the wrong codes of the IP", ip, limits, now, 2)
		checkSpare(t, l, "the changes", chg, limits, now, 5)
	})

	t.Run("several hashes are one try and any of them matches", func(t *testing.T) {
		t.Parallel()
		c, _, now := start(t, true)
		limits := []store.Limit{{N: 5, Window: time.Hour}}
		mustCheck(t, c, "two wrong hashes, 1 of 2 tries", check([][]byte{wrong, other}, 2, now, charges(limits)), store.ErrCodeInvalid, true, true, false)
		mustCheck(t, c, "the right hash second of two, 2 of 2 tries", check([][]byte{other, right}, 2, now, charges(limits)), nil, false, false, true)
	})

	t.Run("no live code is a mismatch", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, false)
		limits := []store.Limit{{N: 5, Window: time.Hour}}
		mustCheck(t, c, "never put", check([][]byte{right}, maxTries, now, charges(limits)), store.ErrCodeInvalid, true, true, false)
		expiresAt := now.Add(codeLife)
		if err := c.Put(t.Context(), key, right, expiresAt); err != nil {
			t.Fatalf("Put: %v", err)
		}
		mustCheck(t, c, "at its expiry", check([][]byte{right}, maxTries, expiresAt, charges(limits)), store.ErrCodeInvalid, true, true, false)
		checkSpare(t, l, "the changes", chg, limits, now, 5)
	})

	t.Run("a refusal evaluates no code and records nothing", func(t *testing.T) {
		t.Parallel()
		for full := range 3 {
			cs := charges([]store.Limit{{N: 3, Window: time.Hour}})
			t.Run(fmt.Sprintf("refused by charge %d", full+1), func(t *testing.T) {
				c, l, now := start(t, true)
				cs[full].Limits = []store.Limit{{N: 1, Window: time.Hour}}
				mustReserve(t, l, "the refusing budget's one event", cs[full].Key, cs[full].Limits, now)
				at := now.Add(time.Second)
				for _, h := range [][]byte{right, wrong} {
					// One try: a wrong code evaluated would kill it, the
					// right one would spend it.
					kept, err := c.CheckCode(t.Context(), check([][]byte{h}, 1, at, cs))
					var rl *store.RateLimitError
					switch {
					case !errors.As(err, &rl) || !errors.Is(err, store.ErrRateLimited):
						t.Errorf("CheckCode with %q spent: %q, %v; want a *store.RateLimitError", cs[full].Key, kept, err)
					case rl.Key != cs[full].Key || rl.RetryAfter != time.Hour-time.Second:
						t.Errorf("CheckCode: refused by %q after %v, want %q after %v", rl.Key, rl.RetryAfter, cs[full].Key, time.Hour-time.Second)
					case len(kept) != 0:
						t.Errorf("CheckCode refused and kept %q", kept)
					}
				}
				checkErr(t, "Verify(the right code, 1 try) after the refusals", c.Verify(t.Context(), key, [][]byte{right}, 1, at), nil)
				for i, ch := range cs {
					if i != full {
						checkSpare(t, l, fmt.Sprintf("%q after the refusals", ch.Key), ch.Key, ch.Limits, at, 3)
					}
				}
			})
		}
	})

	t.Run("invalid limits are an error, evaluate no code and record nothing", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, true)
		limits := []store.Limit{{N: 1, Window: time.Hour}}
		cs := charges(limits)
		cs[1].Limits = []store.Limit{{N: 0, Window: time.Hour}}
		kept, err := c.CheckCode(t.Context(), check([][]byte{wrong}, 1, now, cs))
		if err == nil || errors.Is(err, store.ErrRateLimited) || errors.Is(err, store.ErrCodeInvalid) {
			t.Errorf("CheckCode with a limit of N 0 = %q, %v; want an error wrapping neither %v nor %v", kept, err, store.ErrRateLimited, store.ErrCodeInvalid)
		}
		checkErr(t, "Verify(the right code, 1 try) afterwards", c.Verify(t.Context(), key, [][]byte{right}, 1, now), nil)
		checkSpare(t, l, "the wrong codes of the user", user, limits, now, 1)
		checkSpare(t, l, "the changes", chg, limits, now, 1)
	})

	t.Run("without charges it is Verify", func(t *testing.T) {
		t.Parallel()
		c, _, now := start(t, true)
		mustCheck(t, c, "a wrong code", check([][]byte{wrong}, 2, now, nil), store.ErrCodeInvalid)
		mustCheck(t, c, "the right code", check([][]byte{right}, 2, now, nil), nil)
		mustCheck(t, c, "the right code again", check([][]byte{right}, 2, now, nil), store.ErrCodeInvalid)
	})

	t.Run("of concurrent right codes exactly one matches", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, true)
		limits := []store.Limit{{N: 100, Window: time.Hour}}
		ctx := t.Context()
		errs := race(50, func(int) error {
			_, err := c.CheckCode(ctx, check([][]byte{right}, maxTries, now, charges(limits)))
			return err
		})
		checkRace(t, "CheckCode(the right code)", errs, 1, store.ErrCodeInvalid)
		checkSpare(t, l, "the changes: one kept", chg, limits, now, 99)
		checkSpare(t, l, "the wrong codes of the user: 49 kept", user, limits, now, 51)
	})

	t.Run("concurrent wrong codes never overdraw a budget", func(t *testing.T) {
		t.Parallel()
		c, l, now := start(t, true)
		scarce := []store.Limit{{N: 10, Window: time.Hour}}
		cs := charges([]store.Limit{{N: 100, Window: time.Hour}})
		cs[0].Limits = scarce
		ctx := t.Context()
		errs := race(50, func(int) error {
			_, err := c.CheckCode(ctx, check([][]byte{wrong}, maxTries, now, cs))
			return err
		})
		invalid, limited := 0, 0
		for i, err := range errs {
			switch {
			case errors.Is(err, store.ErrRateLimited):
				limited++
			case errors.Is(err, store.ErrCodeInvalid):
				invalid++
			default:
				t.Errorf("CheckCode(wrong) %d: %v, want %v or %v", i, err, store.ErrCodeInvalid, store.ErrRateLimited)
			}
		}
		if invalid != scarce[0].N || limited != len(errs)-scarce[0].N {
			t.Errorf("of %d concurrent wrong codes %d were judged and %d refused, want %d and %d", len(errs), invalid, limited, scarce[0].N, len(errs)-scarce[0].N)
		}
		checkSpare(t, l, "the wrong codes of the user", user, scarce, now, 0)
		checkSpare(t, l, "the wrong codes of the IP: 10 kept", ip, cs[1].Limits, now, 90)
		checkSpare(t, l, "the changes: none kept", chg, cs[2].Limits, now, 100)
		// maxTries of the ten were tries: the code is dead.
		checkErr(t, "Verify(the right code) after the race", c.Verify(ctx, key, [][]byte{right}, maxTries, now), store.ErrCodeInvalid)
	})
}
