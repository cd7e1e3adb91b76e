package benchmarks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

const (
	issuer = "https://id.example.test"
	client = "bench-client"
)

// alg is one signing algorithm with its key.
type alg struct {
	name   string
	method jwt.SigningMethod
	key    crypto.Signer
}

func algs(b *testing.B) []alg {
	b.Helper()
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return []alg{
		{"RS256", jwt.SigningMethodRS256, rs},
		{"ES256", jwt.SigningMethodES256, es},
		{"EdDSA", jwt.SigningMethodEdDSA, ed},
	}
}

// token is the id_token every implementation checks: the same header and
// claims for all, valid for an hour.
func (a alg) token(b *testing.B) string {
	b.Helper()
	now := time.Now()
	t := jwt.NewWithClaims(a.method, jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   "user-1",
		Audience:  jwt.ClaimStrings{client},
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	t.Header["kid"] = "k1"
	raw, err := t.SignedString(a.key)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// writer is a ResponseWriter that keeps only the status.
type writer struct {
	h    http.Header
	code int
}

func (w *writer) Header() http.Header         { return w.h }
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) WriteHeader(code int)        { w.code = code }

// request carries every header our chain reads; the peers read only
// Authorization.
func request(raw string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/sdk/profile/update-email", nil)
	r.Header.Set("X-Operating-Sys-Version", "windows10.1.1")
	r.Header.Set("X-Device-Fingerprint", "156aysdna213sc50")
	r.Header.Set("X-Device-Ip", "192.168.1.2")
	r.Header.Set("X-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)")
	r.Header.Set("X-Client-Id", client)
	r.Header.Set("X-L", "en")
	r.Header.Set("Authorization", "Bearer "+raw)
	return r
}

// serve runs h on one request carrying raw; any status written is a
// failure, since the handler behind the middlewares writes nothing.
func serve(h http.Handler, raw string) func(int) error {
	r, w := request(raw), &writer{h: make(http.Header)}
	return func(int) error {
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != 0 {
			return fmt.Errorf("status %d", w.code)
		}
		return nil
	}
}

var empty = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// ourChain is selfservice's middleware.Chain, as the root package runs it
// in front of update-email: Localize, POST only, the device headers,
// X-client-id and the bearer token.
func ourChain(b *testing.B, pub crypto.PublicKey, cache idtoken.CacheOptions) http.Handler {
	b.Helper()
	v, err := idtoken.New(idtoken.Options{
		Issuer:  issuer,
		Keyfunc: func(*jwt.Token) (any, error) { return pub, nil },
		Cache:   cache,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	return middleware.Chain(middleware.ChainOptions{
		Methods:  []string{http.MethodPost},
		Clients:  memstore.NewClientRegistry(store.Client{ID: client}),
		Verifier: v,
		Logger:   slog.New(slog.DiscardHandler),
	})(empty)
}

// BenchmarkPeersVsFloor checks the same token with the same key in every
// implementation, each paired (internal/paired) with the floor, golang-jwt
// parsing and verifying the token and nothing else; x-wall and x-cpu are
// the ratios to it:
//
//	selfservice-chain         our middleware.Chain in front of an empty handler
//	selfservice-chain-cached  the same with the verified-token cache on (a repeated token)
//	go-oidc                   go-oidc's IDTokenVerifier.Verify with a StaticKeySet
//	go-jwt-middleware         go-jwt-middleware's CheckJWT with its validator, in front of an empty handler
//
// Run it with
//
//	go test -run '^$' -bench VsFloor -benchtime 100x -count 10 . | tee peers.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' peers.txt
func BenchmarkPeersVsFloor(b *testing.B) {
	for _, a := range algs(b) {
		raw := a.token(b)
		pub := a.key.Public()
		p := jwt.NewParser(jwt.WithValidMethods([]string{a.name}))
		keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
		floor := func(int) error {
			_, err := p.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc)
			return err
		}
		impls := []struct {
			name string
			op   func(b *testing.B) func(int) error
		}{
			{"selfservice-chain", func(b *testing.B) func(int) error {
				return serve(ourChain(b, pub, idtoken.CacheOptions{}), raw)
			}},
			{"selfservice-chain-cached", func(b *testing.B) func(int) error {
				return serve(ourChain(b, pub, idtoken.CacheOptions{MaxEntries: 10_000}), raw)
			}},
			{"go-oidc", func(*testing.B) func(int) error {
				v := oidc.NewVerifier(issuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}, &oidc.Config{
					ClientID:             client,
					SupportedSigningAlgs: []string{a.name},
				})
				ctx := context.Background()
				return func(int) error {
					_, err := v.Verify(ctx, raw)
					return err
				}
			}},
			{"go-jwt-middleware", func(b *testing.B) func(int) error {
				v, err := validator.New(
					func(context.Context) (any, error) { return pub, nil },
					validator.SignatureAlgorithm(a.name), issuer, []string{client},
					validator.WithAllowedClockSkew(30*time.Second),
				)
				if err != nil {
					b.Fatal(err)
				}
				return serve(jwtmiddleware.New(v.ValidateToken).CheckJWT(empty), raw)
			}},
		}
		for _, impl := range impls {
			b.Run("alg="+a.name+"/impl="+impl.name, func(b *testing.B) {
				paired.Run(b, paired.Pair{Floor: floor, Impl: impl.op(b)})
			})
		}
	}
}
