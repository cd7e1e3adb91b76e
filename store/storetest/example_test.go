package storetest_test

import (
	"testing"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

// A store's own tests run the suite with a factory that returns a fresh
// store per call; here, the in-memory ones.
func Example() {
	_ = func(t *testing.T) {
		storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
			return memstore.NewUserStore(seed...)
		})
		storetest.TestCodeStore(t, func(t *testing.T) store.CodeStore {
			return memstore.NewCodeStore()
		})
		storetest.TestLimiter(t, func(t *testing.T) store.Limiter {
			return memstore.NewLimiter()
		})
		storetest.TestClientRegistry(t, func(t *testing.T, seed []store.Client) store.ClientRegistry {
			return memstore.NewClientRegistry(seed...)
		})
	}
}
