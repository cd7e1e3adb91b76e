package middleware_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// The benchmarks measure the middlewares that do no cryptography, in
// absolute time (BENCHMARKS.md: the three together under 1 µs) and, in
// BenchmarkNonCryptoVsFloor, against the floor of the other benchmarks in
// the same run; the token's cost, and RequireBearer against the floor, are
// measured in package idtoken.

// empty is the handler behind the middlewares.
var empty = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// benchRequest is a request with every header the chain reads, and a
// bearer token the benchmarks' verifier accepts.
func benchRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/sdk/profile/update-email", nil)
	for k, v := range handlertest.DeviceHeaders() {
		r.Header[k] = v
	}
	r.Header.Set("X-Client-Id", testClient)
	r.Header.Set("X-L", "en")
	r.Header.Set("Authorization", "Bearer user-1")
	return r
}

func benchRegistry() store.ClientRegistry {
	return memstore.NewClientRegistry(store.Client{ID: testClient, Name: "App One"})
}

// trustAll is a TokenVerifier that takes the token for the subject, so
// that the benchmarks see the middleware's own cost.
type trustAll struct{}

func (trustAll) VerifyToken(_ context.Context, token, _ string) (middleware.Identity, error) {
	return middleware.Identity{Subject: token}, nil
}

func BenchmarkLocalize(b *testing.B) {
	testkit.ServeLoop(b, middleware.Localize(i18n.Default())(empty), benchRequest())
}

func BenchmarkDeviceHeaders(b *testing.B) {
	testkit.ServeLoop(b, middleware.DeviceHeaders(empty), benchRequest())
}

func BenchmarkRequireClientID(b *testing.B) {
	testkit.ServeLoop(b, middleware.RequireClientID(benchRegistry(), discard)(empty), benchRequest())
}

// BenchmarkNonCrypto is the middlewares in front of RequireBearer, each on
// its own (one allocation each: every one attaches an immutable state) and
// as one Chain (one allocation in all).
func BenchmarkNonCrypto(b *testing.B) {
	b.Run("impl=separate", func(b *testing.B) {
		h := middleware.Localize(i18n.Default())(
			middleware.AllowMethods(http.MethodPost)(
				middleware.DeviceHeaders(
					middleware.RequireClientID(benchRegistry(), discard)(empty))))
		testkit.ServeLoop(b, h, benchRequest())
	})
	b.Run("impl=chain", func(b *testing.B) {
		h := middleware.Chain(middleware.ChainOptions{
			Methods: []string{http.MethodPost}, Clients: benchRegistry(), Logger: discard,
		})(empty)
		testkit.ServeLoop(b, h, benchRequest())
	})
}

// BenchmarkChain is the whole chain, RequireBearer included, with a
// verifier that costs nothing.
func BenchmarkChain(b *testing.B) {
	h := middleware.Chain(middleware.ChainOptions{
		Methods: []string{http.MethodPost}, Clients: benchRegistry(), Verifier: trustAll{}, Logger: discard,
	})(empty)
	testkit.ServeLoop(b, h, benchRequest())
}

// BenchmarkNonCryptoVsFloor runs the non-crypto middlewares (separate and
// as one Chain) and the whole Chain with a verifier that costs nothing
// against the floor: golang-jwt parsing and verifying an RS256 token. x-wall
// is tiny; impl-ns/op is their time in a run whose floor-ns/op tells how
// fast the machine was.
func BenchmarkNonCryptoVsFloor(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: "https://id.example.test", Subject: "user-1", Audience: jwt.ClaimStrings{testClient},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}))
	keyfunc := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
	floor := func(int) error {
		_, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc)
		return err
	}
	for _, impl := range []struct {
		name string
		h    http.Handler
	}{
		{"separate", middleware.Localize(i18n.Default())(
			middleware.AllowMethods(http.MethodPost)(
				middleware.DeviceHeaders(
					middleware.RequireClientID(benchRegistry(), discard)(empty))))},
		{"chain", middleware.Chain(middleware.ChainOptions{
			Methods: []string{http.MethodPost}, Clients: benchRegistry(), Logger: discard,
		})(empty)},
		{"chain-bearer", middleware.Chain(middleware.ChainOptions{
			Methods: []string{http.MethodPost}, Clients: benchRegistry(), Verifier: trustAll{}, Logger: discard,
		})(empty)},
	} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			r, w := benchRequest(), testkit.NewNopWriter()
			serve := func(int) error {
				w.Reset()
				impl.h.ServeHTTP(w, r)
				if code := w.Status(); code != 0 {
					return fmt.Errorf("status %d", code)
				}
				return nil
			}
			paired.Run(b, paired.Pair{Floor: floor, Impl: serve})
		})
	}
}
