package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// The benchmarks measure the middlewares that do no cryptography; the
// token's cost, and RequireBearer against the floor of verifying the token
// with golang-jwt alone, are measured in package idtoken.

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
