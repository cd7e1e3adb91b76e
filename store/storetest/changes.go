package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// changeBase is the virtual clock of the ChangeStore checks, in whole
// milliseconds. It lies decades ahead of the wall clock, so that a store
// which makes a new notice due at its own clock (a database's now()) rather
// than at the change's Now still finds it due at every now the suite
// passes.
var changeBase = time.Date(2091, 5, 6, 7, 8, 9, 0, time.UTC)

// Durations of the suite's undo records, cool-offs and leases: whole
// minutes, so that an edge one millisecond before their end is exact.
const (
	undoLife  = 24 * time.Hour
	coolOff   = 24 * time.Hour
	leaseTime = time.Minute
)

// at returns the suite's virtual time d after changeBase.
func at(d time.Duration) time.Time { return changeBase.Add(d) }

// when names a virtual time in failure messages.
func when(t time.Time) string { return fmt.Sprintf("base+%v", t.Sub(changeBase)) }

// undoHash stands in for the keyed hash of an undo token.
func undoHash(token string) []byte { return hash("undo\x00" + token) }

// emailChange returns the change of user id's address to typed at now,
// with token as its undo token, as the Service would make it. typed is
// ASCII, so that its canonical form is its lower case.
func emailChange(id, typed string, now time.Time, token string) store.EmailChange {
	domain := typed[strings.LastIndexByte(typed, '@'):]
	return store.EmailChange{
		UserID:    id,
		Email:     typed,
		Canonical: strings.ToLower(typed),
		Notice: store.Notice{
			UserID:    id,
			NewEmail:  typed[:1] + "***" + domain,
			ChangedAt: now,
			Sealed:    []byte("sealed\x00" + token),
		},
		RevertHash:      undoHash(token),
		RevertExpiresAt: now.Add(undoLife),
		Now:             now,
	}
}

// wantNotice returns the notice that c records for prev, the user as the
// store held it before c, on its attempts-th lease.
func wantNotice(c store.EmailChange, prev store.User, attempts int) store.Notice {
	n := c.Notice
	n.UserID, n.To, n.Language, n.Attempts = prev.ID, prev.Email, prev.Language, attempts
	return n
}

// moved returns u holding the address c gives it.
func moved(u store.User, c store.EmailChange) store.User {
	u.Email, u.CanonicalEmail = c.Email, c.Canonical
	return u
}

// mustChange applies c, or stops the subtest.
func mustChange(t *testing.T, s store.ChangeStore, c store.EmailChange) {
	t.Helper()
	if err := s.ChangeEmail(t.Context(), c); err != nil {
		t.Fatalf("ChangeEmail(%s to %q at %s): %v", c.UserID, c.Email, when(c.Now), err)
	}
}

// checkRevert spends the undo record of c at now, locking changes until
// lockUntil, and reports unless it restores want, replacing from.
func checkRevert(t *testing.T, s store.ChangeStore, c store.EmailChange, now, lockUntil time.Time, want store.User, from string) {
	t.Helper()
	got, err := s.RevertEmail(t.Context(), store.EmailRevert{TokenHash: c.RevertHash, Now: now, LockUntil: lockUntil})
	if err != nil {
		t.Errorf("RevertEmail(undo of %s to %q, at %s): %v", c.UserID, c.Email, when(now), err)
		return
	}
	if w := (store.Reverted{UserID: want.ID, Email: want.Email, Canonical: want.CanonicalEmail, From: from}); got != w {
		t.Errorf("RevertEmail(undo of %s to %q) = %+v, want %+v", c.UserID, c.Email, got, w)
	}
	checkUser(t, s, want)
}

// checkNoRevert reports unless spending the undo record of c at now fails
// with want (ErrRevertInvalid, ErrEmailExists).
func checkNoRevert(t *testing.T, s store.ChangeStore, c store.EmailChange, now time.Time, want error) {
	t.Helper()
	_, err := s.RevertEmail(t.Context(), store.EmailRevert{TokenHash: c.RevertHash, Now: now, LockUntil: now.Add(coolOff)})
	checkErr(t, fmt.Sprintf("RevertEmail(undo of %s to %q, at %s)", c.UserID, c.Email, when(now)), err, want)
}

// lease leases up to max notices at now for leaseTime, or stops the
// subtest.
func lease(t *testing.T, s store.Outbox, max int, now time.Time) []store.Notice {
	t.Helper()
	ns, err := s.LeaseNotices(t.Context(), max, now, leaseTime)
	if err != nil {
		t.Fatalf("LeaseNotices(%d, %s): %v", max, when(now), err)
	}
	return ns
}

// checkLease leases up to max notices at now and reports unless they are
// want, in order. It returns the notices leased.
func checkLease(t *testing.T, s store.Outbox, max int, now time.Time, want ...store.Notice) []store.Notice {
	t.Helper()
	got := lease(t, s, max, now)
	what := fmt.Sprintf("LeaseNotices(%d, %s)", max, when(now))
	if len(got) != len(want) {
		for _, n := range got {
			t.Logf("%s returned %s", what, describe(n))
		}
		t.Errorf("%s returned %d notices, want %d", what, len(got), len(want))
		return got
	}
	for i := range got {
		checkNotice(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i])
	}
	return got
}

// checkNotice reports unless got is want, times to the millisecond. An
// empty want.ID asks for any ID but the empty one.
func checkNotice(t *testing.T, what string, got, want store.Notice) {
	t.Helper()
	ms := time.Millisecond
	switch {
	case got.ID == "":
		t.Errorf("%s: empty ID", what)
	case want.ID != "" && got.ID != want.ID:
		t.Errorf("%s: ID %q, want %q", what, got.ID, want.ID)
	}
	if got.UserID != want.UserID || got.To != want.To || got.NewEmail != want.NewEmail ||
		got.Language != want.Language || got.Attempts != want.Attempts ||
		!got.ChangedAt.Truncate(ms).Equal(want.ChangedAt.Truncate(ms)) || !bytes.Equal(got.Sealed, want.Sealed) {
		t.Errorf("%s = %s, want %s", what, describe(got), describe(want))
	}
}

// describe formats n for a failure message, without its ID (checked on its
// own) and with its sealed token as text.
func describe(n store.Notice) string {
	return fmt.Sprintf("{UserID:%s To:%q NewEmail:%q Language:%q ChangedAt:%s Sealed:%q Attempts:%d}",
		n.UserID, n.To, n.NewEmail, n.Language, when(n.ChangedAt), n.Sealed, n.Attempts)
}

// checkBacklog reports unless the outbox holds n notices, the oldest
// changed at oldest (the zero time for none).
func checkBacklog(t *testing.T, s store.Outbox, what string, n int, oldest time.Time) {
	t.Helper()
	gotN, gotOldest, err := s.NoticeBacklog(t.Context())
	switch {
	case err != nil:
		t.Errorf("NoticeBacklog %s: %v", what, err)
	case gotN != n:
		t.Errorf("NoticeBacklog %s: %d notices, want %d", what, gotN, n)
	case oldest.IsZero() && !gotOldest.IsZero():
		t.Errorf("NoticeBacklog %s: oldest %v, want the zero time", what, gotOldest)
	case !oldest.IsZero() && !gotOldest.Truncate(time.Millisecond).Equal(oldest):
		t.Errorf("NoticeBacklog %s: oldest %v, want %v", what, gotOldest, oldest)
	}
}

// TestChangeStore checks a store.ChangeStore: the change of an address
// together with its notice and its undo record, the Outbox, and the undo.
// newStore must return a store holding exactly seed (languages included)
// and no notices nor undo records; the seed may contain several users
// without an address, and never two with one canonical address.
//
// Every check passes virtual nows in whole milliseconds, decades ahead of
// the wall clock, and compares times to the millisecond. One subtest calls
// newStore 20 times in turn, to race a change against an undo on fresh
// stores.
func TestChangeStore(t *testing.T, newStore func(t *testing.T, seed []store.User) store.ChangeStore) {
	t.Helper()
	// Alice types her address in mixed case and has no language; Bob has
	// one.
	seed := func() []store.User { return []store.User{alice, bob, nomail1} }

	t.Run("ChangeEmail records a notice to the previous address", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ca := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		cb := emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b")
		mustChange(t, s, ca)
		mustChange(t, s, cb)
		checkUser(t, s, moved(alice, ca))
		checkUser(t, s, moved(bob, cb))
		got := checkLease(t, s, 10, at(2*time.Second), wantNotice(ca, alice, 1), wantNotice(cb, bob, 1))
		if len(got) == 2 && got[0].ID == got[1].ID {
			t.Errorf("two notices share the ID %q", got[0].ID)
		}
	})

	t.Run("a leased notice is due again when its lease ends", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		mustChange(t, s, c)
		leasedAt := at(time.Second)
		first := checkLease(t, s, 10, leasedAt, wantNotice(c, alice, 1))
		if len(first) != 1 {
			return
		}
		checkBacklog(t, s, "while the notice is leased", 1, c.Notice.ChangedAt)
		checkLease(t, s, 10, leasedAt)
		checkLease(t, s, 10, leasedAt.Add(leaseTime-time.Millisecond))
		again := wantNotice(c, alice, 2)
		again.ID = first[0].ID
		checkLease(t, s, 10, leasedAt.Add(leaseTime), again)
	})

	t.Run("RetryNotice sets when a notice is due again", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(bob.ID, "Bob.New@Example.org", at(0), "b")
		mustChange(t, s, c)
		want := wantNotice(c, bob, 1)
		got := checkLease(t, s, 10, at(time.Second), want)
		if len(got) != 1 {
			return
		}
		want.ID = got[0].ID
		ctx := t.Context()

		// Before the lease's end: a delivery failed and is retried soon.
		retryAt := at(10 * time.Second)
		checkErr(t, "RetryNotice(before the lease's end)", s.RetryNotice(ctx, want.ID, retryAt), nil)
		checkLease(t, s, 10, retryAt.Add(-time.Millisecond))
		want.Attempts = 2
		checkLease(t, s, 10, retryAt, want)

		// After it: the courier backs off.
		retryAt = at(time.Hour)
		checkErr(t, "RetryNotice(after the lease's end)", s.RetryNotice(ctx, want.ID, retryAt), nil)
		checkLease(t, s, 10, at(10*time.Second).Add(leaseTime))
		checkLease(t, s, 10, retryAt.Add(-time.Millisecond))
		want.Attempts = 3
		checkLease(t, s, 10, retryAt, want)
	})

	t.Run("DeleteNotice removes a notice", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ca := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		cb := emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b")
		mustChange(t, s, ca)
		mustChange(t, s, cb)
		got := checkLease(t, s, 1, at(2*time.Second), wantNotice(ca, alice, 1))
		if len(got) != 1 {
			return
		}
		ctx := t.Context()
		leased := got[0].ID
		checkErr(t, "DeleteNotice(leased notice)", s.DeleteNotice(ctx, leased), nil)
		checkBacklog(t, s, "after one of two notices was deleted", 1, cb.Notice.ChangedAt)
		// Bob's notice, leased now, goes too.
		got = checkLease(t, s, 10, at(time.Hour), wantNotice(cb, bob, 1))
		if len(got) != 1 {
			return
		}
		checkErr(t, "DeleteNotice(bob's notice)", s.DeleteNotice(ctx, got[0].ID), nil)
		checkBacklog(t, s, "after both notices were deleted", 0, time.Time{})

		for _, id := range []string{leased, "no-such-notice", "0", ""} {
			checkErr(t, fmt.Sprintf("DeleteNotice(unknown id %q)", id), s.DeleteNotice(ctx, id), nil)
			checkErr(t, fmt.Sprintf("RetryNotice(unknown id %q)", id), s.RetryNotice(ctx, id, at(0)), nil)
		}
		checkBacklog(t, s, "after RetryNotice of deleted notices", 0, time.Time{})
		checkLease(t, s, 10, at(2*time.Hour))

		// A later notice never takes a deleted one's id: a courier whose
		// lease ended while it mailed would otherwise delete it unsent.
		mustChange(t, s, emailChange(alice.ID, "Alice.Third@Example.org", at(3*time.Hour), "c"))
		later, err := s.LeaseNotices(ctx, 10, at(4*time.Hour), leaseTime)
		if err != nil || len(later) != 1 {
			t.Fatalf("LeaseNotices after a third change = %d notices, %v; want 1", len(later), err)
		}
		if id := later[0].ID; id == leased || id == got[0].ID {
			t.Errorf("a new notice got the id %q of a deleted one: ids must never be reused", id)
		}
		checkErr(t, "DeleteNotice(a deleted notice's id)", s.DeleteNotice(ctx, leased), nil)
		checkBacklog(t, s, "after a stale DeleteNotice", 1, at(3*time.Hour))
	})

	t.Run("an unleased notice can be deleted", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ca := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		cb := emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b")
		mustChange(t, s, ca)
		mustChange(t, s, cb)
		got := checkLease(t, s, 10, at(2*time.Second), wantNotice(ca, alice, 1), wantNotice(cb, bob, 1))
		if len(got) != 2 {
			return
		}
		ctx := t.Context()
		for _, n := range got {
			checkErr(t, "RetryNotice", s.RetryNotice(ctx, n.ID, at(time.Hour)), nil)
		}
		checkErr(t, "DeleteNotice(bob's notice, waiting for a retry)", s.DeleteNotice(ctx, got[1].ID), nil)
		want := wantNotice(ca, alice, 2)
		want.ID = got[0].ID
		checkLease(t, s, 10, at(time.Hour), want)
	})

	t.Run("NoticeBacklog counts the notices held and the oldest ChangedAt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		checkBacklog(t, s, "of a new store", 0, time.Time{})
		changes := []store.EmailChange{
			emailChange(alice.ID, "Alice.New@Example.org", at(0), "a"),
			emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b"),
			emailChange(alice.ID, "Alice.Newer@Example.org", at(2*time.Second), "a2"),
		}
		for _, c := range changes {
			mustChange(t, s, c)
		}
		checkBacklog(t, s, "after three changes", 3, at(0))
		got := lease(t, s, 10, at(3*time.Second))
		checkBacklog(t, s, "with every notice leased", 3, at(0))
		if len(got) != 3 {
			t.Fatalf("LeaseNotices returned %d notices, want 3", len(got))
		}
		ctx := t.Context()
		checkErr(t, "DeleteNotice(oldest)", s.DeleteNotice(ctx, got[0].ID), nil)
		checkBacklog(t, s, "after the oldest was deleted", 2, at(time.Second))
		checkErr(t, "DeleteNotice(newest)", s.DeleteNotice(ctx, got[2].ID), nil)
		checkBacklog(t, s, "after the newest was deleted", 1, at(time.Second))
		checkErr(t, "DeleteNotice(last)", s.DeleteNotice(ctx, got[1].ID), nil)
		checkBacklog(t, s, "after every notice was deleted", 0, time.Time{})
	})

	t.Run("LeaseNotices hands out at most max, soonest due first", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		checkLease(t, s, 10, at(0))
		cs := []store.EmailChange{
			emailChange(alice.ID, "Alice.New@Example.org", at(0), "a"),
			emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b"),
			emailChange(alice.ID, "Alice.Newer@Example.org", at(2*time.Second), "a2"),
		}
		for _, c := range cs {
			mustChange(t, s, c)
		}
		n0, n1, n2 := wantNotice(cs[0], alice, 1), wantNotice(cs[1], bob, 1), wantNotice(cs[2], moved(alice, cs[0]), 1)
		// Due from their recording, in the order of their changes.
		first := checkLease(t, s, 2, at(3*time.Second), n0, n1)
		second := checkLease(t, s, 2, at(3*time.Second), n2)
		if len(first) != 2 || len(second) != 1 {
			return
		}
		n0.ID, n1.ID, n2.ID = first[0].ID, first[1].ID, second[0].ID
		// Due again in the order RetryNotice sets, not that of recording.
		ctx := t.Context()
		for i, n := range []store.Notice{n2, n0, n1} {
			checkErr(t, "RetryNotice", s.RetryNotice(ctx, n.ID, at(time.Duration(10+i)*time.Second)), nil)
		}
		n0.Attempts, n1.Attempts, n2.Attempts = 2, 2, 2
		checkLease(t, s, 2, at(time.Hour), n2, n0)
		checkLease(t, s, 2, at(time.Hour), n1)
		checkLease(t, s, 2, at(time.Hour))
	})

	// A store that keeps the caller's slices would see the record change
	// under it when the caller reuses its buffers.
	t.Run("ChangeEmail keeps its own copies of the hash and the sealed token", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		want := wantNotice(c, alice, 1)
		want.Sealed = bytes.Clone(c.Notice.Sealed)
		mustChange(t, s, c)
		c.Notice.Sealed[0] ^= 0xff
		c.RevertHash[0] ^= 0xff
		checkLease(t, s, 10, at(time.Second), want)
		c.RevertHash = undoHash("a")
		checkRevert(t, s, c, at(time.Second), at(coolOff), alice, c.Email)
	})

	t.Run("a user without an address gets one and nothing is recorded", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(nomail1.ID, "Carol@Example.com", at(0), "c")
		mustChange(t, s, c)
		checkUser(t, s, moved(nomail1, c))
		checkBacklog(t, s, "after the change", 0, time.Time{})
		checkNoRevert(t, s, c, at(time.Second), store.ErrRevertInvalid)
	})

	// The address is set again, as UpdateEmail sets it: its typed form may
	// change case; but it is no change to warn of or to undo.
	t.Run("a change to one's own canonical address records nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "ALICE@EXAMPLE.COM", at(0), "a")
		mustChange(t, s, c)
		checkUser(t, s, moved(alice, c))
		checkBacklog(t, s, "after the change", 0, time.Time{})
		checkNoRevert(t, s, c, at(time.Second), store.ErrRevertInvalid)
	})

	t.Run("ChangeEmail of an unknown user is ErrNotFound and writes nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange("u-nobody", "New@Example.com", at(0), "x")
		checkErr(t, "ChangeEmail(unknown user)", s.ChangeEmail(t.Context(), c), store.ErrNotFound)
		checkBacklog(t, s, "after the failed change", 0, time.Time{})
		checkNoRevert(t, s, c, at(time.Second), store.ErrRevertInvalid)
		_, err := s.User(t.Context(), c.UserID)
		checkErr(t, "User after the failed change", err, store.ErrNotFound)
		// The address must not have been reserved by the failed call.
		mustChange(t, s, emailChange(bob.ID, c.Email, at(2*time.Second), "b"))
	})

	t.Run("ChangeEmail to another user's address is ErrEmailExists and writes nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		for _, u := range []store.User{bob, nomail1} {
			// Typed differently, equal once canonical.
			c := emailChange(u.ID, "ALICE@example.COM", at(0), "x-"+u.ID)
			checkErr(t, fmt.Sprintf("ChangeEmail(%s to alice's address)", u.ID), s.ChangeEmail(t.Context(), c), store.ErrEmailExists)
			checkUser(t, s, u)
			checkNoRevert(t, s, c, at(time.Second), store.ErrRevertInvalid)
		}
		checkUser(t, s, alice)
		checkBacklog(t, s, "after the failed changes", 0, time.Time{})
	})

	t.Run("RevertEmail restores the previous address once", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		mustChange(t, s, c)
		checkRevert(t, s, c, at(time.Minute), at(coolOff), alice, c.Email)
		checkNoRevert(t, s, c, at(2*time.Minute), store.ErrRevertInvalid)
		checkUser(t, s, alice)
		// The undo gave the new address up.
		cb := emailChange(bob.ID, "ALICE.NEW@example.org", at(3*time.Minute), "b")
		mustChange(t, s, cb)
		checkUser(t, s, moved(bob, cb))
	})

	t.Run("RevertEmail of a hash never recorded is ErrRevertInvalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		mustChange(t, s, c)
		flipped := bytes.Clone(c.RevertHash)
		flipped[len(flipped)-1] ^= 1
		for _, tt := range []struct {
			name string
			hash []byte
		}{
			{"another token", undoHash("b")},
			{"last byte differs", flipped},
			{"prefix", c.RevertHash[:len(c.RevertHash)-1]},
			{"empty", nil},
		} {
			_, err := s.RevertEmail(t.Context(), store.EmailRevert{TokenHash: tt.hash, Now: at(time.Second), LockUntil: at(coolOff)})
			checkErr(t, fmt.Sprintf("RevertEmail(%s)", tt.name), err, store.ErrRevertInvalid)
		}
		checkUser(t, s, moved(alice, c))
		// The failed undos set no cool-off.
		c2 := emailChange(alice.ID, "Alice.Newer@Example.org", at(2*time.Second), "a2")
		mustChange(t, s, c2)
		checkUser(t, s, moved(alice, c2))
	})

	t.Run("an undo record dies at RevertExpiresAt", func(t *testing.T) {
		t.Parallel()
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		s := newStore(t, seed())
		mustChange(t, s, c)
		checkNoRevert(t, s, c, c.RevertExpiresAt, store.ErrRevertInvalid)
		checkUser(t, s, moved(alice, c))
		// The failed undo set no cool-off.
		mustChange(t, s, emailChange(alice.ID, "Alice.Newer@Example.org", c.RevertExpiresAt, "a2"))

		s = newStore(t, seed())
		mustChange(t, s, c)
		last := c.RevertExpiresAt.Add(-time.Millisecond)
		checkRevert(t, s, c, last, last.Add(coolOff), alice, c.Email)
	})

	t.Run("the first undo of a chain goes straight back and voids the later ones", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ab := emailChange(alice.ID, "Alice.B@Example.org", at(0), "ab")
		bc := emailChange(alice.ID, "Alice.C@Example.org", at(time.Second), "bc")
		mustChange(t, s, ab)
		mustChange(t, s, bc)
		// Each notice goes to the address held just before its change.
		checkLease(t, s, 10, at(2*time.Second), wantNotice(ab, alice, 1), wantNotice(bc, moved(alice, ab), 1))
		checkRevert(t, s, ab, at(time.Minute), at(coolOff), alice, bc.Email)
		checkNoRevert(t, s, bc, at(2*time.Minute), store.ErrRevertInvalid)
		checkUser(t, s, alice)
	})

	t.Run("undoing a chain from its end leaves the earlier undo live", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ab := emailChange(alice.ID, "Alice.B@Example.org", at(0), "ab")
		bc := emailChange(alice.ID, "Alice.C@Example.org", at(time.Second), "bc")
		mustChange(t, s, ab)
		mustChange(t, s, bc)
		checkRevert(t, s, bc, at(time.Minute), at(coolOff), moved(alice, ab), bc.Email)
		// The cool-off holds changes, not undos.
		checkRevert(t, s, ab, at(2*time.Minute), at(coolOff), alice, ab.Email)
		checkNoRevert(t, s, bc, at(3*time.Minute), store.ErrRevertInvalid)
	})

	t.Run("an undo voids and locks only its own user", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ca := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		cb := emailChange(bob.ID, "Bob.New@Example.org", at(time.Second), "b")
		mustChange(t, s, ca)
		mustChange(t, s, cb)
		checkRevert(t, s, ca, at(time.Minute), at(coolOff), alice, ca.Email)
		cb2 := emailChange(bob.ID, "Bob.Newer@Example.org", at(2*time.Minute), "b2")
		mustChange(t, s, cb2)
		checkRevert(t, s, cb, at(3*time.Minute), at(coolOff), bob, cb2.Email)
	})

	t.Run("an undo locks changes until LockUntil", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		mustChange(t, s, c)
		lockUntil := at(coolOff)
		checkRevert(t, s, c, at(time.Minute), lockUntil, alice, c.Email)

		early := emailChange(alice.ID, "Alice.Again@Example.org", lockUntil.Add(-time.Millisecond), "early")
		checkErr(t, "ChangeEmail before LockUntil", s.ChangeEmail(t.Context(), early), store.ErrChangeLocked)
		checkUser(t, s, alice)
		checkBacklog(t, s, "after the locked change", 1, c.Notice.ChangedAt)
		checkNoRevert(t, s, early, early.Now, store.ErrRevertInvalid)

		onTime := emailChange(alice.ID, "Alice.Again@Example.org", lockUntil, "on-time")
		mustChange(t, s, onTime)
		checkUser(t, s, moved(alice, onTime))
		checkBacklog(t, s, "after the change at LockUntil", 2, c.Notice.ChangedAt)
	})

	t.Run("an undo with an earlier LockUntil keeps a later lock", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ab := emailChange(alice.ID, "Alice.B@Example.org", at(0), "ab")
		bc := emailChange(alice.ID, "Alice.C@Example.org", at(time.Second), "bc")
		mustChange(t, s, ab)
		mustChange(t, s, bc)
		later, earlier := at(2*coolOff), at(coolOff)
		checkRevert(t, s, bc, at(time.Minute), later, moved(alice, ab), bc.Email)
		checkRevert(t, s, ab, at(2*time.Minute), earlier, alice, ab.Email)
		for _, now := range []time.Time{earlier, later.Add(-time.Millisecond)} {
			c := emailChange(alice.ID, "Alice.D@Example.org", now, "d")
			checkErr(t, fmt.Sprintf("ChangeEmail at %s", when(now)), s.ChangeEmail(t.Context(), c), store.ErrChangeLocked)
		}
		checkUser(t, s, alice)
		mustChange(t, s, emailChange(alice.ID, "Alice.D@Example.org", later, "d"))
	})

	t.Run("an undo to an address another user took is ErrEmailExists until it is free", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ab := emailChange(alice.ID, "Alice.B@Example.org", at(0), "ab")
		mustChange(t, s, ab)
		taken := emailChange(bob.ID, "ALICE@example.com", at(time.Second), "taken")
		mustChange(t, s, taken)

		checkNoRevert(t, s, ab, at(time.Minute), store.ErrEmailExists)
		checkUser(t, s, moved(alice, ab))
		checkUser(t, s, moved(bob, taken))
		// The failed undo set no cool-off, and the record stays live
		// through a later change, which its use then voids.
		bc := emailChange(alice.ID, "Alice.C@Example.org", at(2*time.Minute), "bc")
		mustChange(t, s, bc)

		mustChange(t, s, emailChange(bob.ID, "Bob.Elsewhere@Example.org", at(3*time.Minute), "away"))
		checkRevert(t, s, ab, at(4*time.Minute), at(coolOff), alice, bc.Email)
		checkNoRevert(t, s, bc, at(5*time.Minute), store.ErrRevertInvalid)
	})

	t.Run("of concurrent undos with one hash exactly one succeeds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		c := emailChange(alice.ID, "Alice.New@Example.org", at(0), "a")
		mustChange(t, s, c)
		ctx, r := t.Context(), store.EmailRevert{TokenHash: c.RevertHash, Now: at(time.Minute), LockUntil: at(coolOff)}
		errs := race(20, func(int) error {
			_, err := s.RevertEmail(ctx, r)
			return err
		})
		checkRace(t, "RevertEmail", errs, 1, store.ErrRevertInvalid)
		checkUser(t, s, alice)
	})

	t.Run("concurrent lessees get every notice exactly once", func(t *testing.T) {
		t.Parallel()
		const notices, lessees, max = 30, 4, 3
		users := make([]store.User, notices)
		for i := range users {
			addr := fmt.Sprintf("user-%02d@example.com", i)
			users[i] = store.User{ID: fmt.Sprintf("u-lessee-%02d", i), Email: addr, CanonicalEmail: addr}
		}
		s := newStore(t, users)
		for i, u := range users {
			mustChange(t, s, emailChange(u.ID, fmt.Sprintf("New-%02d@example.com", i), at(time.Duration(i)*time.Millisecond), u.ID))
		}
		ctx, now := t.Context(), at(time.Second)
		leased := make([][]store.Notice, lessees)
		errs := race(lessees, func(i int) error {
			// A store that hands out leased notices again would loop
			// forever.
			for range notices + 1 {
				ns, err := s.LeaseNotices(ctx, max, now, time.Hour)
				switch {
				case err != nil:
					return err
				case len(ns) > max:
					return fmt.Errorf("LeaseNotices(%d) returned %d notices", max, len(ns))
				case len(ns) == 0:
					return nil
				}
				leased[i] = append(leased[i], ns...)
			}
			return errors.New("LeaseNotices went on returning notices")
		})
		checkRace(t, "lessee", errs, lessees, nil)
		byID, byUser := map[string]int{}, map[string]int{}
		for _, ns := range leased {
			for _, n := range ns {
				byID[n.ID]++
				byUser[n.UserID]++
			}
		}
		for id, k := range byID {
			if k != 1 {
				t.Errorf("notice %q was leased %d times, want once", id, k)
			}
		}
		for _, u := range users {
			if byUser[u.ID] != 1 {
				t.Errorf("the notice of %s was leased %d times, want once", u.ID, byUser[u.ID])
			}
		}
	})

	t.Run("a change and an undo at once run one after the other", func(t *testing.T) {
		t.Parallel()
		ab := emailChange(alice.ID, "Alice.B@Example.org", at(0), "ab")
		bc := emailChange(alice.ID, "Alice.C@Example.org", at(time.Second), "bc")
		undo := store.EmailRevert{TokenHash: ab.RevertHash, Now: at(time.Second), LockUntil: at(coolOff)}
		orders := map[string]int{}
		for round := range 20 {
			s := newStore(t, seed())
			mustChange(t, s, ab)
			ctx := t.Context()
			var rev store.Reverted
			errs := race(2, func(i int) error {
				if i == 0 {
					return s.ChangeEmail(ctx, bc)
				}
				var err error
				rev, err = s.RevertEmail(ctx, undo)
				return err
			})
			if errs[1] != nil {
				t.Fatalf("round %d: RevertEmail: %v", round, errs[1])
			}
			switch {
			case errs[0] == nil:
				orders["change, then undo"]++
				if rev.From != bc.Email {
					t.Errorf("round %d: change, then undo: the undo replaced %q, want %q", round, rev.From, bc.Email)
				}
				checkBacklog(t, s, fmt.Sprintf("round %d: change, then undo", round), 2, ab.Notice.ChangedAt)
			case errors.Is(errs[0], store.ErrChangeLocked):
				orders["undo, then change"]++
				if rev.From != ab.Email {
					t.Errorf("round %d: undo, then change: the undo replaced %q, want %q", round, rev.From, ab.Email)
				}
				checkBacklog(t, s, fmt.Sprintf("round %d: undo, then change", round), 1, ab.Notice.ChangedAt)
			default:
				t.Fatalf("round %d: ChangeEmail: %v, want nil or one wrapping %v", round, errs[0], store.ErrChangeLocked)
			}
			checkUser(t, s, alice)
			checkNoRevert(t, s, bc, at(time.Minute), store.ErrRevertInvalid)
		}
		t.Logf("orders seen: %v", orders)
	})

	t.Run("concurrent ChangeEmail to one address has exactly one winner and one notice", func(t *testing.T) {
		t.Parallel()
		const n = 20
		users := make([]store.User, n)
		for i := range users {
			addr := fmt.Sprintf("user-%02d@example.com", i)
			users[i] = store.User{ID: fmt.Sprintf("u-racer-%02d", i), Email: addr, CanonicalEmail: addr}
		}
		s := newStore(t, users)
		ctx := t.Context()
		changes := make([]store.EmailChange, n)
		for i, u := range users {
			changes[i] = emailChange(u.ID, "Shared@Example.com", at(0), u.ID)
		}
		errs := race(n, func(i int) error { return s.ChangeEmail(ctx, changes[i]) })
		checkRace(t, "ChangeEmail", errs, 1, store.ErrEmailExists)
		checkBacklog(t, s, "after the race", 1, at(0))
		for i, u := range users {
			if errs[i] == nil {
				checkUser(t, s, moved(u, changes[i]))
				checkLease(t, s, 10, at(time.Second), wantNotice(changes[i], u, 1))
				continue
			}
			checkUser(t, s, u)
			checkNoRevert(t, s, changes[i], at(time.Second), store.ErrRevertInvalid)
		}
	})
}
