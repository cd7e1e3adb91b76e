// Package memstore implements every store interface in memory: for tests,
// for development, and for a single process that may forget everything on
// restart. Each store is safe for concurrent use and gives the atomicity a
// database would: every method runs under one lock.
package memstore

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

var (
	_ store.UserStore      = (*UserStore)(nil)
	_ store.CodeStore      = (*CodeStore)(nil)
	_ store.SendLimiter    = (*SendLimiter)(nil)
	_ store.ClientRegistry = (*ClientRegistry)(nil)
)

// sweepEvery is how many writes pass between sweeps of expired entries, so
// that abandoned codes and limits do not pile up in a long-running process.
const sweepEvery = 1024

// UserStore is an in-memory store.UserStore. The zero value is ready to use.
type UserStore struct {
	mu          sync.RWMutex
	byID        map[string]store.User
	byCanonical map[string]string // canonical email -> user id
}

// NewUserStore returns a store holding users; it panics if two of them share
// an id or a canonical address, since that is a mistake in the caller's data.
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
	}
}

// CreateUser adds u. It returns store.ErrAlreadyExists if the id is taken and
// store.ErrEmailExists if the canonical address is, changing nothing.
func (s *UserStore) CreateUser(_ context.Context, u store.User) error {
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

// UpdateEmail implements store.UserStore.
func (s *UserStore) UpdateEmail(_ context.Context, id, email, canonical string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	// An empty canonical address is no address: any number of users may
	// have none.
	if holder, ok := s.byCanonical[canonical]; ok && holder != id && canonical != "" {
		return store.ErrEmailExists
	}
	if u.CanonicalEmail != "" {
		delete(s.byCanonical, u.CanonicalEmail)
	}
	u.Email, u.CanonicalEmail = email, canonical
	s.byID[id] = u
	if canonical != "" {
		s.byCanonical[canonical] = id
	}
	return nil
}

// CodeStore is an in-memory store.CodeStore. The zero value is ready to use.
type CodeStore struct {
	mu     sync.Mutex
	codes  map[store.CodeKey]*code
	writes int
}

type code struct {
	hash      []byte
	expiresAt time.Time
	tries     int
}

// NewCodeStore returns an empty code store.
func NewCodeStore() *CodeStore { return &CodeStore{} }

// Put implements store.CodeStore.
func (s *CodeStore) Put(_ context.Context, key store.CodeKey, hash []byte, expiresAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codes == nil {
		s.codes = make(map[store.CodeKey]*code)
	}
	s.writes++
	if s.writes%sweepEvery == 0 {
		now := time.Now()
		for k, c := range s.codes {
			if !now.Before(c.expiresAt) {
				delete(s.codes, k)
			}
		}
	}
	s.codes[key] = &code{hash: append([]byte(nil), hash...), expiresAt: expiresAt}
	return nil
}

// Verify implements store.CodeStore.
func (s *CodeStore) Verify(_ context.Context, key store.CodeKey, hash []byte, maxTries int, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[key]
	if !ok {
		return store.ErrCodeInvalid
	}
	if !now.Before(c.expiresAt) || c.tries >= maxTries {
		delete(s.codes, key)
		return store.ErrCodeInvalid
	}
	if subtle.ConstantTimeCompare(c.hash, hash) == 1 {
		delete(s.codes, key)
		return nil
	}
	c.tries++
	if c.tries >= maxTries {
		delete(s.codes, key)
	}
	return store.ErrCodeInvalid
}

// SendLimiter is an in-memory store.SendLimiter. The zero value is ready to
// use.
type SendLimiter struct {
	mu     sync.Mutex
	sends  map[string]*sendWindow
	writes int
}

type sendWindow struct {
	last        time.Time
	windowStart time.Time
	windowEnd   time.Time
	count       int
}

// NewSendLimiter returns an empty limiter.
func NewSendLimiter() *SendLimiter { return &SendLimiter{} }

// Reserve implements store.SendLimiter.
func (l *SendLimiter) Reserve(_ context.Context, key string, limits store.SendLimits, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sends == nil {
		l.sends = make(map[string]*sendWindow)
	}
	l.writes++
	if l.writes%sweepEvery == 0 {
		for k, w := range l.sends {
			if !now.Before(w.windowEnd) && !now.Before(w.last.Add(limits.Interval)) {
				delete(l.sends, k)
			}
		}
	}
	w, ok := l.sends[key]
	if !ok {
		w = &sendWindow{}
		l.sends[key] = w
	}
	if w.count > 0 && now.Before(w.last.Add(limits.Interval)) {
		return store.ErrRateLimited
	}
	if w.count == 0 || !now.Before(w.windowEnd) {
		w.windowStart, w.windowEnd, w.count = now, now.Add(limits.Window), 0
	}
	if w.count >= limits.Daily {
		return store.ErrRateLimited
	}
	w.count++
	w.last = now
	return nil
}

// ClientRegistry is an in-memory store.ClientRegistry. The zero value is
// ready to use.
type ClientRegistry struct {
	mu      sync.RWMutex
	clients map[string]store.Client
}

// NewClientRegistry returns a registry holding clients; it panics if two of
// them share an id, since that is a mistake in the caller's data.
func NewClientRegistry(clients ...store.Client) *ClientRegistry {
	r := &ClientRegistry{}
	for _, c := range clients {
		if err := r.CreateClient(context.Background(), c); err != nil {
			panic(fmt.Sprintf("memstore: NewClientRegistry: client %q: %v", c.ID, err))
		}
	}
	return r
}

// CreateClient registers c, or returns store.ErrAlreadyExists if its id is
// taken.
func (r *ClientRegistry) CreateClient(_ context.Context, c store.Client) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients == nil {
		r.clients = make(map[string]store.Client)
	}
	if _, ok := r.clients[c.ID]; ok {
		return store.ErrAlreadyExists
	}
	r.clients[c.ID] = c
	return nil
}

// Client implements store.ClientRegistry.
func (r *ClientRegistry) Client(_ context.Context, id string) (store.Client, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}
