package memstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/ciamkit/selfservice/store"
)

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

// CreateClient registers c, whole (Issuer and JWKSURL too), or returns
// store.ErrAlreadyExists if its id is taken, and an error if c has an
// Issuer without a JWKSURL or the other way round.
func (r *ClientRegistry) CreateClient(_ context.Context, c store.Client) error {
	if (c.Issuer == "") != (c.JWKSURL == "") {
		return fmt.Errorf("memstore: client %q: Issuer and JWKSURL go together", c.ID)
	}
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
