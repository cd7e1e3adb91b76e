package selfservice_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/mail"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
	"github.com/redis/go-redis/v9"
)

func ExampleCanonicalEmail() {
	email, canonical, err := selfservice.CanonicalEmail("  Jose.Smith@Bücher.Example ")
	fmt.Println(email, canonical, err)

	_, _, err = selfservice.CanonicalEmail("Jose <jose@example.com>")
	fmt.Println(errors.Is(err, i18n.CodeEmailInvalid))
	// Output:
	// Jose.Smith@Bücher.Example jose.smith@xn--bcher-kva.example <nil>
	// true
}

// Mount puts the three endpoints, each behind the middleware chain, on the mux a
// server already has.
func ExampleService_Mount() {
	verifier, err := idtoken.New(idtoken.Options{
		Issuer:  "https://id.example.com",
		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	secret := make([]byte, selfservice.MinCodeSecretLen) // in production: from your secret store
	_, _ = rand.Read(secret)
	svc, err := selfservice.New(selfservice.Config{
		Users:      memstore.NewUserStore(),
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: "my-app"}),
		Verifier:   verifier,
		Mailer:     selfservice.NewLogMailer(log.Writer()),
		Captcha:    selfservice.AllowAllCaptcha{}, // your captcha service in production
		CodeSecret: secret,
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	svc.Mount(mux, "") // or svc.Mount(mux, "/identity") for /identity/api/v2/...

	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: mux}
	go func() { _ = srv.ListenAndServe() }()
	// ... until the process is told to stop:
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = svc.Shutdown(ctx) // stops the courier; notices not yet mailed stay recorded
}

// An application that signs its users in itself leaves Config.Verifier
// out and says who the user is with Config.Identify.
func Example_ownAuthentication() {
	var cfg selfservice.Config // stores, mailer, captcha, secret: as for Mount; no Verifier
	cfg.Identify = func(r *http.Request) (selfservice.Identity, error) {
		userID, signedInAt, _ := yourSession(r) // your own check; no user: 403 USER.9207
		return selfservice.Identity{Subject: userID, AuthTime: signedInAt}, nil
	}
	svc, err := selfservice.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	svc.Mount(http.DefaultServeMux, "")
}

// A command-line tool of the support team changes a user's address through
// the Go API: a trusted backend, with no device and no HTTP.
func ExampleService_UpdateEmail_backend() {
	var svc *selfservice.Service // from selfservice.New
	userID, newEmail, code := "u-1001", "new@example.com", "123456"
	ctx := context.Background()

	err := svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{
		Caller:   selfservice.Caller{ClientID: "support-cli", Backend: "support-cli"},
		Identity: selfservice.Identity{Subject: userID},
		Email:    newEmail, VerifyCode: code,
	})
	if f := svc.Failure(err, language.English); f.Code != "" {
		log.Fatalf("%s (%s, HTTP %d)", f.Message, f.Code, f.Status)
	}
}

// yourSession stands for the application's own authentication.
func yourSession(*http.Request) (userID string, signedInAt time.Time, ok bool) {
	return "", time.Time{}, false
}

// Production wiring: users in PostgreSQL, codes and budgets in Redis
// (shared by every replica), mail over SMTP, behind a reverse proxy.
func Example_production() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL")) // import _ "github.com/jackc/pgx/v5/stdlib"
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(16) // see package sqlstore: size the pool on purpose
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := sqlstore.Migrate(ctx, db, sqlstore.Postgres); err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	mailOpts, err := mail.ParseURL(os.Getenv("SMTP_URL")) // smtps://user:pass@smtp.example.com?from=no-reply@example.com
	if err != nil {
		log.Fatal(err)
	}
	mailer, err := mail.New(mailOpts)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := idtoken.New(idtoken.Options{
		Issuer:  "https://id.example.com",
		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()
	secret, err := hex.DecodeString(os.Getenv("CODE_SECRET")) // 32+ random bytes, the same on every replica
	if err != nil {
		log.Fatal(err)
	}

	codes, limiter := redisstore.NewCodeStore(rdb, redisstore.Options{}), redisstore.NewLimiter(rdb, redisstore.Options{})
	if err := limiter.Check(ctx); err != nil { // maxmemory-policy must be noeviction
		log.Fatal(err)
	}

	svc, err := selfservice.New(selfservice.Config{
		Users:      sqlstore.NewUserStore(db, sqlstore.Postgres),
		Clients:    sqlstore.NewClientRegistry(db, sqlstore.Postgres),
		Codes:      codes,
		Limiter:    limiter,
		Verifier:   verifier,
		Mailer:     mailer,
		Captcha:    yourCaptcha, // a selfservice.CaptchaVerifier over your human-check service
		CodeSecret: secret,
		ClientIP:   selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8")), // your proxies
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Mount(mux, "")
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if verifier.Ready(r.Context()) != nil { // no JWKS key loaded yet
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// yourCaptcha stands for the integrator's human-check service.
var yourCaptcha = selfservice.CaptchaFunc(func(ctx context.Context, token string) error {
	return fmt.Errorf("%w: not a human", selfservice.ErrCaptchaRejected)
})

// The operations are Go calls too, with the same checks in the same order,
// for gRPC, huma or any front that is not this package's HTTP.
func ExampleService_UpdateEmail() {
	users := memstore.NewUserStore(store.User{ID: "u-1001", Email: "old@example.com"})
	mail := &lastMail{}
	svc, err := selfservice.New(selfservice.Config{
		Users:      users,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: "my-app"}),
		Mailer:     mail,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: make([]byte, selfservice.MinCodeSecretLen),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	ctx := context.Background()
	caller := selfservice.Caller{
		ClientID: "my-app",
		Device:   selfservice.Device{OSVersion: "ios17", Fingerprint: "fp-1", Agent: "app/1.0"},
	}

	err = svc.SendCode(ctx, selfservice.SendCodeRequest{
		Caller: caller, Email: "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "dev",
	})
	fmt.Println("send:", err)

	me := selfservice.Identity{Subject: "u-1001"} // as your authentication established it
	err = svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{
		Caller: caller, Identity: me, Email: "new@example.com", VerifyCode: "000000",
	})
	e := i18n.ErrorOf(err)
	fmt.Println("wrong code:", e.Code, e.Code.Status())

	err = svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{
		Caller: caller, Identity: me, Email: "new@example.com", VerifyCode: mail.code(),
	})
	fmt.Println("right code:", err)
	// Output:
	// send: <nil>
	// wrong code: IDAAS.SDK.CAPTCHA.0007 400
	// right code: <nil>
}

// The notice to the old address carries a token that undoes the change;
// the application ends the user's sessions when it is used, since whoever
// made the change probably holds one.
func ExampleService_RevertEmail() {
	users := memstore.NewUserStore(store.User{ID: "u-1001", Email: "owner@example.com"})
	mail := &lastMail{}
	svc, err := selfservice.New(selfservice.Config{
		Users:      users,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: "my-app"}),
		Mailer:     mail,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: make([]byte, selfservice.MinCodeSecretLen),
		OnEvent: func(ctx context.Context, e selfservice.Event) {
			if e.Kind == selfservice.EventEmailReverted {
				yourSessions.EndAll(ctx, e.UserID) // the change was probably not the owner's
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	ctx := context.Background()
	caller := selfservice.Caller{
		ClientID: "my-app",
		Device:   selfservice.Device{OSVersion: "ios17", Fingerprint: "fp-1", Agent: "app/1.0"},
	}
	thief := selfservice.Identity{Subject: "u-1001"} // a stolen session
	_ = svc.SendCode(ctx, selfservice.SendCodeRequest{Caller: caller, Email: "thief@example.net", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "t"})
	err = svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{Caller: caller, Identity: thief, Email: "thief@example.net", VerifyCode: mail.code()})
	fmt.Println("takeover:", err)

	// The owner follows the link of the notice mailed to owner@example.com.
	notice := mail.notice()
	fmt.Println("notice to:", notice.To)
	err = svc.RevertEmail(ctx, selfservice.RevertEmailRequest{Caller: caller, RevertToken: notice.RevertToken})
	fmt.Println("undo:", err)
	u, _ := users.User(ctx, "u-1001")
	fmt.Println("address:", u.Email)
	// Output:
	// takeover: <nil>
	// notice to: owner@example.com
	// ended the sessions of u-1001
	// undo: <nil>
	// address: owner@example.com
}

// yourSessions stands for the application's session store.
var yourSessions sessionStore

type sessionStore struct{}

func (sessionStore) EndAll(_ context.Context, userID string) {
	fmt.Println("ended the sessions of", userID)
}

// A framework that routes by itself serves each endpoint's handler, which
// carries the middleware chain; routing every method to it keeps the
// package's own 405.
func ExampleService_UpdateEmailHandler() {
	var svc *selfservice.Service // from selfservice.New
	mux := http.NewServeMux()    // or your framework's router
	mux.Handle("/identity/update-email", svc.UpdateEmailHandler())
	mux.Handle("/identity/send-code", svc.SendCodeHandler())
}

// lastMail keeps the last code and the last notice mailed.
type lastMail struct {
	mu      sync.Mutex
	last    string
	notices chan selfservice.Message
}

func (m *lastMail) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch msg.Kind {
	case selfservice.MailCode:
		m.last = msg.Code
	case selfservice.MailEmailChanged:
		if m.notices == nil {
			m.notices = make(chan selfservice.Message, 16)
		}
		m.notices <- msg
	}
	return nil
}

// notice waits for the courier's next notice.
func (m *lastMail) notice() selfservice.Message {
	for {
		m.mu.Lock()
		ch := m.notices
		m.mu.Unlock()
		if ch != nil {
			return <-ch
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *lastMail) code() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}
