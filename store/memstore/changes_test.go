package memstore_test

import (
	"testing"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestChangeStore(t *testing.T) {
	storetest.TestChangeStore(t, func(t *testing.T, seed []store.User) store.ChangeStore {
		return memstore.NewUserStore(seed...)
	})
}
