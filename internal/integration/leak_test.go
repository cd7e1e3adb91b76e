package integration_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ciamkit/selfservice/idtoken"
)

// TestMain fails the package if any test leaves a goroutine behind: store
// pools, proxies, servers and JWKS refreshers must all stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestVerifierCloseStopsRefresh: the keyfunc refresh goroutine fetches
// while the Verifier lives and stops when it is closed.
func TestVerifierCloseStopsRefresh(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	v, err := idtoken.New(idtoken.Options{
		Issuer:          "https://id.example.test",
		JWKSURL:         jwks.URL,
		RefreshInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fetches.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fetches.Load() < 3 {
		t.Fatalf("only %d JWKS fetches while the refresh should run", fetches.Load())
	}
	v.Close()
	time.Sleep(50 * time.Millisecond) // a fetch in flight at Close may finish
	settled := fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if n := fetches.Load(); n != settled {
		t.Fatalf("%d fetches after Close", n-settled)
	}
	jwks.Close()
	goleak.VerifyNone(t, before)
}
