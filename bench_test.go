package selfservice

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// The benchmarks of the whole API compare with BenchmarkFloor, which parses
// and verifies the same token with golang-jwt and the same key, nothing
// else; BENCHMARKS.md gives the targets as ratios between them. Requests and
// the ResponseWriter are reused across iterations so that the harness costs
// little beside what is measured.

const (
	benchIssuer = "https://id.example.test"
	benchClient = "bench-client"
	benchUser   = "u1"
	benchCode   = "123456"
)

// benchEmails are the two addresses the benchmark user flips between, one
// change per iteration; of equal length, so one request serves both.
var benchEmails = [2]string{"next@example.com", "user@example.com"}

// benchAlg is a signing algorithm with a key made once per test binary.
type benchAlg struct {
	name   string
	method jwt.SigningMethod
	key    func() (crypto.Signer, error)
}

var benchAlgs = []benchAlg{
	{"RS256", jwt.SigningMethodRS256, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }},
	{"ES256", jwt.SigningMethodES256, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
	{"EdDSA", jwt.SigningMethodEdDSA, func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}},
}

var benchKeys sync.Map // algorithm name -> crypto.Signer

func (a benchAlg) signer(b *testing.B) crypto.Signer {
	b.Helper()
	if k, ok := benchKeys.Load(a.name); ok {
		return k.(crypto.Signer)
	}
	k, err := a.key()
	if err != nil {
		b.Fatal(err)
	}
	k2, _ := benchKeys.LoadOrStore(a.name, k)
	return k2.(crypto.Signer)
}

// token is an id_token of benchUser for benchClient, valid for an hour.
func (a benchAlg) token(b *testing.B) string {
	b.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(a.method, jwt.RegisteredClaims{
		Issuer: benchIssuer, Subject: benchUser, Audience: jwt.ClaimStrings{benchClient},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(a.signer(b))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// benchStores are the stores one benchmark runs on.
type benchStores struct {
	users   store.UserStore
	clients store.ClientRegistry
	codes   store.CodeStore
	limiter store.Limiter
	remote  bool // a network round trip per call: arm codes outside the timer
}

// benchUserSeed is the user and client every store starts with.
func benchUserSeed(b *testing.B) (store.User, store.Client) {
	b.Helper()
	email, canonical, err := CanonicalEmail(benchEmails[1])
	if err != nil {
		b.Fatal(err)
	}
	return store.User{ID: benchUser, Email: email, CanonicalEmail: canonical}, store.Client{ID: benchClient}
}

func memoryStores(b *testing.B) benchStores {
	u, c := benchUserSeed(b)
	return benchStores{
		users:   memstore.NewUserStore(u),
		clients: memstore.NewClientRegistry(c),
		codes:   memstore.NewCodeStore(),
		limiter: memstore.NewLimiter(),
	}
}

// sqlStores puts users and clients in db, migrated and seeded, and keeps
// codes in memory unless codes is given.
func sqlStores(b *testing.B, db *sql.DB, d sqlstore.Dialect) benchStores {
	b.Helper()
	if err := sqlstore.Migrate(b.Context(), db, d); err != nil {
		b.Fatal(err)
	}
	u, c := benchUserSeed(b)
	users, clients := sqlstore.NewUserStore(db, d), sqlstore.NewClientRegistry(db, d)
	if err := users.CreateUser(b.Context(), u); err != nil {
		b.Fatal(err)
	}
	if err := clients.CreateClient(b.Context(), c); err != nil {
		b.Fatal(err)
	}
	return benchStores{users: users, clients: clients, codes: memstore.NewCodeStore(), limiter: memstore.NewLimiter(), remote: d == sqlstore.Postgres}
}

func sqliteDB(b *testing.B) *sql.DB {
	b.Helper()
	dsn := "file:" + filepath.Join(b.TempDir(), "bench.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.PingContext(b.Context()); err != nil {
		b.Fatal(err)
	}
	return db
}

// postgresDB returns a pool on a schema of its own, dropped when b ends;
// it skips b when SELFSERVICE_TEST_POSTGRES is unset.
func postgresDB(b *testing.B) *sql.DB {
	b.Helper()
	return pgtest.Open(b, "")
}

// redisCodes replaces the code store and send limiter of s with Redis ones
// under a key prefix of their own, deleted when b ends; it skips b when
// SELFSERVICE_TEST_REDIS is unset.
func redisCodes(b *testing.B, s benchStores) benchStores {
	b.Helper()
	opts, err := redis.ParseURL(testenv.Lookup(b, testenv.Redis))
	if err != nil {
		b.Fatalf("%s: %v", testenv.Redis, err)
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(b.Context()).Err(); err != nil {
		rdb.Close()
		b.Fatalf("ping Redis: %v", err)
	}
	prefix := "selfservice-bench:" + randomHex(8) + ":"
	b.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	s.codes = redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
	s.limiter = redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	s.remote = true
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchEnv is the whole API, behind its standard chain, over st.
type benchEnv struct {
	handler http.Handler
	st      benchStores
	secret  []byte
	token   string
}

func newBenchEnv(b *testing.B, alg benchAlg, st benchStores, cache idtoken.CacheOptions) *benchEnv {
	b.Helper()
	pub := alg.signer(b).Public()
	verifier, err := idtoken.New(idtoken.Options{
		Issuer:  benchIssuer,
		Keyfunc: func(*jwt.Token) (any, error) { return pub, nil },
		Cache:   cache,
	})
	if err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{st: st, secret: []byte(strings.Repeat("k", MinCodeSecretLen)), token: alg.token(b)}
	loose := []store.Limit{{N: 1 << 30, Window: time.Second}}
	svc, err := New(Config{
		Users:      st.users,
		Codes:      st.codes,
		Limiter:    st.limiter,
		Clients:    st.clients,
		Verifier:   verifier,
		Mailer:     MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha:    AllowAllCaptcha{},
		CodeSecret: env.secret,
		// Every iteration mails a code to the same address and the
		// budgets would soon refuse; a window of a second keeps the logs
		// short.
		Budgets: Budgets{
			SendsPerEmail: loose, SendsPerIP: loose, WrongCodesPerUser: loose, WrongCodesPerIP: loose,
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	env.handler = svc.Handler()
	return env
}

// benchWriter is a ResponseWriter that keeps only the status. Its header
// map is reused: the same few keys are set on every iteration.
type benchWriter struct {
	h    http.Header
	code int
	body int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.body += len(p)
	return len(p), nil
}
func (w *benchWriter) WriteHeader(code int) { w.code = code }

// benchBody is a request body that can be refilled for the next iteration.
type benchBody struct{ strings.Reader }

func (*benchBody) Close() error { return nil }

// benchRequest is a request with every header the chain reads, and its
// refillable body.
func benchRequest(path, token, body string) (*http.Request, *benchBody) {
	b := &benchBody{}
	b.Reset(body)
	r := httptest.NewRequest(http.MethodPost, path, nil)
	r.Body = b
	r.ContentLength = int64(len(body))
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
	return r, b
}

var _ io.ReadCloser = (*benchBody)(nil)

// BenchmarkFloor is the floor: parse and verify the benchmark's token with
// golang-jwt and the same key, nothing else.
func BenchmarkFloor(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.name, func(b *testing.B) {
			raw := alg.token(b)
			pub := alg.signer(b).Public()
			p := jwt.NewParser(jwt.WithValidMethods([]string{alg.name}))
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdateEmail is the full update-email request on memory stores:
// the four middlewares, the JSON body, the email rules, the code check and
// the store update, one email change per iteration. Re-arming the code (one
// memstore Put) is inside the timed loop.
func BenchmarkUpdateEmail(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.name, func(b *testing.B) {
			runUpdateEmail(b, newBenchEnv(b, alg, memoryStores(b), idtoken.CacheOptions{}))
		})
	}
}

// BenchmarkUpdateEmailCached is BenchmarkUpdateEmail with the verifier's
// token cache on: the same token every time, so all but the first
// iteration skip the signature check and what is left is our own work.
func BenchmarkUpdateEmailCached(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.name, func(b *testing.B) {
			runUpdateEmail(b, newBenchEnv(b, alg, memoryStores(b), idtoken.CacheOptions{MaxEntries: 1000}))
		})
	}
}

// BenchmarkUpdateEmailStores is the full update-email request with RS256 on
// the real stores: users and clients in SQLite or PostgreSQL, codes in
// memory or Redis. PostgreSQL and Redis run when their variables are set
// (see the README's Testing section); re-arming the code in a remote store
// is outside the timer.
func BenchmarkUpdateEmailStores(b *testing.B) {
	rs := benchAlgs[0]
	b.Run("sqlite", func(b *testing.B) {
		runUpdateEmail(b, newBenchEnv(b, rs, sqlStores(b, sqliteDB(b), sqlstore.SQLite), idtoken.CacheOptions{}))
	})
	b.Run("postgres", func(b *testing.B) {
		runUpdateEmail(b, newBenchEnv(b, rs, sqlStores(b, postgresDB(b), sqlstore.Postgres), idtoken.CacheOptions{}))
	})
	b.Run("redis", func(b *testing.B) {
		runUpdateEmail(b, newBenchEnv(b, rs, redisCodes(b, memoryStores(b)), idtoken.CacheOptions{}))
	})
	b.Run("postgres+redis", func(b *testing.B) {
		st := redisCodes(b, sqlStores(b, postgresDB(b), sqlstore.Postgres))
		runUpdateEmail(b, newBenchEnv(b, rs, st, idtoken.CacheOptions{}))
	})
}

func runUpdateEmail(b *testing.B, env *benchEnv) {
	b.Helper()
	var bodies, hashes [2]string
	for k, email := range benchEmails {
		bodies[k] = `{"email":"` + email + `","verify_code":"` + benchCode + `"}`
		hashes[k] = string(newCodeHasher(env.secret).hash(PurposeUpdateEmail, email, benchCode))
	}
	r, body := benchRequest(UpdateEmailPath, env.token, bodies[0])
	w := &benchWriter{h: make(http.Header)}
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()
	arm := func(k int) {
		key := store.CodeKey{Purpose: PurposeUpdateEmail, Email: benchEmails[k]}
		if err := env.st.codes.Put(ctx, key, []byte(hashes[k]), exp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i & 1
		i++
		if env.st.remote {
			b.StopTimer()
			arm(k)
			b.StartTimer()
		} else {
			arm(k)
		}
		body.Reset(bodies[k])
		w.code = 0
		env.handler.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("iteration %d: status %d", i, w.code)
		}
	}
}

// BenchmarkSendCode is one send-code request (body, email rules, captcha,
// send limits, code stored and mailed), on memory stores and with Redis.
func BenchmarkSendCode(b *testing.B) {
	rs := benchAlgs[0]
	b.Run("memory", func(b *testing.B) {
		runSendCode(b, newBenchEnv(b, rs, memoryStores(b), idtoken.CacheOptions{}))
	})
	b.Run("redis", func(b *testing.B) {
		runSendCode(b, newBenchEnv(b, rs, redisCodes(b, memoryStores(b)), idtoken.CacheOptions{}))
	})
}

func runSendCode(b *testing.B, env *benchEnv) {
	b.Helper()
	const payload = `{"email":"next@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`
	r, body := benchRequest(SendCodePath, "", payload)
	w := &benchWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		w.code = 0
		env.handler.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
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
