package idtoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

// eventually retries check every 10ms until it reports true or 3s pass.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after 3s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A JWKS that fails at start-up is an internal failure (retry later), not an
// invalid token, and the Verifier recovers on its own once the JWKS answers.
func TestJWKSUnavailableAtStart(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	srv.status.Store(http.StatusInternalServerError)
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = 50 * time.Millisecond
	})
	ctx := context.Background()
	if err := v.Ready(ctx); !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Errorf("Ready = %v, want ErrKeysUnavailable", err)
	}

	raw := rs256(k).sign(t, claims())
	bearer := middleware.Localize(i18n.Default())(middleware.RequireBearer(v)(&handlertest.Recorder{}))

	_, err := v.Verify(ctx, raw, testClient)
	if !errors.Is(err, i18n.CodeInternal) || !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Errorf("Verify error = %v, want ErrInternal wrapping ErrKeysUnavailable", err)
	}
	for _, tt := range []struct{ xl, msg string }{{"en", handlertest.MsgInternal}, {"zh", handlertest.MsgInternalZH}} {
		r := bearerRequest(raw)
		r.Header.Set("X-L", tt.xl)
		handlertest.AssertError(t, handlertest.Serve(bearer, r), nil, http.StatusInternalServerError, handlertest.CodeInternal, tt.msg)
	}

	srv.status.Store(http.StatusOK)
	eventually(t, "token accepted once the JWKS answers", func() bool {
		_, err := v.Verify(ctx, raw, testClient)
		return err == nil
	})
	if err := v.Ready(ctx); err != nil {
		t.Errorf("Ready after recovery = %v, want nil", err)
	}
	next := &handlertest.Recorder{}
	w := handlertest.Serve(middleware.RequireBearer(v)(next), bearerRequest(raw))
	handlertest.AssertPassed(t, w, next)
}

// A JWKS that fails after keys were loaded keeps the keys it had: known
// keys keep working and unknown kids are invalid tokens, not outages.
func TestJWKSOutageAfterStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		breakJWKS func(s *jwksServer)
	}{
		{"status 500", func(s *jwksServer) { s.status.Store(http.StatusInternalServerError) }},
		{"status 404", func(s *jwksServer) { s.status.Store(http.StatusNotFound) }},
		{"not JSON", func(s *jwksServer) { s.setBody([]byte("<html>maintenance</html>")) }},
		{"not a JWK Set", func(s *jwksServer) { s.setBody([]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"!!"}]}`)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := keys(t)
			srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
			v := newVerifier(t, func(o *idtoken.Options) {
				o.JWKSURL = srv.URL
				o.UnknownKIDInterval = time.Millisecond
			})
			tt.breakJWKS(srv)
			ctx := context.Background()
			// A kid the loaded set lacks may be a key the issuer rotated
			// in during the outage: the token may be good, so it is an
			// internal failure (retry), not an invalid token (sign in).
			unknown := signer{jwt.SigningMethodES256, k.es, "unknown"}.sign(t, claims())
			for range 3 {
				_, err := v.Verify(ctx, unknown, testClient)
				if !errors.Is(err, i18n.CodeInternal) || !errors.Is(err, idtoken.ErrKeysUnavailable) {
					t.Fatalf("unknown kid during the outage: error %v, want ErrKeysUnavailable", err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			if got := srv.fetches.Load(); got < 2 {
				t.Fatalf("JWKS fetched %d times; the outage was never seen", got)
			}
			if _, err := v.Verify(ctx, es256(k).sign(t, claims()), testClient); err != nil {
				t.Errorf("known key during the outage: %v", err)
			}
			if err := v.Ready(ctx); err != nil {
				t.Errorf("Ready during the outage = %v, want nil", err)
			}
		})
	}
}

// An issuer that rotates its keys while its JWKS is down: every token of
// the new key is an internal failure while the set cannot be fetched, also
// those whose fetch the unknown-kid rate limit holds back, and is accepted
// once a fetch succeeds; a kid that the fetched set lacks is then invalid.
func TestJWKSRotationDuringOutage(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	srv := newJWKSServer(t, jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig}))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = 50 * time.Millisecond
	})
	ctx := context.Background()
	newToken := signer{jwt.SigningMethodES256, newKey, "new"}.sign(t, claims())
	srv.status.Store(http.StatusServiceUnavailable)
	for i := range 3 { // the first fetches, the others are held back
		if _, err := v.Verify(ctx, newToken, testClient); !errors.Is(err, idtoken.ErrKeysUnavailable) || !errors.Is(err, i18n.CodeInternal) {
			t.Fatalf("token %d of the new key during the outage: error %v, want ErrKeysUnavailable", i, err)
		}
	}
	if _, err := v.Verify(ctx, signer{jwt.SigningMethodES256, oldKey, "old"}.sign(t, claims()), testClient); err != nil {
		t.Errorf("old key during the outage: %v", err)
	}
	srv.status.Store(http.StatusOK)
	srv.setBody(jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig}))
	eventually(t, "new key accepted once the JWKS answers", func() bool {
		_, err := v.Verify(ctx, newToken, testClient)
		return err == nil
	})
	madeUp := signer{jwt.SigningMethodES256, newKey, "made-up"}.sign(t, claims())
	eventually(t, "a made-up kid invalid once the JWKS answers", func() bool {
		_, err := v.Verify(ctx, madeUp, testClient)
		return errors.Is(err, i18n.CodeTokenInvalid) && !errors.Is(err, i18n.CodeInternal)
	})
}

// An issuer that rotates its keys: a token of the new key makes the
// Verifier fetch the set again, and the old key is gone with it.
func TestJWKSKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	srv := newJWKSServer(t, jwksJSON(t, published{&oldKey.PublicKey, "2031-05", jwkset.AlgES256, jwkset.UseSig}))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Hour // only the first unknown kid refetches
	})
	ctx := context.Background()
	oldToken := signer{jwt.SigningMethodES256, oldKey, "2031-05"}.sign(t, claims())
	newToken := signer{jwt.SigningMethodES256, newKey, "2031-06"}.sign(t, claims())

	if _, err := v.Verify(ctx, oldToken, testClient); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	srv.setBody(jwksJSON(t, published{&newKey.PublicKey, "2031-06", jwkset.AlgES256, jwkset.UseSig}))

	if _, err := v.Verify(ctx, newToken, testClient); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	_, err := v.Verify(ctx, oldToken, testClient)
	if !errors.Is(err, i18n.CodeTokenInvalid) || errors.Is(err, i18n.CodeInternal) {
		t.Errorf("old key after rotation: error %v, want ErrTokenInvalid", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (start-up and the new kid)", got)
	}
}

// The background refresh brings a rotated set without any unknown-kid
// fetch.
func TestJWKSBackgroundRefresh(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	srv := newJWKSServer(t, jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig}))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Hour
		o.RefreshInterval = 20 * time.Millisecond
	})
	ctx := context.Background()
	// Use up the unknown-kid budget, so that only the background refresh
	// can bring the new key.
	if _, err := v.Verify(ctx, signer{jwt.SigningMethodES256, oldKey, "spent"}.sign(t, claims()), testClient); err == nil {
		t.Fatal("token of an unknown kid accepted")
	}
	srv.setBody(jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig}))
	newToken := signer{jwt.SigningMethodES256, newKey, "new"}.sign(t, claims())
	oldToken := signer{jwt.SigningMethodES256, oldKey, "old"}.sign(t, claims())
	eventually(t, "new key accepted", func() bool {
		_, err := v.Verify(ctx, newToken, testClient)
		return err == nil
	})
	if _, err := v.Verify(ctx, oldToken, testClient); !errors.Is(err, i18n.CodeTokenInvalid) {
		t.Errorf("old key after the refresh: error %v, want ErrTokenInvalid", err)
	}
}

// Made-up kids cannot turn the Verifier into a JWKS flooder.
func TestJWKSUnknownKIDRateLimit(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Hour
	})
	atStart := srv.fetches.Load()
	h := middleware.RequireBearer(v)(&handlertest.Recorder{})

	const n = 50
	type result struct {
		status int
		body   string
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		raw := signer{jwt.SigningMethodES256, k.es, fmt.Sprintf("random-%d-%s", i, rand.Text())}.sign(t, claims())
		wg.Go(func() {
			w := handlertest.Serve(h, bearerRequest(raw))
			results <- result{w.Code, w.Body.String()}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusBadRequest {
			t.Errorf("status %d, body %s; want 400", r.status, r.body)
		}
	}
	if got := srv.fetches.Load() - atStart; got > 2 {
		t.Errorf("%d tokens with unknown kids caused %d JWKS fetches, want at most 2", n, got)
	}
	// Known keys keep working meanwhile.
	if _, err := v.Verify(context.Background(), es256(k).sign(t, claims()), testClient); err != nil {
		t.Errorf("known key after the flood: %v", err)
	}
}

// A JWKS that hangs cannot hold a request past the request's deadline.
func TestJWKSHangingServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		hangAtStart bool
		httpTimeout time.Duration
		want        i18n.Code
	}{
		// Keys loaded, then a token with an unknown kid triggers a fetch
		// that hangs: an internal failure ("try again"), in time, as for
		// the tokens waiting on that fetch: the kid may be a rotated
		// key's, whose user must not be told to sign in again.
		{"hangs after start-up", false, time.Minute, i18n.CodeInternal},
		// No key ever loaded: an internal failure, in time.
		{"hangs from the start", true, 300 * time.Millisecond, i18n.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := keys(t)
			srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
			srv.hang.Store(tt.hangAtStart)
			start := time.Now()
			v := newVerifier(t, func(o *idtoken.Options) {
				o.JWKSURL = srv.URL
				o.HTTPTimeout = tt.httpTimeout
			})
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("NewVerifier took %v", d)
			}
			srv.hang.Store(true)
			raw := signer{jwt.SigningMethodRS256, k.rs, "rotated-away"}.sign(t, claims())

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start = time.Now()
			_, err := v.Verify(ctx, raw, testClient)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Verify returned after %v, past its 200ms deadline", d)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify error = %v, want %v", err, tt.want)
			}
			if srv.fetches.Load() < 2 {
				t.Errorf("JWKS fetched %d times; the test did not reach the hanging fetch", srv.fetches.Load())
			}
		})
	}
}

// The same through RequireBearer: the request's own context bounds the
// fetch.
func TestRequireBearerHangingJWKS(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.HTTPTimeout = time.Minute
	})
	srv.hang.Store(true)
	raw := signer{jwt.SigningMethodRS256, k.rs, "rotated-away"}.sign(t, claims())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	next := &handlertest.Recorder{}
	start := time.Now()
	w := handlertest.Serve(middleware.RequireBearer(v)(next), bearerRequest(raw).WithContext(ctx))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("request answered after %v, past its 200ms deadline", d)
	}
	handlertest.AssertError(t, w, next, http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal)
}
