package memstore_test

import (
	"testing"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestUserStore(t *testing.T) {
	storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
		return memstore.NewUserStore(seed...)
	})
}

func TestCodeStore(t *testing.T) {
	storetest.TestCodeStore(t, func(t *testing.T) store.CodeStore {
		return memstore.NewCodeStore()
	})
}

func TestSendLimiter(t *testing.T) {
	storetest.TestSendLimiter(t, func(t *testing.T) store.SendLimiter {
		return memstore.NewSendLimiter()
	})
}

func TestClientRegistry(t *testing.T) {
	storetest.TestClientRegistry(t, func(t *testing.T, seed []store.Client) store.ClientRegistry {
		return memstore.NewClientRegistry(seed...)
	})
}
