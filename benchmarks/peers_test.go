package benchmarks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
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

// serve runs h on r once per iteration; any status written is a failure,
// since the handler behind the middlewares writes nothing.
func serve(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	w := &writer{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != 0 {
			b.Fatalf("status %d", w.code)
		}
	}
}

var empty = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// ourChain is selfservice's standard chain of four middlewares.
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
	return middleware.Localize(i18n.Default())(
		middleware.DeviceHeaders(
			middleware.RequireClientID(memstore.NewClientRegistry(store.Client{ID: client}), nil)(
				middleware.RequireBearer(v)(empty))))
}

// BenchmarkPeers checks the same token with the same key in every
// implementation; "benchstat -col /impl" shows each as a ratio to the floor:
//
//	floor                    golang-jwt parses and verifies, nothing else
//	selfservice-chain        our four middlewares in front of an empty handler
//	selfservice-chain-cached the same with the verified-token cache on (a repeated token)
//	go-oidc                  go-oidc's IDTokenVerifier.Verify with a StaticKeySet
//	go-jwt-middleware        go-jwt-middleware's CheckJWT with its validator, in front of an empty handler
func BenchmarkPeers(b *testing.B) {
	for _, a := range algs(b) {
		raw := a.token(b)
		pub := a.key.Public()
		name := "alg=" + a.name + "/impl="
		b.Run(name+"floor", func(b *testing.B) {
			p := jwt.NewParser(jwt.WithValidMethods([]string{a.name}))
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"selfservice-chain", func(b *testing.B) {
			serve(b, ourChain(b, pub, idtoken.CacheOptions{}), request(raw))
		})
		b.Run(name+"selfservice-chain-cached", func(b *testing.B) {
			serve(b, ourChain(b, pub, idtoken.CacheOptions{MaxEntries: 10_000}), request(raw))
		})
		b.Run(name+"go-oidc", func(b *testing.B) {
			v := oidc.NewVerifier(issuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}, &oidc.Config{
				ClientID:             client,
				SupportedSigningAlgs: []string{a.name},
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"go-jwt-middleware", func(b *testing.B) {
			v, err := validator.New(
				func(context.Context) (any, error) { return pub, nil },
				validator.SignatureAlgorithm(a.name), issuer, []string{client},
				validator.WithAllowedClockSkew(30*time.Second),
			)
			if err != nil {
				b.Fatal(err)
			}
			serve(b, jwtmiddleware.New(v.ValidateToken).CheckJWT(empty), request(raw))
		})
	}
}
