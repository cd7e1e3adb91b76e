package memstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/store"
)

// UserStore is an in-memory store.ChangeStore: users, the notices of their
// changes of address, and the undo records of those changes. The zero value
// is ready to use.
//
// Its Outbox lives in memory with the users: the notices not yet delivered
// are lost with the process, as the changes they report are. Every notice
// is one that ChangeEmail recorded, so the Service's budget of changes per
// user bounds them; leasing scans them all.
type UserStore struct {
	mu          sync.RWMutex
	byID        map[string]store.User
	byCanonical map[string]string // canonical email -> user id

	// The owner's alarm; see changes.go.
	undos    map[[sha256.Size]byte]undoRecord // digest of the token hash -> record
	alarms   map[string]*alarm                // user id -> its undo records and cool-off
	notices  map[string]*queued               // notice id -> notice
	due      outbox                           // the same notices, soonest due first
	noticeNo uint64                           // the last notice number handed out
}

// NewUserStore returns a store holding users, each added as CreateUser adds
// it; it panics if one of them is refused (two share an id or a canonical
// address, or an address is invalid or its canonical form wrong), since
// that is a mistake in the caller's data.
func NewUserStore(users ...store.User) *UserStore {
	s := &UserStore{}
	for _, u := range users {
		if err := s.CreateUser(context.Background(), u); err != nil {
			panic(fmt.Sprintf("memstore: NewUserStore: user %q: %v", u.ID, err))
		}
	}
	return s
}

func (s *UserStore) init() {
	if s.byID == nil {
		s.byID = make(map[string]store.User)
		s.byCanonical = make(map[string]string)
		s.undos = make(map[[sha256.Size]byte]undoRecord)
		s.alarms = make(map[string]*alarm)
		s.notices = make(map[string]*queued)
	}
}

// CreateUser adds u, with its address in the form the handlers write it:
// Email trimmed and NFC-normalised, and CanonicalEmail computed from it
// when empty (see the root package's CanonicalEmail). It returns
// store.ErrAlreadyExists if the id is taken and store.ErrEmailExists if the
// canonical address is; store.ErrInvalidUser if Email is not a valid
// address, or CanonicalEmail is given without Email or is not Email's
// canonical form, since the uniqueness of addresses rests on that form. In
// every case of an error it changes nothing.
func (s *UserStore) CreateUser(_ context.Context, u store.User) error {
	email, canonical, err := emailaddr.Reconcile(u.Email, u.CanonicalEmail)
	if err != nil {
		return fmt.Errorf("memstore: user %q: %w: %w", u.ID, store.ErrInvalidUser, err)
	}
	u.Email, u.CanonicalEmail = email, canonical
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if _, ok := s.byID[u.ID]; ok {
		return store.ErrAlreadyExists
	}
	if u.CanonicalEmail != "" {
		if _, ok := s.byCanonical[u.CanonicalEmail]; ok {
			return store.ErrEmailExists
		}
		s.byCanonical[u.CanonicalEmail] = u.ID
	}
	s.byID[u.ID] = u
	return nil
}

// User implements store.UserStore.
func (s *UserStore) User(_ context.Context, id string) (store.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.byID[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

// UpdateEmail implements store.UserStore. It records no notice and no
// undo, and ignores a cool-off that an undo set: the Service changes
// addresses with ChangeEmail, and UpdateEmail stays for callers that set an
// address without the owner's alarm (seeding, administration).
func (s *UserStore) UpdateEmail(_ context.Context, id, email, canonical string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	if s.takenByOther(id, canonical) {
		return store.ErrEmailExists
	}
	s.setAddress(u, email, canonical)
	return nil
}

// takenByOther reports whether a user other than id holds canonical. An
// empty canonical address is no address: any number of users may have
// none. The caller holds s.mu.
func (s *UserStore) takenByOther(id, canonical string) bool {
	holder, ok := s.byCanonical[canonical]
	return ok && holder != id && canonical != ""
}

// setAddress gives u, a user the store holds, the address email and
// canonical, which no other user holds. The caller holds s.mu for writing.
func (s *UserStore) setAddress(u store.User, email, canonical string) {
	if u.CanonicalEmail != "" {
		delete(s.byCanonical, u.CanonicalEmail)
	}
	u.Email, u.CanonicalEmail = email, canonical
	s.byID[u.ID] = u
	if canonical != "" {
		s.byCanonical[canonical] = u.ID
	}
}
