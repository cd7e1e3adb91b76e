package idtoken_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
)

const (
	testIssuer = "https://id.example.com"
	testClient = "app-1"
	testUser   = "user-42"
)

// testNow is the verifiers' clock, so that time claims are exact.
var testNow = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// discard is the Verifier logger in tests: fetch failures are expected.
var discard = slog.New(slog.DiscardHandler)

// testKeys are the signing keys of the tests, generated once per run.
type testKeys struct {
	rs    *rsa.PrivateKey   // RS256, kid "rs-1"
	ps    *rsa.PrivateKey   // PS256, kid "ps-1"
	es    *ecdsa.PrivateKey // ES256, kid "es-1"
	ed    ed25519.PrivateKey
	other *rsa.PrivateKey   // published nowhere
	enc   *ecdsa.PrivateKey // published with use "enc", kid "enc-1"
}

var loadKeys = sync.OnceValues(func() (*testKeys, error) {
	var k testKeys
	var err error
	if k.rs, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.ps, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.es, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if k.enc, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	return &k, nil
})

func keys(t testing.TB) *testKeys {
	t.Helper()
	k, err := loadKeys()
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	return k
}

// published is one key of a JWKS.
type published struct {
	key crypto.PublicKey
	kid string
	alg jwkset.ALG
	use jwkset.USE
}

// standardSet is the JWKS of the issuer in most tests.
func standardSet(k *testKeys) []published {
	return []published{
		{&k.rs.PublicKey, "rs-1", jwkset.AlgRS256, jwkset.UseSig},
		{&k.ps.PublicKey, "ps-1", jwkset.AlgPS256, jwkset.UseSig},
		{&k.es.PublicKey, "es-1", jwkset.AlgES256, jwkset.UseSig},
		{k.ed.Public(), "ed-1", jwkset.AlgEdDSA, jwkset.UseSig},
		{&k.enc.PublicKey, "enc-1", jwkset.AlgES256, jwkset.UseEnc},
	}
}

// jwksJSON renders a JWK Set of public keys.
func jwksJSON(t testing.TB, keys ...published) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, p := range keys {
		jwk, err := jwkset.NewJWKFromKey(p.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: p.kid, ALG: p.alg, USE: p.use},
		})
		if err != nil {
			t.Fatalf("JWK %s: %v", p.kid, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwksServer serves a JWK Set that a test can swap, fail or hang, and counts
// the fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	status  atomic.Int32
	hang    atomic.Bool
	drop    atomic.Bool // close the connection without an answer
	fetches atomic.Int32
	release chan struct{}
	// hold makes each fetch report on entered and wait for unhold, then
	// answer as usual (hang never answers).
	hold    atomic.Bool
	entered chan struct{}
	held    chan struct{}
	unhold  func()
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{release: make(chan struct{}), entered: make(chan struct{}, 16), held: make(chan struct{})}
	s.unhold = sync.OnceFunc(func() { close(s.held) })
	s.setBody(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	// Cleanups run last-registered first: hanging and held handlers are
	// released before Close waits for them.
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) })
	t.Cleanup(s.unhold)
	return s
}

func (s *jwksServer) setBody(b []byte) { s.body.Store(&b) }

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	if s.hold.Load() {
		s.entered <- struct{}{}
		select {
		case <-s.held:
		case <-r.Context().Done():
			return
		}
	}
	if s.hang.Load() {
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
		return
	}
	if s.drop.Load() {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	if st := int(s.status.Load()); st != http.StatusOK {
		http.Error(w, "unavailable", st)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(*s.body.Load())
}

// newVerifier builds a Verifier with the test issuer and clock, applies
// edit, and closes it when the test ends.
func newVerifier(t testing.TB, edit func(*idtoken.Options)) *idtoken.Verifier {
	t.Helper()
	opts := idtoken.Options{Issuer: testIssuer, Now: fixedNow, Logger: discard}
	edit(&opts)
	v, err := idtoken.New(opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// claims returns valid id_token claims for testClient, changed by edits.
func claims(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer,
		"sub": testUser,
		"aud": testClient,
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(10 * time.Minute).Unix(),
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

func setClaim(key string, value any) func(jwt.MapClaims) {
	return func(c jwt.MapClaims) { c[key] = value }
}

func dropClaim(key string) func(jwt.MapClaims) {
	return func(c jwt.MapClaims) { delete(c, key) }
}

// signer signs tokens with one key under one kid ("" for none).
type signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
}

func (s signer) sign(t testing.TB, c jwt.MapClaims, header ...func(map[string]any)) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, c)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	for _, h := range header {
		h(tok.Header)
	}
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return raw
}

func rs256(k *testKeys) signer { return signer{jwt.SigningMethodRS256, k.rs, "rs-1"} }
func ps256(k *testKeys) signer { return signer{jwt.SigningMethodPS256, k.ps, "ps-1"} }
func es256(k *testKeys) signer { return signer{jwt.SigningMethodES256, k.es, "es-1"} }
func eddsa(k *testKeys) signer { return signer{jwt.SigningMethodEdDSA, k.ed, "ed-1"} }

// tamper rewrites the payload of raw with edit and keeps its signature.
func tamper(t testing.TB, raw string, edit func(jwt.MapClaims)) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	payload, err = json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// bearerRequest returns a request with the device headers, X-client-id and
// Authorization: Bearer raw.
func bearerRequest(raw string) *http.Request {
	h := handlertest.DeviceHeaders()
	h.Set("X-Client-Id", testClient)
	h.Set("Authorization", "Bearer "+raw)
	return handlertest.NewRequest(h)
}
