package idtoken_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// TestRequireClientIDImplausible: ids no registry could hold are unknown
// (400), without a lookup that a database might answer with an error (500).
func TestRequireClientIDImplausible(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"\xff\xfe", "app\x00", "app\x7f", "a\x01b"} {
		reg := &handlertest.CountingRegistry{ClientRegistry: memstore.NewClientRegistry(store.Client{ID: testClient})}
		h := handlertest.DeviceHeaders()
		h["X-Client-Id"] = []string{id}
		next := &handlertest.Recorder{}
		w := handlertest.Serve(middleware.RequireClientID(reg, discard)(next), handlertest.NewRequest(h))
		handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown)
		if n := reg.Calls(); n != 0 {
			t.Errorf("X-client-id %q: %d registry calls", id, n)
		}
	}
}

// TestVerifierKeepsItsAlgorithms: changing the caller's slice after
// NewVerifier cannot let HS256 in.
func TestVerifierKeepsItsAlgorithms(t *testing.T) {
	t.Parallel()
	secret := []byte("a shared secret of some length!!")
	algs := []string{"RS256"}
	v := newVerifier(t, func(o *idtoken.Options) {
		o.Algorithms = algs
		o.Keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
	})
	algs[0] = "HS256"
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
	tok.Header["kid"] = "k"
	raw, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), raw, testClient); !errors.Is(err, i18n.CodeTokenInvalid) {
		t.Fatalf("HS256 token after the caller changed its slice: %v", err)
	}
}

// TestJWKSURLMustBeSafe: signing keys come over https, or http to loopback,
// unless the integrator says otherwise.
func TestJWKSURLMustBeSafe(t *testing.T) {
	t.Parallel()
	for url, ok := range map[string]bool{
		"http://id.example.com/keys": false,
		"http://10.0.0.5/keys":       false,
		"ftp://id.example.com/keys":  false,
		"http://127.0.0.1:1/keys":    true,
		"http://[::1]:1/keys":        true,
		"http://localhost:1/keys":    true,
		"https://127.0.0.1:1/keys":   true,
	} {
		v, err := idtoken.New(idtoken.Options{Issuer: testIssuer, JWKSURL: url, HTTPTimeout: 50 * time.Millisecond, Logger: discard})
		if v != nil {
			v.Close()
		}
		if (err == nil) != ok || (err != nil && !errors.Is(err, configerr.Err)) {
			t.Errorf("JWKSURL %s: err %v, want accepted %v", url, err, ok)
		}
	}
	// The client never dials: nothing leaves this machine.
	offline := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("offline")
	})}
	v, err := idtoken.New(idtoken.Options{Issuer: testIssuer, JWKSURL: "http://id.example.com/keys",
		AllowInsecureJWKS: true, HTTPClient: offline, Logger: discard})
	if err != nil {
		t.Fatalf("AllowInsecureJWKS: %v", err)
	}
	v.Close()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
