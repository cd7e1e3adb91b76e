package idtoken_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
)

// TestJWKSRefetchSurvivesHangUp: a client that sends a made-up kid and hangs
// up while the refetch runs cannot waste the one fetch the limiter allows:
// the fetch finishes on the Verifier's own context and brings the rotated
// key for the next, genuine token.
func TestJWKSRefetchSurvivesHangUp(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	var body atomic.Pointer[[]byte]
	var slow atomic.Bool
	var fetches atomic.Int64
	first := jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig})
	body.Store(&first)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	t.Cleanup(srv.Close)
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Hour // one refetch for the whole test
	})

	rotated := jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig})
	body.Store(&rotated)
	slow.Store(true)
	bogus := signer{jwt.SigningMethodES256, oldKey, "made-up"}.sign(t, claims())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, bogus, testClient); err == nil {
		t.Fatal("a made-up kid verified")
	}

	genuine := signer{jwt.SigningMethodES256, newKey, "new"}.sign(t, claims())
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), genuine, testClient)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key never arrived: %v (fetches: %d)", err, fetches.Load())
		}
		if !errors.Is(err, jwkset.ErrKeyNotFound) {
			t.Fatalf("genuine token: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (start-up and the one refetch)", n)
	}
}
