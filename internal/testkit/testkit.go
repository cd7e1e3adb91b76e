// Package testkit holds what the end-to-end tests of several packages share:
// a signing key and id_tokens for it, a complete set of request headers,
// and a client that reads {"error_code","error_msg"} answers.
package testkit

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/store"
)

// The issuer, client and key id the tokens of Token carry.
const (
	Issuer = "https://id.example.test"
	Client = "client-1"
	KID    = "key-1"
)

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

// Key returns the RSA key tokens are signed with, made once per test binary
// because RSA generation is slow.
func Key() *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		key = k
	})
	return key
}

// Verifier returns a middleware.Verifier that trusts Key under KID.
func Verifier(t testing.TB) *idtoken.Verifier {
	t.Helper()
	pub := &Key().PublicKey
	v, err := idtoken.New(idtoken.Options{
		Issuer: Issuer,
		Keyfunc: func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != KID {
				return nil, errors.New("unknown kid")
			}
			return pub, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Token signs an id_token for sub issued to Client; edit may change the
// claims before signing.
func Token(t testing.TB, sub string, edit func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   sub,
		Audience:  jwt.ClaimStrings{Client},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	if edit != nil {
		edit(&c)
	}
	return Sign(t, c)
}

// Sign signs any claims with Key under KID, for tokens Token cannot make
// (auth_time, azp).
func Sign(t testing.TB, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = KID
	s, err := tok.SignedString(Key())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Headers returns a complete, valid set of request headers for Client,
// without Authorization; lang, when set, goes in X-L.
func Headers(lang string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-operating-sys-version", "windows10.1.1")
	h.Set("X-device-fingerprint", "156aysdna213sc50")
	h.Set("X-device-ip", "192.168.1.2")
	h.Set("X-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)")
	h.Set("X-client-id", Client)
	if lang != "" {
		h.Set("X-L", lang)
	}
	return h
}

// Reply is an answer of the API.
type Reply struct {
	Status int
	Code   string `json:"error_code"`
	Msg    string `json:"error_msg"`
	Raw    string
	Header http.Header
}

// Do sends one request and decodes the answer; a body that is not JSON
// fails t, and so does an exchange that openapi.yaml does not describe
// (openapitest.Check), so that every suite keeps the document honest.
func Do(t testing.TB, c *http.Client, method, url string, h http.Header, body string) Reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	openapitest.Check(t, req, []byte(body), resp.StatusCode, resp.Header, raw)
	r := Reply{Status: resp.StatusCode, Raw: string(raw), Header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("body %q is not JSON: %v", raw, err)
		}
	}
	return r
}

// LooseBudgets returns budgets that a load test from one address never
// reaches: a million events a second each, so that the sliding logs stay
// short.
func LooseBudgets() selfservice.Budgets {
	loose := []store.Limit{{N: 1_000_000, Window: time.Second}}
	return selfservice.Budgets{SendsPerEmail: loose, SendsPerIP: loose, WrongCodesPerUser: loose, WrongCodesPerIP: loose,
		ChangesPerUser: loose, RevertsPerIP: loose}
}

// Quote returns s as a JSON string.
func Quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// NopWriter is a ResponseWriter for benchmarks that keeps nothing but the
// status. Its header map is kept across iterations: every iteration sets
// the same keys, so it does not grow, and clearing it would charge the
// harness's work to the handler.
type NopWriter struct {
	h    http.Header
	code int
}

// NewNopWriter returns an empty NopWriter.
func NewNopWriter() *NopWriter { return &NopWriter{h: make(http.Header)} }

func (w *NopWriter) Header() http.Header         { return w.h }
func (w *NopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *NopWriter) WriteHeader(code int)        { w.code = code }

// Status returns the status written since the last Reset, or 0.
func (w *NopWriter) Status() int { return w.code }

// Reset forgets the status.
func (w *NopWriter) Reset() { w.code = 0 }

// ServeLoop runs h on r once per benchmark iteration, with one reused
// NopWriter so that the harness does not dominate what is measured, and
// fails b when anything writes a status: the requests of the benchmarks
// that use it are good ones.
func ServeLoop(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	w := NewNopWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
		if w.code != 0 {
			b.Fatalf("status %d", w.code)
		}
	}
}

// SyncBuffer is a bytes.Buffer that goroutines (a server's, a process's
// output copiers, a logger's) may write while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
