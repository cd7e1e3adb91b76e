package selfservice

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// benchEnv is the whole API over memory stores with a static RS256 key.
type benchEnv struct {
	handler http.Handler
	codes   *memstore.CodeStore
	secret  []byte
	token   string
	key     *rsa.PrivateKey
}

const benchClient = "bench-client"

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := middleware.NewVerifier(middleware.VerifierOptions{
		Issuer:  "https://id.example.test",
		Keyfunc: func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{codes: memstore.NewCodeStore(), secret: []byte(strings.Repeat("k", MinCodeSecretLen)), key: key}
	_, canonical, _ := CanonicalEmail("user@example.com")
	svc, err := New(Config{
		Users:      memstore.NewUserStore(store.User{ID: "u1", Email: "user@example.com", CanonicalEmail: canonical}),
		Codes:      env.codes,
		Limiter:    memstore.NewSendLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: benchClient}),
		Verifier:   verifier,
		Mailer:     MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha:    AllowAllCaptcha,
		CodeSecret: env.secret,
		// Every iteration mails a code to the same address.
		SendInterval: time.Nanosecond,
		DailySends:   1 << 30,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if env.handler, err = svc.Handler(); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: "https://id.example.test", Subject: "u1", Audience: jwt.ClaimStrings{benchClient},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	tok.Header["kid"] = "k1"
	if env.token, err = tok.SignedString(key); err != nil {
		b.Fatal(err)
	}
	return env
}

func benchRequest(path, token, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Operating-Sys-Version", "windows10.1.1")
	r.Header.Set("X-Device-Fingerprint", "156aysdna213sc50")
	r.Header.Set("X-Device-Ip", "192.168.1.2")
	r.Header.Set("X-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)")
	r.Header.Set("X-Client-Id", benchClient)
	r.Header.Set("X-L", "en")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// BenchmarkFloorRS256 is the floor: parse and verify the benchmark's token
// with golang-jwt and the same key, nothing else.
func BenchmarkFloorRS256(b *testing.B) {
	env := newBenchEnv(b)
	p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}))
	keyfunc := func(*jwt.Token) (any, error) { return &env.key.PublicKey, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseWithClaims(env.token, &jwt.RegisteredClaims{}, keyfunc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateEmail is the full update-email request on memory stores:
// the four middlewares, the JSON body, the email rules, the code check and
// the store update. Each iteration re-arms the code with one CodeStore.Put
// and flips the user between two addresses.
func BenchmarkUpdateEmail(b *testing.B) {
	env := newBenchEnv(b)
	emails := [2]string{"next@example.com", "user@example.com"}
	bodies := [2]string{
		`{"email":"next@example.com","verify_code":"123456"}`,
		`{"email":"user@example.com","verify_code":"123456"}`,
	}
	hashes := [2][]byte{
		hashCode(env.secret, PurposeUpdateEmail, emails[0], "123456"),
		hashCode(env.secret, PurposeUpdateEmail, emails[1], "123456"),
	}
	exp := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i & 1
		i++
		_ = env.codes.Put(b.Context(), store.CodeKey{Purpose: PurposeUpdateEmail, Email: emails[k]}, hashes[k], exp)
		w := httptest.NewRecorder()
		env.handler.ServeHTTP(w, benchRequest(UpdateEmailPath, env.token, bodies[k]))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkSendCode is one send-code request on memory stores.
func BenchmarkSendCode(b *testing.B) {
	env := newBenchEnv(b)
	body := `{"email":"next@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		env.handler.ServeHTTP(w, benchRequest(SendCodePath, "", body))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

func BenchmarkCanonicalEmail(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := CanonicalEmail("Alice.Smith+tag@Example.COM"); err != nil {
			b.Fatal(err)
		}
	}
}
