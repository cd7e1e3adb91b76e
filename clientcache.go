package selfservice

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// Bounds of the client cache, documented at Config.ClientCacheTTL.
const (
	defaultClientCacheTTL = 30 * time.Second
	// maxNegativeClientCacheTTL bounds how long an unknown client id is
	// remembered as unknown, so that a newly registered application is
	// served within seconds.
	maxNegativeClientCacheTTL = 5 * time.Second
	// clientCacheEntries is the most client ids the cache holds, known and
	// unknown together.
	clientCacheEntries = 10_000
)

// clientCache is a store.ClientRegistry that remembers the answers of
// another for a short time: registrations change rarely, and without it
// every request asks the registry (a database round trip) before any other
// check. Answers found and "not found" are cached (the latter for at most
// maxNegativeClientCacheTTL); failures are not. It holds at most
// clientCacheEntries ids and makes room by dropping an arbitrary one, so a
// flood of made-up ids costs the registry one query each but never memory.
type clientCache struct {
	reg         store.ClientRegistry
	ttl, negTTL time.Duration
	now         func() time.Time

	mu      sync.RWMutex
	entries map[string]clientEntry
}

type clientEntry struct {
	client  store.Client
	found   bool
	expires time.Time
}

// newClientCache wraps reg, or returns it as it is when ttl is negative.
func newClientCache(reg store.ClientRegistry, ttl time.Duration, now func() time.Time) store.ClientRegistry {
	if reg == nil || ttl < 0 {
		return reg
	}
	if ttl == 0 {
		ttl = defaultClientCacheTTL
	}
	return &clientCache{
		reg:     reg,
		ttl:     ttl,
		negTTL:  min(ttl, maxNegativeClientCacheTTL),
		now:     now,
		entries: make(map[string]clientEntry),
	}
}

// Client implements store.ClientRegistry.
func (c *clientCache) Client(ctx context.Context, id string) (store.Client, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		if !e.found {
			return store.Client{}, store.ErrNotFound
		}
		return e.client, nil
	}
	client, err := c.reg.Client(ctx, id)
	switch {
	case err == nil:
		e = clientEntry{client: client, found: true, expires: now.Add(c.ttl)}
	case errors.Is(err, store.ErrNotFound):
		e = clientEntry{expires: now.Add(c.negTTL)}
	default:
		return store.Client{}, err
	}
	c.mu.Lock()
	if _, held := c.entries[id]; !held && len(c.entries) >= clientCacheEntries {
		for victim := range c.entries {
			delete(c.entries, victim)
			break
		}
	}
	c.entries[id] = e
	c.mu.Unlock()
	return client, err
}
