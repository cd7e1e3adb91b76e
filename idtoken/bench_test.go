package idtoken_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// The benchmarks measure the middlewares against the floor: parsing and
// verifying the same token with golang-jwt and the same key, nothing else
// (BenchmarkToken). BENCHMARKS.md states the targets as ratios between
// them. Each benchmark reuses one request and one ResponseWriter, so that
// the harness does not dominate what is measured.

// empty is the handler behind the middlewares.
var empty = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// benchAlg is one signing algorithm of the benchmarks.
type benchAlg struct {
	name   string
	signer func(*testKeys) signer
	pub    func(*testKeys) any
}

var benchAlgs = []benchAlg{
	{"RS256", rs256, func(k *testKeys) any { return &k.rs.PublicKey }},
	{"ES256", es256, func(k *testKeys) any { return &k.es.PublicKey }},
	{"EdDSA", eddsa, func(k *testKeys) any { return k.ed.Public() }},
}

// benchToken is an id_token for testClient that is valid by the wall clock
// for an hour.
func benchToken(b *testing.B, s signer) string {
	b.Helper()
	now := time.Now()
	return s.sign(b, claims(
		setClaim("iat", now.Add(-time.Minute).Unix()),
		setClaim("nbf", now.Add(-time.Minute).Unix()),
		setClaim("exp", now.Add(time.Hour).Unix()),
	))
}

// benchVerifier trusts pub for every token, with the wall clock, and applies
// edit to its options.
func benchVerifier(b *testing.B, pub any, edit func(*idtoken.Options)) *idtoken.Verifier {
	b.Helper()
	opts := idtoken.Options{
		Issuer:  testIssuer,
		Keyfunc: func(*jwt.Token) (any, error) { return pub, nil },
		Logger:  discard,
	}
	if edit != nil {
		edit(&opts)
	}
	v, err := idtoken.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	return v
}

// benchCache is the cache the cached benchmarks turn on.
func benchCache(o *idtoken.Options) {
	o.Cache = idtoken.CacheOptions{MaxEntries: 10_000}
}

// benchRequest is a request with every header the chain reads.
func benchRequest(raw string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/sdk/profile/update-email", nil)
	for k, v := range handlertest.DeviceHeaders() {
		r.Header[k] = v
	}
	r.Header.Set("X-Client-Id", testClient)
	r.Header.Set("X-L", "en")
	if raw != "" {
		r.Header.Set("Authorization", "Bearer "+raw)
	}
	return r
}

func benchRegistry() store.ClientRegistry {
	return memstore.NewClientRegistry(store.Client{ID: testClient, Name: "App One"})
}

// BenchmarkToken puts everything that verifies a token side by side, per
// algorithm, with the same token and key, so that
// "benchstat -col /impl" shows each as a ratio to the floor:
//
//	floor         golang-jwt parses and verifies the token with the key, nothing else
//	bearer        RequireBearer alone, the client id read from its header
//	chain         the four middlewares in front of an empty handler
//	chain-jwks    the same with keys from a JWKS served over HTTP, as integrators run it
//	chain-cached  the chain with the verified-token cache on; every iteration but the first is a hit
func BenchmarkToken(b *testing.B) {
	k := keys(b)
	srv := newJWKSServer(b, jwksJSON(b, standardSet(k)...))
	for _, alg := range benchAlgs {
		raw := benchToken(b, alg.signer(k))
		pub := alg.pub(k)
		b.Run("alg="+alg.name+"/impl=floor", func(b *testing.B) {
			p := jwt.NewParser(jwt.WithValidMethods([]string{alg.name}))
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("alg="+alg.name+"/impl=bearer", func(b *testing.B) {
			testkit.ServeLoop(b, middleware.RequireBearer(benchVerifier(b, pub, nil))(empty), benchRequest(raw))
		})
		b.Run("alg="+alg.name+"/impl=chain", func(b *testing.B) {
			testkit.ServeLoop(b, chain(benchRegistry(), benchVerifier(b, pub, nil), empty), benchRequest(raw))
		})
		b.Run("alg="+alg.name+"/impl=chain-jwks", func(b *testing.B) {
			v, err := idtoken.New(idtoken.Options{Issuer: testIssuer, JWKSURL: srv.URL, Logger: discard})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			if err := v.Ready(context.Background()); err != nil {
				b.Fatal(err)
			}
			testkit.ServeLoop(b, chain(benchRegistry(), v, empty), benchRequest(raw))
		})
		b.Run("alg="+alg.name+"/impl=chain-cached", func(b *testing.B) {
			testkit.ServeLoop(b, chain(benchRegistry(), benchVerifier(b, pub, benchCache), empty), benchRequest(raw))
		})
	}
}

// BenchmarkChainParallel runs the chain from every CPU at once, each
// goroutine with a token of its own, without and with the cache: it shows
// contention on shared state such as the cache's locks.
func BenchmarkChainParallel(b *testing.B) {
	k := keys(b)
	s := rs256(k)
	// Tokens are signed here: signing fails b, which only this goroutine may do.
	var tokens []string
	for i := range 64 {
		now := time.Now()
		tokens = append(tokens, s.sign(b, claims(
			setClaim("iat", now.Add(-time.Minute).Unix()),
			setClaim("nbf", now.Add(-time.Minute).Unix()),
			setClaim("exp", now.Add(time.Hour).Unix()),
			setClaim("jti", strconv.Itoa(i)),
		)))
	}
	for _, cached := range []bool{false, true} {
		name := "impl=chain"
		var edit func(*idtoken.Options)
		if cached {
			name, edit = "impl=chain-cached", benchCache
		}
		b.Run(name, func(b *testing.B) {
			h := chain(benchRegistry(), benchVerifier(b, &k.rs.PublicKey, edit), empty)
			var next atomic.Int32
			var failed atomic.Int32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := benchRequest(tokens[int(next.Add(1)-1)%len(tokens)])
				w := testkit.NewNopWriter()
				for pb.Next() {
					w.Reset()
					h.ServeHTTP(w, r)
					if code := w.Status(); code != 0 {
						failed.Store(int32(code))
					}
				}
			})
			if code := failed.Load(); code != 0 {
				b.Fatalf("status %d", code)
			}
		})
	}
}
