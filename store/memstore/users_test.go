package memstore_test

import (
	"errors"
	"testing"

	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// TestCreateUserChecksAddresses: seeded users get their canonical form
// computed or checked, so that two of them never hold one address (issue
// 10, 5).
func TestCreateUserChecksAddresses(t *testing.T) {
	t.Parallel()
	alice := store.User{ID: "u-alice", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com"}
	tests := []struct {
		name   string
		user   store.User
		want   error
		stored store.User // when added; zero: the user as given
	}{
		{"canonical form given", store.User{ID: "u-bob", Email: "Bob@Example.com", CanonicalEmail: "bob@example.com"}, nil, store.User{}},
		{"no address", store.User{ID: "u-nomail"}, nil, store.User{}},
		{"canonical form computed", store.User{ID: "u-bob", Email: " Bob@Bücher.example "}, nil,
			store.User{ID: "u-bob", Email: "Bob@Bücher.example", CanonicalEmail: "bob@xn--bcher-kva.example"}},
		{"taken address, canonical form not given", store.User{ID: "u-bob", Email: "ALICE@example.com"}, store.ErrEmailExists, store.User{}},
		{"taken address", store.User{ID: "u-bob", Email: "ALICE@example.com", CanonicalEmail: "alice@example.com"}, store.ErrEmailExists, store.User{}},
		{"canonical form of another address", store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "carol@example.com"}, emailaddr.ErrMismatch, store.User{}},
		{"canonical form without an address", store.User{ID: "u-bob", CanonicalEmail: "bob@example.com"}, emailaddr.ErrMismatch, store.User{}},
		{"invalid address", store.User{ID: "u-bob", Email: "bob@example"}, emailaddr.ErrDomain, store.User{}},
		{"look-alike of a taken address", store.User{ID: "u-bob", Email: "alice\u034f@example.com", CanonicalEmail: "alice@example.com"}, emailaddr.ErrCharacter, store.User{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := memstore.NewUserStore(alice)
			err := s.CreateUser(t.Context(), tt.user)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("CreateUser(%+v) = %v, want %v", tt.user, err, tt.want)
			}
			if invalid := tt.want != nil && !errors.Is(tt.want, store.ErrEmailExists) && !errors.Is(tt.want, store.ErrAlreadyExists); invalid != errors.Is(err, store.ErrInvalidUser) {
				t.Errorf("CreateUser(%+v) = %v: wraps store.ErrInvalidUser %v, want %v", tt.user, err, !invalid, invalid)
			}
			if tt.want != nil {
				if _, err := s.User(t.Context(), tt.user.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("refused user %q was added: %v", tt.user.ID, err)
				}
				if got, _ := s.User(t.Context(), alice.ID); got != alice {
					t.Errorf("alice is now %+v", got)
				}
				return
			}
			want := tt.user
			if tt.stored != (store.User{}) {
				want = tt.stored
			}
			if got, err := s.User(t.Context(), want.ID); err != nil || got != want {
				t.Errorf("User(%q) = %+v, %v; want %+v", want.ID, got, err, want)
			}
		})
	}
}

// TestNewUserStoreRefusesOneAddressTwice: the seeding mistake the issue
// found, two users of one address, one of them without its canonical form,
// is a panic at start-up rather than a broken uniqueness later.
func TestNewUserStoreRefusesOneAddressTwice(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewUserStore accepted two users of one address")
		}
	}()
	memstore.NewUserStore(
		store.User{ID: "u-1", Email: "shared@example.com", CanonicalEmail: "shared@example.com"},
		store.User{ID: "u-2", Email: "Shared@Example.com"},
	)
}
