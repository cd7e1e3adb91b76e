package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ciamkit/selfservice/store"
)

// The users every UserStore subtest starts from. Alice's address is typed in
// mixed case, so a store that returns the canonical form for display fails;
// Bob has a language, which a store must keep through changes of address.
var (
	alice   = store.User{ID: "u-alice", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com"}
	bob     = store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "bob@example.com", Language: "zh-CN"}
	nomail1 = store.User{ID: "u-nomail-1"}
	nomail2 = store.User{ID: "u-nomail-2"}
)

// TestUserStore checks a store.UserStore. newStore must return a store
// holding exactly seed; the seed may contain several users without an
// address, and never two with one canonical address.
func TestUserStore(t *testing.T, newStore func(t *testing.T, seed []store.User) store.UserStore) {
	t.Helper()
	seed := func() []store.User { return []store.User{alice, bob, nomail1, nomail2} }

	t.Run("User returns the stored user", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		for _, u := range seed() {
			checkUser(t, s, u)
		}
	})

	// The notice of a change goes out in the language the store holds.
	t.Run("User returns the language the user was created with", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		got, err := s.User(t.Context(), bob.ID)
		if err != nil || got.Language != bob.Language {
			t.Errorf("User(%q) = %+v, %v; want Language %q", bob.ID, got, err, bob.Language)
		}
	})

	t.Run("User of an unknown id is ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		for _, id := range []string{"u-nobody", ""} {
			_, err := s.User(t.Context(), id)
			checkErr(t, fmt.Sprintf("User(%q)", id), err, store.ErrNotFound)
		}
	})

	t.Run("UpdateEmail sets the typed and the canonical form", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), alice.ID, "Alice.New@Example.com", "alice.new@example.com")
		checkErr(t, "UpdateEmail", err, nil)
		checkUser(t, s, store.User{ID: alice.ID, Email: "Alice.New@Example.com", CanonicalEmail: "alice.new@example.com"})
		checkUser(t, s, bob)
	})

	t.Run("UpdateEmail gives a user without an address one", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), nomail1.ID, "Carol@Example.com", "carol@example.com")
		checkErr(t, "UpdateEmail", err, nil)
		checkUser(t, s, store.User{ID: nomail1.ID, Email: "Carol@Example.com", CanonicalEmail: "carol@example.com"})
		checkUser(t, s, nomail2)
	})

	t.Run("UpdateEmail of an unknown id is ErrNotFound and changes nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), "u-nobody", "new@example.com", "new@example.com")
		checkErr(t, "UpdateEmail(unknown id)", err, store.ErrNotFound)
		_, err = s.User(t.Context(), "u-nobody")
		checkErr(t, "User after the failed update", err, store.ErrNotFound)
		// The address must not have been reserved by the failed call.
		err = s.UpdateEmail(t.Context(), bob.ID, "new@example.com", "new@example.com")
		checkErr(t, "UpdateEmail to the address the failed call named", err, nil)
	})

	t.Run("UpdateEmail to another user's address is ErrEmailExists and changes nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		for _, u := range []store.User{bob, nomail1} {
			// Typed differently, equal once canonical: uniqueness is on the
			// canonical form.
			err := s.UpdateEmail(t.Context(), u.ID, "ALICE@example.COM", alice.CanonicalEmail)
			checkErr(t, fmt.Sprintf("UpdateEmail(%q, alice's address)", u.ID), err, store.ErrEmailExists)
			checkUser(t, s, u)
		}
		checkUser(t, s, alice)
	})

	t.Run("UpdateEmail to one's own address succeeds and keeps the new typed case", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), alice.ID, "ALICE@EXAMPLE.COM", alice.CanonicalEmail)
		checkErr(t, "UpdateEmail(own address)", err, nil)
		checkUser(t, s, store.User{ID: alice.ID, Email: "ALICE@EXAMPLE.COM", CanonicalEmail: alice.CanonicalEmail})
	})

	t.Run("UpdateEmail frees the old address", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), alice.ID, "alice@example.org", "alice@example.org")
		checkErr(t, "UpdateEmail(alice, new address)", err, nil)
		err = s.UpdateEmail(t.Context(), bob.ID, "Alice@Example.com", alice.CanonicalEmail)
		checkErr(t, "UpdateEmail(bob, alice's old address)", err, nil)
		checkUser(t, s, store.User{ID: bob.ID, Email: "Alice@Example.com", CanonicalEmail: alice.CanonicalEmail, Language: bob.Language})
	})

	// The caller canonicalises; a store that folds case on its own (a
	// case-insensitive collation, an index on lower()) applies a second rule
	// that can disagree with the caller's, so it must compare the canonical
	// strings exactly as given.
	t.Run("UpdateEmail compares canonical strings as given", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		err := s.UpdateEmail(t.Context(), bob.ID, "Alice@Example.com", "Alice@Example.com")
		checkErr(t, "UpdateEmail(bob, canonical differing from alice's only in case)", err, nil)
	})

	t.Run("concurrent UpdateEmail to one address has exactly one winner", func(t *testing.T) {
		t.Parallel()
		const n = 20
		users := make([]store.User, n)
		for i := range users {
			addr := fmt.Sprintf("user-%02d@example.com", i)
			users[i] = store.User{ID: fmt.Sprintf("u-racer-%02d", i), Email: addr, CanonicalEmail: addr}
		}
		s := newStore(t, users)
		ctx := t.Context()
		const typed, canonical = "Shared@Example.com", "shared@example.com"
		errs := race(n, func(i int) error {
			return s.UpdateEmail(ctx, users[i].ID, typed, canonical)
		})
		checkRace(t, "UpdateEmail", errs, 1, store.ErrEmailExists)
		for i, u := range users {
			if errs[i] == nil {
				u.Email, u.CanonicalEmail = typed, canonical
			}
			checkUser(t, s, u)
		}
	})

	t.Run("readers never see a half-written user", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seed())
		ctx := t.Context()
		other := store.User{ID: alice.ID, Email: "Alice@Example.org", CanonicalEmail: "alice@example.org"}
		const writes, readers = 20, 4

		done := make(chan struct{})
		var mu sync.Mutex
		var torn []store.User
		var readErr error
		var wg sync.WaitGroup
		for range readers {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					u, err := s.User(ctx, alice.ID)
					if err != nil || (u != alice && u != other) {
						mu.Lock()
						if err != nil && readErr == nil {
							readErr = err
						} else if err == nil {
							torn = append(torn, u)
						}
						mu.Unlock()
					}
				}
			})
		}
		for i := range writes {
			u := alice
			if i%2 == 0 {
				u = other
			}
			if err := s.UpdateEmail(ctx, u.ID, u.Email, u.CanonicalEmail); err != nil {
				t.Errorf("UpdateEmail #%d: %v", i, err)
				break
			}
		}
		close(done)
		wg.Wait()
		checkErr(t, "User during updates", readErr, nil)
		for _, u := range torn {
			t.Errorf("User during updates = %+v, want %+v or %+v", u, alice, other)
		}
	})
}

// checkUser reports unless the store holds want under want.ID.
func checkUser(t *testing.T, s store.UserStore, want store.User) {
	t.Helper()
	got, err := s.User(t.Context(), want.ID)
	if err != nil {
		t.Errorf("User(%q): %v", want.ID, err)
		return
	}
	if got != want {
		t.Errorf("User(%q) = %+v, want %+v", want.ID, got, want)
	}
}
