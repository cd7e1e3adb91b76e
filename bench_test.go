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
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// The benchmarks of the whole API are paired (internal/paired): each runs
// the floor, golang-jwt parsing and verifying the same token with the same
// key and nothing else, and the request in alternating batches of a few
// milliseconds, and reports their ratios, x-wall and x-cpu, which
// BENCHMARKS.md states its targets in. Run them with
//
//	go test -run '^$' -bench VsFloor -benchtime 100x -count 10 . | tee root.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu OR x-wall-sum OR x-cpu-sum)' root.txt
//
// or benchmarks/run.sh, which runs every package's. Requests and
// ResponseWriters are built once per worker and reused, so that the harness
// costs little beside what is measured; every request's answer is checked.

const (
	benchIssuer = "https://id.example.test"
	benchClient = "bench-client"
	benchCode   = "123456"
)

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

// token is an id_token of sub for benchClient, valid for an hour.
func (a benchAlg) token(b *testing.B, sub string) string {
	b.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(a.method, jwt.RegisteredClaims{
		Issuer: benchIssuer, Subject: sub, Audience: jwt.ClaimStrings{benchClient},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(a.signer(b))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// benchWorkers are the worker counts of the paired benchmarks: one, which
// leaves the other cores to the runtime, the garbage collector and the
// notice workers, and one per core, the server fully loaded.
func benchWorkers() []int {
	if n := runtime.GOMAXPROCS(0); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// benchUserID is the user that worker w changes the address of.
func benchUserID(w int) string { return "u" + strconv.Itoa(w) }

// benchEmails are the two addresses worker w's user flips between, one
// change per request; of equal length, so that one request serves both.
func benchEmails(w int) [2]string {
	return [2]string{fmt.Sprintf("next%d@example.com", w), fmt.Sprintf("user%d@example.com", w)}
}

// benchStores are the stores one benchmark runs on.
type benchStores struct {
	users   store.ChangeStore
	clients store.ClientRegistry
	codes   store.CodeStore
	limiter store.Limiter
}

// benchSeed is one user per worker, each at the second of its addresses,
// and the client.
func benchSeed(b *testing.B, workers int) ([]store.User, store.Client) {
	b.Helper()
	var users []store.User
	for w := range workers {
		email, canonical, err := CanonicalEmail(benchEmails(w)[1])
		if err != nil {
			b.Fatal(err)
		}
		users = append(users, store.User{ID: benchUserID(w), Email: email, CanonicalEmail: canonical})
	}
	return users, store.Client{ID: benchClient}
}

func memoryStores(b *testing.B, workers int) benchStores {
	users, client := benchSeed(b, workers)
	return benchStores{
		users:   memstore.NewUserStore(users...),
		clients: memstore.NewClientRegistry(client),
		codes:   memstore.NewCodeStore(),
		limiter: memstore.NewLimiter(),
	}
}

// sqlStores puts users and clients in db, migrated and seeded, and keeps
// codes in memory.
func sqlStores(b *testing.B, db *sql.DB, d sqlstore.Dialect, workers int) benchStores {
	b.Helper()
	if err := sqlstore.Migrate(b.Context(), db, d); err != nil {
		b.Fatal(err)
	}
	seed, client := benchSeed(b, workers)
	users, clients := sqlstore.NewUserStore(db, d), sqlstore.NewClientRegistry(db, d)
	for _, u := range seed {
		if err := users.CreateUser(b.Context(), u); err != nil {
			b.Fatal(err)
		}
	}
	if err := clients.CreateClient(b.Context(), client); err != nil {
		b.Fatal(err)
	}
	return benchStores{users: users, clients: clients, codes: memstore.NewCodeStore(), limiter: memstore.NewLimiter()}
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
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchEnv is the whole API, behind its standard chain, over st, with the
// floor of the same algorithm and what each worker reuses.
type benchEnv struct {
	handler http.Handler
	st      benchStores
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc
	workers []*benchWorker
}

// benchWorker is what one worker of a paired benchmark keeps apart: its
// user's token, request, body and ResponseWriter, and the two changes it
// alternates between.
type benchWorker struct {
	token  string
	req    *http.Request
	body   *benchBody
	w      *benchWriter
	keys   [2]store.CodeKey
	hashes [2][]byte
	bodies [2]string
	n      int
	exp    time.Time // of the codes arm stores: an hour after the set-up
}

func newBenchEnv(b *testing.B, alg benchAlg, st benchStores, cache idtoken.CacheOptions, workers int) *benchEnv {
	b.Helper()
	pub := alg.signer(b).Public()
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	verifier, err := idtoken.New(idtoken.Options{
		Issuer:  benchIssuer,
		Keyfunc: keyfunc,
		Cache:   cache,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(verifier.Close)
	secret := []byte(strings.Repeat("k", MinCodeSecretLen))
	loose := []store.Limit{{N: 1 << 30, Window: time.Second}}
	svc, err := New(Config{
		Users:      st.users,
		Codes:      st.codes,
		Limiter:    st.limiter,
		Clients:    st.clients,
		Verifier:   verifier,
		Mailer:     MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha:    AllowAllCaptcha{},
		CodeSecret: secret,
		// Every request mails a code to the same address and the budgets
		// would soon refuse; a window of a second keeps the limiter's
		// state small.
		Budgets: Budgets{
			SendsPerEmail: loose, SendsPerIP: loose, WrongCodesPerUser: loose, WrongCodesPerIP: loose,
			ChangesPerUser: loose, RevertsPerIP: loose,
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
	})
	env := &benchEnv{
		handler: svc.Handler(),
		st:      st,
		parser:  jwt.NewParser(jwt.WithValidMethods([]string{alg.name})),
		keyfunc: keyfunc,
	}
	hasher := newCodeHasher(secret)
	for w := range workers {
		bw := &benchWorker{token: alg.token(b, benchUserID(w)), w: &benchWriter{h: make(http.Header)}, exp: time.Now().Add(time.Hour)}
		for k, email := range benchEmails(w) {
			bw.bodies[k] = `{"email":"` + email + `","verify_code":"` + benchCode + `"}`
			bw.keys[k] = store.CodeKey{Purpose: PurposeUpdateEmail, Email: email}
			bw.hashes[k] = hasher.hash(PurposeUpdateEmail, email, benchCode)
		}
		bw.req, bw.body = benchRequest(UpdateEmailPath, bw.token, bw.bodies[0])
		env.workers = append(env.workers, bw)
	}
	return env
}

// floor parses and verifies worker w's token with golang-jwt and the key.
func (env *benchEnv) floor(w int) error {
	_, err := env.parser.ParseWithClaims(env.workers[w].token, &jwt.RegisteredClaims{}, env.keyfunc)
	return err
}

// arm stores the code of worker w's next change, as a send-code would.
// Codes are single-use, so every change needs one: a Put per request, which
// the measured requests include.
func (env *benchEnv) arm(w int) error {
	bw := env.workers[w]
	k := bw.n & 1
	return env.st.codes.Put(context.Background(), bw.keys[k], bw.hashes[k], bw.exp)
}

// updateEmail re-arms worker w's code and sends its update-email request,
// which must be answered 200.
func (env *benchEnv) updateEmail(w int) error {
	if err := env.arm(w); err != nil {
		return err
	}
	bw := env.workers[w]
	k := bw.n & 1
	bw.n++
	bw.body.Reset(bw.bodies[k])
	bw.w.code = 0
	env.handler.ServeHTTP(bw.w, bw.req)
	if bw.w.code != http.StatusOK {
		return fmt.Errorf("update-email %d: status %d", bw.n, bw.w.code)
	}
	return nil
}

// benchWriter is a ResponseWriter that keeps only the status. Its header
// map is reused: the same few keys are set on every request.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}
func (w *benchWriter) WriteHeader(code int) { w.code = code }

// benchBody is a request body that can be refilled for the next request.
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

// BenchmarkUpdateEmailVsFloor is the full update-email request on memory
// stores against the floor, per algorithm: the middleware chain, the
// id_token's verification, the JSON body, the email rules, the budgets, the
// code check, the store update and the notice handed to its queue, plus
// re-arming the code (one memstore Put) for the next request. workers=1
// runs one request at a time and leaves the other cores to the runtime,
// the garbage collector and the notice workers, whose CPU x-cpu counts;
// workers=GOMAXPROCS loads every core, each worker changing a user of its
// own.
func BenchmarkUpdateEmailVsFloor(b *testing.B) {
	for _, alg := range benchAlgs {
		for _, workers := range benchWorkers() {
			b.Run("alg="+alg.name+"/workers="+strconv.Itoa(workers), func(b *testing.B) {
				env := newBenchEnv(b, alg, memoryStores(b, workers), idtoken.CacheOptions{}, workers)
				paired.Run(b, paired.Pair{Floor: env.floor, Impl: env.updateEmail, Workers: workers})
			})
		}
	}
}

// BenchmarkUpdateEmailCachedVsFloor is BenchmarkUpdateEmailVsFloor (one
// worker) with the verifier's token cache on: the same token every time,
// so the signature check is skipped and x-wall is our own work per
// request, in verifications of the floor.
func BenchmarkUpdateEmailCachedVsFloor(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run("alg="+alg.name, func(b *testing.B) {
			env := newBenchEnv(b, alg, memoryStores(b, 1), idtoken.CacheOptions{MaxEntries: 1000}, 1)
			paired.Run(b, paired.Pair{Floor: env.floor, Impl: env.updateEmail})
		})
	}
}

// BenchmarkUpdateEmailStoresVsFloor is the full update-email request with
// RS256, one worker, on the real stores: users and clients in SQLite or
// PostgreSQL, codes and budgets in memory or Redis. impl=update is the
// request with its code re-armed, impl=arm the re-arming alone (a memstore
// Put, or a Redis round trip), to subtract. PostgreSQL and Redis run when
// their variables are set (see the README's Testing section).
func BenchmarkUpdateEmailStoresVsFloor(b *testing.B) {
	rs := benchAlgs[0]
	cases := []struct {
		name   string
		stores func(b *testing.B) benchStores
	}{
		{"sqlite", func(b *testing.B) benchStores { return sqlStores(b, sqliteDB(b), sqlstore.SQLite, 1) }},
		{"postgres", func(b *testing.B) benchStores { return sqlStores(b, postgresDB(b), sqlstore.Postgres, 1) }},
		{"redis", func(b *testing.B) benchStores { return redisCodes(b, memoryStores(b, 1)) }},
		{"postgres+redis", func(b *testing.B) benchStores {
			return redisCodes(b, sqlStores(b, postgresDB(b), sqlstore.Postgres, 1))
		}},
	}
	for _, c := range cases {
		b.Run("stores="+c.name+"/impl=update", func(b *testing.B) {
			env := newBenchEnv(b, rs, c.stores(b), idtoken.CacheOptions{}, 1)
			paired.Run(b, paired.Pair{Floor: env.floor, Impl: env.updateEmail})
		})
		b.Run("stores="+c.name+"/impl=arm", func(b *testing.B) {
			env := newBenchEnv(b, rs, c.stores(b), idtoken.CacheOptions{}, 1)
			paired.Run(b, paired.Pair{Floor: env.floor, Impl: env.arm})
		})
	}
}

// BenchmarkSendCodeVsFloor is one send-code request (body, email rules,
// captcha, send budgets, code stored and mailed to a mailer that returns at
// once) against the RS256 floor, on memory stores and with Redis codes and
// budgets: send-code checks no token, so x-wall is its whole cost in
// verifications.
func BenchmarkSendCodeVsFloor(b *testing.B) {
	rs := benchAlgs[0]
	const payload = `{"email":"next0@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`
	for _, name := range []string{"memory", "redis"} {
		b.Run("stores="+name, func(b *testing.B) {
			st := memoryStores(b, 1)
			if name == "redis" {
				st = redisCodes(b, st)
			}
			env := newBenchEnv(b, rs, st, idtoken.CacheOptions{}, 1)
			r, body := benchRequest(SendCodePath, "", payload)
			w := &benchWriter{h: make(http.Header)}
			send := func(int) error {
				body.Reset(payload)
				w.code = 0
				env.handler.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					return fmt.Errorf("send-code: status %d", w.code)
				}
				return nil
			}
			paired.Run(b, paired.Pair{Floor: env.floor, Impl: send})
		})
	}
}

// BenchmarkCanonicalEmail is the email rules alone, in absolute time: an
// ASCII address, and one with an internationalised local part and domain.
func BenchmarkCanonicalEmail(b *testing.B) {
	for _, c := range []struct{ name, email string }{
		{"ascii", "Alice.Smith+tag@Example.COM"},
		{"idn", "Jürgen.Müller@Bücher.example"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := CanonicalEmail(c.email); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCodeHash is the keyed hash of one code, in absolute time.
func BenchmarkCodeHash(b *testing.B) {
	h := newCodeHasher([]byte(strings.Repeat("k", MinCodeSecretLen)))
	b.ReportAllocs()
	for b.Loop() {
		if len(h.hash(PurposeUpdateEmail, "next0@example.com", benchCode)) == 0 {
			b.Fatal("empty hash")
		}
	}
}

// BenchmarkReadFields is reading and decoding an update-email body, in
// absolute time.
func BenchmarkReadFields(b *testing.B) {
	const payload = `{"email":"next0@example.com","verify_code":"123456"}`
	r, body := benchRequest(UpdateEmailPath, "", payload)
	w := &benchWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		var email, code string
		if err := readFields(w, r, 4096, []field{{"email", &email}, {"verify_code", &code}}); err != nil || code != benchCode {
			b.Fatal(err, code)
		}
	}
}
