package memstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestChangeStore(t *testing.T) {
	storetest.TestChangeStore(t, func(t *testing.T, seed []store.User) store.ChangeStore {
		return NewUserStore(seed...)
	})
}

// alarmBase is the virtual clock of the tests below.
var alarmBase = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// changeTo returns the change of user id's address to the i-th address at
// now, its undo live for an hour.
func changeTo(id string, i int, now time.Time) store.EmailChange {
	addr := fmt.Sprintf("addr-%d@example.com", i)
	return store.EmailChange{
		UserID: id, Email: addr, Canonical: addr,
		Notice:          store.Notice{UserID: id, ChangedAt: now},
		RevertHash:      []byte(fmt.Sprintf("undo-%s-%d", id, i)),
		RevertExpiresAt: now.Add(time.Hour),
		Now:             now,
	}
}

// checkHeld reports unless s holds undos undo records and alarms alarms.
func checkHeld(t *testing.T, s *UserStore, what string, undos, alarms int) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.undos) != undos || len(s.alarms) != alarms {
		t.Errorf("%s: %d undo records and %d alarms held, want %d and %d", what, len(s.undos), len(s.alarms), undos, alarms)
	}
}

// TestAlarmsAreForgotten: undo records leave when used or voided, and when
// expired at their user's next change, and a cool-off when it has ended,
// so that the store's memory follows the changes made, not the time it has
// run.
func TestAlarmsAreForgotten(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const id = "u1"
	s := NewUserStore(store.User{ID: id, Email: "addr-0@example.com"})
	now := alarmBase
	for i := 1; i <= 100; i++ {
		if err := s.ChangeEmail(ctx, changeTo(id, i, now)); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		now = now.Add(2 * time.Hour)
	}
	checkHeld(t, s, "after 100 changes two hours apart", 1, 1)

	chain := []store.EmailChange{changeTo(id, 101, now), changeTo(id, 102, now), changeTo(id, 103, now)}
	for _, c := range chain {
		if err := s.ChangeEmail(ctx, c); err != nil {
			t.Fatalf("ChangeEmail: %v", err)
		}
	}
	checkHeld(t, s, "after a chain of three changes", 3, 1)
	lockUntil := now.Add(time.Minute)
	if _, err := s.RevertEmail(ctx, store.EmailRevert{TokenHash: chain[0].RevertHash, Now: now, LockUntil: lockUntil}); err != nil {
		t.Fatalf("RevertEmail: %v", err)
	}
	checkHeld(t, s, "after the chain's first undo", 0, 1)
	// The cool-off has ended and the change records no undo: nothing is
	// left of the user's alarm.
	c := changeTo(id, 104, lockUntil)
	c.RevertHash = nil
	if err := s.ChangeEmail(ctx, c); err != nil {
		t.Fatalf("ChangeEmail after the cool-off: %v", err)
	}
	checkHeld(t, s, "after a change without an undo once the cool-off ended", 0, 0)
}

// TestChangeEmailRefusesATakenRevertHash: one token hash names one undo, so
// that a token never undoes another change than its own.
func TestChangeEmailRefusesATakenRevertHash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := NewUserStore(
		store.User{ID: "u1", Email: "one@example.com"},
		store.User{ID: "u2", Email: "two@example.com"},
	)
	first := changeTo("u1", 1, alarmBase)
	if err := s.ChangeEmail(ctx, first); err != nil {
		t.Fatalf("ChangeEmail: %v", err)
	}
	second := changeTo("u2", 2, alarmBase)
	second.RevertHash = first.RevertHash
	if err := s.ChangeEmail(ctx, second); err == nil || errors.Is(err, store.ErrEmailExists) {
		t.Errorf("ChangeEmail with a taken undo hash: err = %v, want an internal failure", err)
	}
	if u, _ := s.User(ctx, "u2"); u.Email != "two@example.com" {
		t.Errorf("the refused change set the address %q", u.Email)
	}
	if n, _, _ := s.NoticeBacklog(ctx); n != 1 {
		t.Errorf("NoticeBacklog = %d after the refused change, want 1", n)
	}
	if got, err := s.RevertEmail(ctx, store.EmailRevert{TokenHash: first.RevertHash, Now: alarmBase}); err != nil || got.UserID != "u1" {
		t.Errorf("RevertEmail(first's hash) = %+v, %v; want first's undo", got, err)
	}
}

func TestChangeStoreZeroValue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var s UserStore
	if err := s.ChangeEmail(ctx, changeTo("u1", 1, alarmBase)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ChangeEmail: err = %v, want %v", err, store.ErrNotFound)
	}
	if _, err := s.RevertEmail(ctx, store.EmailRevert{TokenHash: []byte("h"), Now: alarmBase}); !errors.Is(err, store.ErrRevertInvalid) {
		t.Errorf("RevertEmail: err = %v, want %v", err, store.ErrRevertInvalid)
	}
	if ns, err := s.LeaseNotices(ctx, 10, alarmBase, time.Minute); len(ns) != 0 || err != nil {
		t.Errorf("LeaseNotices = %v, %v; want none", ns, err)
	}
	for what, err := range map[string]error{
		"RetryNotice":  s.RetryNotice(ctx, "1", alarmBase),
		"DeleteNotice": s.DeleteNotice(ctx, "1"),
	} {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	if n, oldest, err := s.NoticeBacklog(ctx); n != 0 || !oldest.IsZero() || err != nil {
		t.Errorf("NoticeBacklog = %d, %v, %v; want 0, the zero time, nil", n, oldest, err)
	}
}
