package storetest

import (
	"fmt"
	"testing"

	"github.com/ciamkit/selfservice/store"
)

// TestClientRegistry checks a store.ClientRegistry. newRegistry must return
// a registry holding exactly seed.
func TestClientRegistry(t *testing.T, newRegistry func(t *testing.T, seed []store.Client) store.ClientRegistry) {
	t.Helper()
	seed := []store.Client{
		{ID: "app-web", Name: "Web shop"},
		{ID: "app-ios", Name: "iOS app"},
	}

	t.Run("Client returns the registered client", func(t *testing.T) {
		t.Parallel()
		r := newRegistry(t, seed)
		for _, want := range seed {
			got, err := r.Client(t.Context(), want.ID)
			if err != nil {
				t.Errorf("Client(%q): %v", want.ID, err)
				continue
			}
			if got != want {
				t.Errorf("Client(%q) = %+v, want %+v", want.ID, got, want)
			}
		}
	})

	t.Run("Client of an unknown id is ErrNotFound", func(t *testing.T) {
		t.Parallel()
		r := newRegistry(t, seed)
		for _, id := range []string{"app-unknown", ""} {
			_, err := r.Client(t.Context(), id)
			checkErr(t, fmt.Sprintf("Client(%q)", id), err, store.ErrNotFound)
		}
	})
}
