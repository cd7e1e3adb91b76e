package selfservice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// countingRegistry answers from clients and counts the calls; err, when
// set, fails every call.
type countingRegistry struct {
	mu      sync.Mutex
	clients map[string]bool
	calls   int
	err     error
}

func (r *countingRegistry) Client(_ context.Context, id string) (store.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	switch {
	case r.err != nil:
		return store.Client{}, r.err
	case r.clients[id]:
		return store.Client{ID: id}, nil
	}
	return store.Client{}, store.ErrNotFound
}

func (r *countingRegistry) set(f func(r *countingRegistry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *countingRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func TestClientCache(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	ctx := context.Background()
	reg := &countingRegistry{clients: map[string]bool{"app": true}}
	c := newClientCache(reg, 0, clock)

	lookup := func(what, id string, want error) {
		t.Helper()
		got, err := c.Client(ctx, id)
		if !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Fatalf("%s: Client(%q) = %v, want %v", what, id, err, want)
		}
		if err == nil && got.ID != id {
			t.Fatalf("%s: Client(%q) = %+v", what, id, got)
		}
	}

	for range 100 {
		lookup("repeated", "app", nil)
	}
	if n := reg.count(); n != 1 {
		t.Fatalf("100 lookups of one client made %d registry calls, want 1", n)
	}

	// A removed registration is served until the TTL ends, then refused.
	reg.set(func(r *countingRegistry) { delete(r.clients, "app") })
	now = now.Add(defaultClientCacheTTL - time.Nanosecond)
	lookup("removed, within the TTL", "app", nil)
	now = now.Add(time.Nanosecond)
	lookup("removed, TTL over", "app", store.ErrNotFound)

	// An unknown id is remembered for at most 5 s: a new registration is
	// served after that.
	calls := reg.count()
	lookup("unknown", "new", store.ErrNotFound)
	lookup("unknown again", "new", store.ErrNotFound)
	if n := reg.count() - calls; n != 1 {
		t.Fatalf("two lookups of an unknown id made %d calls, want 1", n)
	}
	reg.set(func(r *countingRegistry) { r.clients["new"] = true })
	now = now.Add(maxNegativeClientCacheTTL)
	lookup("registered after a miss", "new", nil)

	// Failures are not cached.
	boom := errors.New("registry down")
	reg.set(func(r *countingRegistry) { r.err = boom })
	lookup("failing", "other", boom)
	reg.set(func(r *countingRegistry) { r.err = nil; r.clients["other"] = true })
	lookup("after the failure", "other", nil)

	// A flood of made-up ids never holds more than the cap.
	for i := range clientCacheEntries + 500 {
		lookup("flood", fmt.Sprintf("made-up-%d", i), store.ErrNotFound)
	}
	cc := c.(*clientCache)
	if n := len(cc.entries); n > clientCacheEntries {
		t.Fatalf("the cache holds %d ids, cap %d", n, clientCacheEntries)
	}
}

func TestClientCacheOff(t *testing.T) {
	t.Parallel()
	reg := &countingRegistry{clients: map[string]bool{"app": true}}
	if c := newClientCache(reg, -1, time.Now); c != store.ClientRegistry(reg) {
		t.Fatalf("a negative TTL must leave the registry as it is, got %T", c)
	}
}
