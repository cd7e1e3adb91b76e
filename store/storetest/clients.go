package storetest

import (
	"fmt"
	"testing"

	"github.com/ciamkit/selfservice/store"
)

// TestClientRegistry checks a store.ClientRegistry. newRegistry must return
// a registry holding exactly seed, which includes a client with an Issuer
// and a JWKSURL: Client must return every field as registered.
func TestClientRegistry(t *testing.T, newRegistry func(t *testing.T, seed []store.Client) store.ClientRegistry) {
	t.Helper()
	seed := []store.Client{
		{ID: "app-web", Name: "Web shop"},
		{ID: "app-ios", Name: "iOS app"},
		// A client that signs in through an issuer of its own: both
		// fields come back as registered.
		{ID: "app-partner", Name: "Partner portal", Issuer: "https://id.partner.example", JWKSURL: "https://id.partner.example/keys"},
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
