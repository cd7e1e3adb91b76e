package memstore

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

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
