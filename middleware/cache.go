package middleware

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// CacheOptions configures the verified-token cache of a Verifier
// (VerifierOptions.Cache). A hit skips parsing and the signature check, the
// bulk of a request's cost; the checks that depend on the request (the
// audience must hold its client id, the azp rules) still run on every hit.
//
// The zero value turns the cache off, and off is the default: a cache keeps
// verified bearer tokens in memory, and it changes revocation semantics, since
// a token whose signing key the issuer withdraws stays accepted until its
// entry ends (MaxAge at most). An integrator who accepts that for the speed
// opts in by setting MaxEntries.
//
// Each hit returns a copy of the cached Claims, whose Audience and dates are
// shared with the entry: read them, do not modify them.
type CacheOptions struct {
	// MaxEntries is the most tokens the cache holds; when it is full the
	// oldest entry makes room. Zero turns the cache off.
	MaxEntries int
	// MaxBytes bounds the memory the entries take, counted as the token,
	// the text of its claims and a fixed overhead per entry. Default:
	// MaxEntries × 2 KiB, enough for typical id_tokens.
	MaxBytes int
	// MaxAge is the longest an entry serves after the token was verified;
	// an entry never outlives the token's exp either (without Leeway).
	// Default: 5 minutes.
	MaxAge time.Duration
}

// Defaults of CacheOptions.
const (
	defaultCacheEntryBytes = 2 << 10
	defaultCacheMaxAge     = 5 * time.Minute
	// cacheEntryOverhead approximates what an entry costs beyond the text
	// it holds: the entry and its claims, their time values, the map slot.
	cacheEntryOverhead = 320
	maxCacheShards     = 16
)

// tokenCache maps a hash of the whole token to its verified claims. It is
// split into shards, each under its own lock, so that concurrent hits on
// different tokens rarely meet; a hit takes only a read lock. Each shard
// evicts in insertion order, which for tokens that live about as long as
// one another is close to expiry order.
type tokenCache struct {
	seed   maphash.Seed
	maxAge time.Duration
	shards []cacheShard
}

type cacheShard struct {
	mu         sync.RWMutex
	entries    map[uint64]*cacheEntry
	oldest     *cacheEntry // the list in insertion order, oldest first
	newest     *cacheEntry
	bytes      int
	maxEntries int
	maxBytes   int
}

// cacheEntry is immutable once inserted, except for its list links, which
// only the shard's write lock guards.
type cacheEntry struct {
	hash       uint64
	raw        string // compared in full on every hit, so a hash collision is a miss
	claims     Claims
	expires    int64 // Unix nanoseconds
	size       int
	prev, next *cacheEntry
}

// newTokenCache returns nil when opts leave the cache off.
func newTokenCache(opts CacheOptions) (*tokenCache, error) {
	if opts.MaxEntries < 0 || opts.MaxBytes < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("%w: Cache: negative limit", ErrConfig)
	}
	if opts.MaxEntries == 0 {
		if opts.MaxBytes != 0 || opts.MaxAge != 0 {
			return nil, fmt.Errorf("%w: Cache: MaxBytes or MaxAge set without MaxEntries", ErrConfig)
		}
		return nil, nil
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = opts.MaxEntries * defaultCacheEntryBytes
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = defaultCacheMaxAge
	}
	n := 1
	for n*2 <= maxCacheShards && n*2 <= opts.MaxEntries {
		n *= 2
	}
	c := &tokenCache{seed: maphash.MakeSeed(), maxAge: opts.MaxAge, shards: make([]cacheShard, n)}
	for i := range c.shards {
		// The remainders go to the first shards, so that the shards
		// add up to the limits exactly.
		s := &c.shards[i]
		s.entries = make(map[uint64]*cacheEntry)
		s.maxEntries = opts.MaxEntries / n
		if i < opts.MaxEntries%n {
			s.maxEntries++
		}
		s.maxBytes = opts.MaxBytes / n
		if i < opts.MaxBytes%n {
			s.maxBytes++
		}
	}
	return c, nil
}

func (c *tokenCache) shard(h uint64) *cacheShard {
	// The low bits pick the map bucket; the high ones pick the shard.
	return &c.shards[h>>32%uint64(len(c.shards))]
}

// get returns a copy of the claims cached for raw, or nil. The copy shares
// its slices and dates with the entry; callers only read them.
func (c *tokenCache) get(raw string, now time.Time) *Claims {
	h := maphash.String(c.seed, raw)
	s := c.shard(h)
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.raw != raw || now.UnixNano() >= e.expires {
		return nil
	}
	claims := e.claims
	return &claims
}

// put caches the claims of raw, which passed every check at now, until
// the token's exp or now+MaxAge, whichever comes first.
func (c *tokenCache) put(raw string, claims *Claims, now time.Time) {
	if claims.ExpiresAt == nil {
		return
	}
	expires := min(claims.ExpiresAt.UnixNano(), now.Add(c.maxAge).UnixNano())
	if expires <= now.UnixNano() {
		return
	}
	h := maphash.String(c.seed, raw)
	e := &cacheEntry{hash: h, raw: strings.Clone(raw), claims: cloneClaims(claims), expires: expires}
	e.size = entrySize(e)
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.entries[h]; old != nil {
		s.remove(old)
	}
	if e.size > s.maxBytes {
		return
	}
	nowNano := now.UnixNano()
	for s.oldest != nil && (len(s.entries) >= s.maxEntries || s.bytes+e.size > s.maxBytes || s.oldest.expires <= nowNano) {
		s.remove(s.oldest)
	}
	s.entries[h] = e
	s.bytes += e.size
	e.prev = s.newest
	if s.newest != nil {
		s.newest.next = e
	} else {
		s.oldest = e
	}
	s.newest = e
}

// remove unlinks e; the caller holds the write lock.
func (s *cacheShard) remove(e *cacheEntry) {
	delete(s.entries, e.hash)
	s.bytes -= e.size
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.newest = e.prev
	}
	e.prev, e.next = nil, nil
}

// cloneClaims copies c with slices and dates of its own, so that the entry
// shares nothing with the request that verified the token.
func cloneClaims(c *Claims) Claims {
	out := *c
	out.Audience = slices.Clone(c.Audience)
	out.ExpiresAt = cloneDate(c.ExpiresAt)
	out.NotBefore = cloneDate(c.NotBefore)
	out.IssuedAt = cloneDate(c.IssuedAt)
	out.AuthTime = cloneDate(c.AuthTime)
	return out
}

func cloneDate(d *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

func entrySize(e *cacheEntry) int {
	c := &e.claims
	n := cacheEntryOverhead + len(e.raw) + len(c.Issuer) + len(c.Subject) + len(c.ID) +
		len(c.AuthorizedParty) + len(c.Nonce)
	for _, a := range c.Audience {
		n += len(a) + 16
	}
	return n
}
