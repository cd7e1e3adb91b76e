package memstore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// CodeStore is an in-memory store.CodeStore holding at most
// Options.MaxEntries codes. The zero value is ready to use, with the
// default Options.
//
// When it is full, a Put for a new key evicts the code that expires
// soonest. Soonest rather than at random, so that a code outlives at least
// MaxEntries puts of other codes: with random eviction a flood of any size
// would kill some honest codes within seconds, while here the attacker must
// outpace the whole store (the package doc gives the price). Soonest rather
// than the code with the most wrong tries, which would let a guesser
// choose the victim. An evicted code is gone: Verify refuses it, and only a
// new Put, a new code, starts new tries.
//
// A code is kept under the SHA-256 of its key, and as the SHA-256 of the
// caller's hash, which compares equal exactly when the hashes do: 88 bytes
// a code and a few dozen in the index, no pointers and no address.
type CodeStore struct {
	mu    sync.Mutex
	opts  Options // resolved on first use
	codes table[[sha256.Size]byte, code]
}

// code is a stored code.
type code struct {
	hash  [sha256.Size]byte // SHA-256 of the caller's hash
	tries int
}

// codeDigest returns the key a code is kept under.
func codeDigest(k store.CodeKey) [sha256.Size]byte { return digest(k.Purpose, k.Email) }

// NewCodeStore returns an empty code store configured by opts, of which it
// takes at most one; none means the zero Options.
//
// Panics if given more than one Options or if MaxEntries is negative or
// above math.MaxInt32.
func NewCodeStore(opts ...Options) *CodeStore {
	s := &CodeStore{opts: oneOptions("NewCodeStore", opts)}
	s.codes.init(s.opts.MaxEntries)
	return s
}

// lock takes s.mu and sets up a zero CodeStore.
func (s *CodeStore) lock() {
	s.mu.Lock()
	if s.codes.index == nil {
		s.opts = s.opts.resolve("CodeStore")
		s.codes.init(s.opts.MaxEntries)
	}
}

// Put implements store.CodeStore. A Put for a key without a live code when
// the store is full evicts the code that expires soonest; it never fails. A
// code whose expiresAt has passed by Options.Now is never stored: Put
// deletes the key's code instead, which is what a Verify after expiresAt
// would see.
func (s *CodeStore) Put(_ context.Context, key store.CodeKey, hash []byte, expiresAt time.Time) error {
	k, h := codeDigest(key), sha256.Sum256(hash)
	s.lock()
	defer s.mu.Unlock()
	now, exp := nanos(s.opts.Now()), nanos(expiresAt)
	s.codes.dropExpired(now, dropPerWrite)
	n, c := s.codes.lookup(k)
	switch {
	case exp <= now:
		if c != nil {
			s.codes.remove(n)
		}
		return nil
	case c == nil:
		if s.codes.full() {
			first, _ := s.codes.first()
			s.codes.remove(first)
		}
		_, c = s.codes.insert(k, exp)
	default:
		s.codes.setExpiry(n, exp)
	}
	c.val = code{hash: h}
	return nil
}

// Verify implements store.CodeStore.
func (s *CodeStore) Verify(_ context.Context, key store.CodeKey, hashes [][]byte, maxTries int, now time.Time) error {
	k := codeDigest(key)
	digests := make([][sha256.Size]byte, len(hashes))
	for i, h := range hashes {
		digests[i] = sha256.Sum256(h)
	}
	s.lock()
	defer s.mu.Unlock()
	s.codes.dropExpired(nanos(s.opts.Now()), dropPerWrite)
	n, c := s.codes.lookup(k)
	if c == nil {
		return store.ErrCodeInvalid
	}
	if nanos(now) >= c.expiry || c.val.tries >= maxTries {
		s.codes.remove(n)
		return store.ErrCodeInvalid
	}
	match := 0
	for _, h := range digests {
		match |= subtle.ConstantTimeCompare(c.val.hash[:], h[:])
	}
	if match == 1 {
		s.codes.remove(n)
		return nil
	}
	c.val.tries++
	if c.val.tries >= maxTries {
		s.codes.remove(n)
	}
	return store.ErrCodeInvalid
}
