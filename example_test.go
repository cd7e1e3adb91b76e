package selfservice_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
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

// Mount puts both endpoints, each behind the middleware chain, on the mux a
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
	_ = svc.Shutdown(ctx) // waits for notices to old addresses still being mailed
}

// An application that signs its users in itself leaves Config.Verifier
// out and hands the user over with middleware.WithIdentity.
func ExampleService_Handler_ownAuthentication() {
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

	// The application's own authentication: its session cookie says who
	// the user is.
	appAuth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := r.Cookie("session"); err == nil && c.Value == "s3cr3t" {
				r = r.WithContext(middleware.WithIdentity(r.Context(), middleware.Identity{Subject: "u-1001"}))
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(appAuth(svc.Handler()))
	defer srv.Close()

	post := func(path, body string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header = http.Header{
			"Content-Type": {"application/json"}, "X-Client-Id": {"my-app"}, "Cookie": {"session=s3cr3t"},
			"X-Operating-Sys-Version": {"ios17"}, "X-Device-Fingerprint": {"fp-1"}, "X-Agent": {"app/1.0"},
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode)
	}
	post(selfservice.SendCodePath, `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`)
	post(selfservice.UpdateEmailPath, `{"email":"new@example.com","verify_code":"`+mail.code()+`"}`)
	u, _ := users.User(context.Background(), "u-1001")
	fmt.Println(u.Email)
	// Output:
	// /api/v2/sdk/email/send 200
	// /api/v2/sdk/profile/update-email 200
	// new@example.com
}

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
		Device:   middleware.Device{OSVersion: "ios17", Fingerprint: "fp-1", Agent: "app/1.0"},
	}

	err = svc.SendCode(ctx, selfservice.SendCodeRequest{
		Caller: caller, Email: "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "dev",
	})
	fmt.Println("send:", err)

	me := middleware.Identity{Subject: "u-1001"} // as your authentication established it
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

// A framework that routes by itself serves each endpoint's handler, which
// carries the middleware chain; routing every method to it keeps the
// package's own 405.
func ExampleService_UpdateEmailHandler() {
	var svc *selfservice.Service // from selfservice.New
	mux := http.NewServeMux()    // or your framework's router
	mux.Handle("/identity/update-email", svc.UpdateEmailHandler())
	mux.Handle("/identity/send-code", svc.SendCodeHandler())
}

// lastMail keeps the last code mailed.
type lastMail struct {
	mu   sync.Mutex
	last string
}

func (m *lastMail) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if msg.Kind == selfservice.MailCode {
		m.last = msg.Code
	}
	return nil
}

func (m *lastMail) code() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}
