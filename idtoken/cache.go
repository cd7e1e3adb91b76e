package idtoken

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/internal/configerr"
)

// CacheOptions configures the verified-token cache of a Verifier
// (Options.Cache). A hit skips parsing and the signature check, the
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
	// MaxEntries is the most tokens the cache holds, exactly: it fills up
	// to MaxEntries, then the oldest entry makes room for each new one.
	// Zero turns the cache off.
	MaxEntries int
	// MaxBytes bounds the memory the entries take, counted as the token,
	// the text of its claims and a fixed overhead per entry; the oldest
	// entries make room when it would be exceeded, and a token larger
	// than MaxBytes is not cached. Default: MaxEntries × 2 KiB, enough for
	// typical id_tokens.
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

// tokenCache maps a hash of the whole token to its verified claims.
//
// Hits, the hot path, only read: the map is split into shards, each under
// its own read-write lock, so that concurrent hits rarely meet. Inserts and
// evictions take one lock for the whole cache (mu), which keeps a single
// list of the entries in insertion order and the totals, so that MaxEntries
// and MaxBytes hold exactly, for the cache as a whole: the cache fills up to
// MaxEntries before it evicts anything, and then evicts the oldest entry,
// whatever shard it is in. An insert follows a signature check, which costs
// a thousand times what mu guards, so that lock is not contended. Evicting
// in insertion order is, for tokens that live about as long as one another,
// close to expiry order.
type tokenCache struct {
	seed       maphash.Seed
	maxAge     time.Duration
	maxEntries int
	maxBytes   int
	shards     []cacheShard

	mu      sync.Mutex // guards the list and the totals; taken before a shard's lock
	oldest  *cacheEntry
	newest  *cacheEntry
	entries int
	bytes   int
}

// cacheShard is a part of the map. Its lock guards the map; writers hold
// the cache's mu as well, so that a reader holding mu needs no shard lock.
type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry
}

// cacheEntry is immutable once inserted, except for its list links, which
// only the cache's mu guards.
type cacheEntry struct {
	hash       uint64
	raw        string // compared in full on every hit, so a hash collision is a miss
	kid        string // for the log of a refusal served from the cache
	claims     Claims
	expires    int64 // Unix nanoseconds
	size       int
	prev, next *cacheEntry
}

// newTokenCache returns nil when opts leave the cache off.
func newTokenCache(opts CacheOptions) (*tokenCache, error) {
	if opts.MaxEntries < 0 || opts.MaxBytes < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("%w: Cache: negative limit", configerr.Err)
	}
	if opts.MaxEntries == 0 {
		if opts.MaxBytes != 0 || opts.MaxAge != 0 {
			return nil, fmt.Errorf("%w: Cache: MaxBytes or MaxAge set without MaxEntries", configerr.Err)
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
	c := &tokenCache{
		seed:       maphash.MakeSeed(),
		maxAge:     opts.MaxAge,
		maxEntries: opts.MaxEntries,
		maxBytes:   opts.MaxBytes,
		shards:     make([]cacheShard, n),
	}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*cacheEntry)
	}
	return c, nil
}

func (c *tokenCache) shard(h uint64) *cacheShard {
	// The low bits pick the map bucket; the high ones pick the shard.
	return &c.shards[h>>32%uint64(len(c.shards))]
}

// get returns a copy of the claims cached for raw and the kid of its
// header, or nil. The copy shares its slices and dates with the entry;
// callers only read them.
func (c *tokenCache) get(raw string, now time.Time) (*Claims, string) {
	h := maphash.String(c.seed, raw)
	s := c.shard(h)
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.raw != raw || now.UnixNano() >= e.expires {
		return nil, ""
	}
	claims := e.claims
	return &claims, e.kid
}

// put caches the claims of raw, whose header names kid and which passed
// every check at now, until the token's exp or now+MaxAge, whichever comes
// first.
func (c *tokenCache) put(raw string, claims *Claims, kid string, now time.Time) {
	if claims.ExpiresAt == nil {
		return
	}
	// An exp past 2262 has no UnixNano: compare times, then convert the
	// earlier, which is at most MaxAge away.
	until := now.Add(c.maxAge)
	if claims.ExpiresAt.Before(until) {
		until = claims.ExpiresAt.Time
	}
	expires := until.UnixNano()
	if expires <= now.UnixNano() {
		return
	}
	h := maphash.String(c.seed, raw)
	e := &cacheEntry{hash: h, raw: strings.Clone(raw), kid: strings.Clone(kid), claims: cloneClaims(claims), expires: expires}
	e.size = entrySize(e)
	s := c.shard(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Writers hold mu: reading a shard's map needs no shard lock here.
	if old := s.entries[h]; old != nil {
		c.remove(old)
	}
	if e.size > c.maxBytes {
		return
	}
	nowNano := now.UnixNano()
	for c.oldest != nil && (c.entries >= c.maxEntries || c.bytes+e.size > c.maxBytes || c.oldest.expires <= nowNano) {
		c.remove(c.oldest)
	}
	s.mu.Lock()
	s.entries[h] = e
	s.mu.Unlock()
	c.entries++
	c.bytes += e.size
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
}

// remove unlinks e and drops it from its shard; the caller holds mu.
func (c *tokenCache) remove(e *cacheEntry) {
	s := c.shard(e.hash)
	s.mu.Lock()
	delete(s.entries, e.hash)
	s.mu.Unlock()
	c.entries--
	c.bytes -= e.size
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.newest = e.prev
	}
	e.prev, e.next = nil, nil
}

// cloneClaims copies c with slices and dates of its own, so that the entry
// shares nothing with the request that verified the token.
func cloneClaims(c *Claims) Claims {
	out := *c
	out.Audience = slices.Clone(c.Audience)
	out.AMR = slices.Clone(c.AMR)
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
	n := cacheEntryOverhead + len(e.raw) + len(e.kid) + len(c.Issuer) + len(c.Subject) + len(c.ID) +
		len(c.AuthorizedParty) + len(c.Nonce) + len(c.ACR)
	for _, a := range c.Audience {
		n += len(a) + 16
	}
	for _, a := range c.AMR {
		n += len(a) + 16
	}
	return n
}
