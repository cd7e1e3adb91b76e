package idtoken_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// The benchmarks are paired (internal/paired): each runs the floor,
// golang-jwt parsing and verifying the same token with the same key and
// nothing else, and an implementation in alternating batches of a few
// milliseconds, and reports their ratios, x-wall and x-cpu, which
// BENCHMARKS.md states its targets in:
//
//	go test -run '^$' -bench VsFloor -benchtime 100x -count 10 ./idtoken | tee idtoken.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' idtoken.txt
//
// Each worker reuses one request and one ResponseWriter, so that the
// harness does not dominate what is measured.

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
// for an hour; jti, when set, makes it a token of its own.
func benchToken(b *testing.B, s signer, jti string) string {
	b.Helper()
	now := time.Now()
	edits := []func(jwt.MapClaims){
		setClaim("iat", now.Add(-time.Minute).Unix()),
		setClaim("nbf", now.Add(-time.Minute).Unix()),
		setClaim("exp", now.Add(time.Hour).Unix()),
	}
	if jti != "" {
		edits = append(edits, setClaim("jti", jti))
	}
	return s.sign(b, claims(edits...))
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

// jwksVerifier fetches its keys from srv, as integrators run it.
func jwksVerifier(b *testing.B, srv *jwksServer) *idtoken.Verifier {
	b.Helper()
	v, err := idtoken.New(idtoken.Options{Issuer: testIssuer, JWKSURL: srv.URL, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	if err := v.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	return v
}

// benchCache is the cache the cached benchmarks turn on.
func benchCache(o *idtoken.Options) {
	o.Cache = idtoken.CacheOptions{MaxEntries: 10_000}
}

// benchRequest is a request with every header the chain reads.
func benchRequest(raw string) *http.Request {
	h := handlertest.DeviceHeaders()
	h.Set("X-Client-Id", testClient)
	h.Set("X-L", "en")
	if raw != "" {
		h.Set("Authorization", "Bearer "+raw)
	}
	return handlertest.NewRequest(h)
}

func benchRegistry() store.ClientRegistry {
	return memstore.NewClientRegistry(store.Client{ID: testClient, Name: "App One"})
}

// fusedChain is middleware.Chain as the root package builds it for
// update-email: Localize, POST only, the device headers, X-client-id and
// the bearer token, as one middleware.
func fusedChain(v middleware.TokenVerifier) func(http.Handler) http.Handler {
	return middleware.Chain(middleware.ChainOptions{
		Methods: []string{http.MethodPost}, Clients: benchRegistry(), Verifier: v, Logger: discard,
	})
}

// pairOf is the floor of tokens (worker w verifies tokens[w] with golang-jwt
// and pub) and h serving one request per worker, each carrying its worker's
// token; any status written fails, since the handler behind writes none.
func pairOf(alg string, pub any, tokens []string, h http.Handler) paired.Pair {
	p := jwt.NewParser(jwt.WithValidMethods([]string{alg}))
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	reqs := make([]*http.Request, len(tokens))
	ws := make([]*testkit.NopWriter, len(tokens))
	for i, raw := range tokens {
		reqs[i], ws[i] = benchRequest(raw), testkit.NewNopWriter()
	}
	return paired.Pair{
		Floor: func(w int) error {
			_, err := p.ParseWithClaims(tokens[w], &jwt.RegisteredClaims{}, keyfunc)
			return err
		},
		Impl: func(w int) error {
			ws[w].Reset()
			h.ServeHTTP(ws[w], reqs[w])
			if code := ws[w].Status(); code != 0 {
				return fmt.Errorf("status %d", code)
			}
			return nil
		},
		Workers: len(tokens),
	}
}

// BenchmarkChainVsFloor puts everything that verifies a token against the
// floor, per algorithm, with the same token and key:
//
//	bearer        RequireBearer alone, in front of an empty handler
//	chain         middleware.Chain, as the root package runs it: Localize,
//	              POST only, device headers, X-client-id, bearer token
//	chain-jwks    the same with keys from a JWKS served over HTTP (loopback),
//	              as integrators run it
//	chain-cached  the chain with the verified-token cache on; every request
//	              but the first is a hit
func BenchmarkChainVsFloor(b *testing.B) {
	k := keys(b)
	srv := newJWKSServer(b, jwksJSON(b, standardSet(k)...))
	for _, alg := range benchAlgs {
		tokens := []string{benchToken(b, alg.signer(k), "")}
		pub := alg.pub(k)
		impls := []struct {
			name string
			h    func(b *testing.B) http.Handler
		}{
			{"bearer", func(b *testing.B) http.Handler { return middleware.RequireBearer(benchVerifier(b, pub, nil))(empty) }},
			{"chain", func(b *testing.B) http.Handler { return fusedChain(benchVerifier(b, pub, nil))(empty) }},
			{"chain-jwks", func(b *testing.B) http.Handler { return fusedChain(jwksVerifier(b, srv))(empty) }},
			{"chain-cached", func(b *testing.B) http.Handler { return fusedChain(benchVerifier(b, pub, benchCache))(empty) }},
		}
		for _, impl := range impls {
			b.Run("alg="+alg.name+"/impl="+impl.name, func(b *testing.B) {
				paired.Run(b, pairOf(alg.name, pub, tokens, impl.h(b)))
			})
		}
	}
}

// BenchmarkChainParallelVsFloor is the RS256 chain, without and with the
// cache, on every core at once, each worker with a token of its own: it
// shows contention on shared state such as the cache's locks.
func BenchmarkChainParallelVsFloor(b *testing.B) {
	k := keys(b)
	workers := runtime.GOMAXPROCS(0)
	var tokens []string
	for w := range workers {
		tokens = append(tokens, benchToken(b, rs256(k), strconv.Itoa(w)))
	}
	pub := &k.rs.PublicKey
	b.Run("impl=chain", func(b *testing.B) {
		paired.Run(b, pairOf("RS256", pub, tokens, fusedChain(benchVerifier(b, pub, nil))(empty)))
	})
	b.Run("impl=chain-cached", func(b *testing.B) {
		paired.Run(b, pairOf("RS256", pub, tokens, fusedChain(benchVerifier(b, pub, benchCache))(empty)))
	})
}
