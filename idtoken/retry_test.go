package idtoken_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/configerr"
)

// TestJWKSRecoversWhileIdle replays issue 10, 3: the JWKS is down when the
// Verifier starts and nothing but a readiness probe asks it anything. Once
// the JWKS answers, Ready turns nil within seconds, with no token at all,
// and the retries stop.
func TestJWKSRecoversWhileIdle(t *testing.T) {
	t.Parallel()
	short := func(o *idtoken.Options) {
		o.KeyRetryMin, o.KeyRetryMax = 5*time.Millisecond, 40*time.Millisecond
	}
	tests := []struct {
		name   string
		down   func(*jwksServer)
		up     func(*jwksServer, []byte)
		retry  func(*idtoken.Options) // nil: the defaults
		within time.Duration          // from the JWKS answering to Ready
	}{
		{"503, default backoff", func(s *jwksServer) { s.status.Store(http.StatusServiceUnavailable) },
			func(s *jwksServer, _ []byte) { s.status.Store(http.StatusOK) }, nil, 3 * time.Second},
		{"connection closed, default backoff", func(s *jwksServer) { s.drop.Store(true) },
			func(s *jwksServer, _ []byte) { s.drop.Store(false) }, nil, 3 * time.Second},
		{"503", func(s *jwksServer) { s.status.Store(http.StatusServiceUnavailable) },
			func(s *jwksServer, _ []byte) { s.status.Store(http.StatusOK) }, short, time.Second},
		{"not JSON", func(s *jwksServer) { s.setBody([]byte("<html>starting</html>")) },
			func(s *jwksServer, good []byte) { s.setBody(good) }, short, time.Second},
		{"no keys yet", func(s *jwksServer) { s.setBody([]byte(`{"keys":[]}`)) },
			func(s *jwksServer, good []byte) { s.setBody(good) }, short, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := keys(t)
			good := jwksJSON(t, standardSet(k)...)
			srv := newJWKSServer(t, good)
			tt.down(srv)
			v := newVerifier(t, func(o *idtoken.Options) {
				o.JWKSURL = srv.URL
				if tt.retry != nil {
					tt.retry(o)
				}
			})
			ctx := context.Background()
			if err := v.Ready(ctx); !errors.Is(err, idtoken.ErrKeysUnavailable) {
				t.Fatalf("Ready with the JWKS down = %v, want ErrKeysUnavailable", err)
			}
			// The start-up fetch and two retries: the Verifier retries
			// on its own.
			waitFor(t, "two retries without traffic", 5*time.Second, func() bool { return srv.fetches.Load() >= 3 })
			if err := v.Ready(ctx); !errors.Is(err, idtoken.ErrKeysUnavailable) {
				t.Fatalf("Ready with the JWKS still down = %v, want ErrKeysUnavailable", err)
			}

			tt.up(srv, good)
			start := time.Now()
			waitFor(t, "Ready once the JWKS answers", tt.within, func() bool { return v.Ready(ctx) == nil })
			t.Logf("ready %v after the JWKS answered, %d fetches", time.Since(start).Round(time.Millisecond), srv.fetches.Load())

			// Loaded: the retries stop (the periodic refresh is an hour).
			settled := srv.fetches.Load()
			time.Sleep(100 * time.Millisecond)
			if n := srv.fetches.Load(); n != settled {
				t.Errorf("%d fetches after the keys were loaded", n-settled)
			}
			if _, err := v.Verify(ctx, rs256(k).sign(t, claims()), testClient); err != nil {
				t.Errorf("Verify after recovery: %v", err)
			}
		})
	}
}

// waitFor polls check every 5ms until it reports true, or fails t after
// within.
func waitFor(t *testing.T, what string, within time.Duration, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyRetryBackoff: the waits between retries grow to KeyRetryMax and
// stay there, so a JWKS down for long sees a bounded rate of fetches.
func TestKeyRetryBackoff(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.status.Store(http.StatusServiceUnavailable)
	newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.KeyRetryMin, o.KeyRetryMax = 2*time.Millisecond, 64*time.Millisecond
	})
	// Waits of about 2, 4, ..., 64 ms, each cut by up to half, then 32
	// to 64ms each: after the start-up fetch, at most 6 + 500/32 fetches
	// in half a second; at least a few even on a loaded machine.
	time.Sleep(500 * time.Millisecond)
	n := srv.fetches.Load()
	if n < 3 || n > 1+6+500/32 {
		t.Errorf("%d fetches in 500ms, want between 3 and %d", n, 1+6+500/32)
	}
}

func TestKeyRetryOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []idtoken.Options{
		{KeyRetryMin: -time.Second},
		{KeyRetryMax: -time.Second},
		{KeyRetryMin: time.Second, KeyRetryMax: time.Millisecond},
	} {
		o.Issuer, o.Keyfunc = testIssuer, func(*jwt.Token) (any, error) { return nil, nil }
		if _, err := idtoken.New(o); !errors.Is(err, configerr.Err) {
			t.Errorf("KeyRetryMin %v, KeyRetryMax %v: error %v, want ErrConfig", o.KeyRetryMin, o.KeyRetryMax, err)
		}
	}
	// A KeyRetryMin longer than the default KeyRetryMax raises it.
	o := idtoken.Options{Issuer: testIssuer, Keyfunc: func(*jwt.Token) (any, error) { return nil, nil }, KeyRetryMin: time.Minute}
	v, err := idtoken.New(o)
	if err != nil {
		t.Fatalf("KeyRetryMin of a minute alone: %v", err)
	}
	v.Close()
}

// TestVerifierCloseStopsKeyRetry: Close stops the retry goroutine and
// waits for it, so that nothing fetches afterwards and no goroutine is
// left. Not parallel: goleak must see only this test's goroutines.
func TestVerifierCloseStopsKeyRetry(t *testing.T) {
	before := goleak.IgnoreCurrent()
	srv := newJWKSServer(t, nil)
	srv.status.Store(http.StatusServiceUnavailable)
	transport := &http.Transport{}
	v, err := idtoken.New(idtoken.Options{
		Issuer: testIssuer, JWKSURL: srv.URL, Logger: discard,
		HTTPClient:  &http.Client{Transport: transport},
		KeyRetryMin: time.Millisecond, KeyRetryMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retries", 5*time.Second, func() bool { return srv.fetches.Load() >= 3 })
	v.Close()
	// A request sent just before Close may reach the handler just after
	// it; a retry still running would fetch every few milliseconds.
	time.Sleep(50 * time.Millisecond)
	settled := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if n := srv.fetches.Load(); n != settled {
		t.Errorf("%d fetches after Close", n-settled)
	}
	srv.Close()
	transport.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// TestJWKSRecoversFromEmptySetWhileIdle: keys were loaded, then a fetch
// (caused by one token of an unknown kid) brought an empty set. With no more
// traffic, the readiness probe alone must see the Verifier recover once the
// JWKS serves keys again, long before the periodic refresh.
func TestJWKSRecoversFromEmptySetWhileIdle(t *testing.T) {
	t.Parallel()
	k := keys(t)
	good := jwksJSON(t, standardSet(k)...)
	srv := newJWKSServer(t, good)
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.KeyRetryMin, o.KeyRetryMax = 5*time.Millisecond, 40*time.Millisecond
	})
	ctx := context.Background()
	if err := v.Ready(ctx); err != nil {
		t.Fatalf("Ready at start: %v", err)
	}
	srv.setBody([]byte(`{"keys":[]}`))
	if _, err := v.Verify(ctx, signer{jwt.SigningMethodRS256, k.rs, "new-kid"}.sign(t, claims()), testClient); err == nil {
		t.Fatal("token of an unknown kid accepted")
	}
	if err := v.Ready(ctx); !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Fatalf("Ready after an empty set = %v, want ErrKeysUnavailable", err)
	}
	srv.setBody(good)
	waitFor(t, "Ready once the JWKS serves keys again", 2*time.Second, func() bool { return v.Ready(ctx) == nil })
}
