// Package demo is what the framework programs (chi, gin, echo, huma) share
// around the one function each of them is about, the one that mounts the
// API in its framework: a Service over in-memory stores holding a demo
// client and user, a development issuer whose JWKS is served on a loopback
// port of its own, a mailer that prints each mail as a JSON line on stdout,
// and a main that serves until SIGINT and prints how to try the API.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// The demo's client and user, which the walkthrough's token is issued for.
const (
	ClientID  = "demo-app"
	UserID    = "u-1001"
	UserEmail = "old.address@example.com"
)

// Build returns the handler a program serves: the API mounted in its
// framework for svc, which was built from cfg (a front that calls the
// Go-level API reads cfg's Bundle, ClientIP, MaxAuthAge, MaxBodyBytes and
// Logger, which the Service does not expose).
type Build func(svc *selfservice.Service, cfg selfservice.Config) http.Handler

// Main runs the program name with the process's arguments and exits 1 on
// failure. Its only flag is -addr, defaultAddr unless given.
func Main(name, defaultAddr string, build Build) {
	err := Run(context.Background(), name, defaultAddr, os.Args[1:], os.Stdout, os.Stderr, build)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h printed the usage, as asked: not a failure.
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Run serves the handler build returns on -addr until ctx is done or
// SIGINT/SIGTERM arrives, then shuts the server and the Service down. Mails
// go to stdout; logs and the walkthrough, to stderr.
func Run(ctx context.Context, name, defaultAddr string, args []string, stdout, stderr io.Writer, build Build) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr, "listen address `HOST:PORT`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// Serve closes it; this is for the failures before.
	defer ln.Close()

	iss, closeIssuer, err := startIssuer(logger)
	if err != nil {
		return err
	}
	defer closeIssuer()
	verifier, err := idtoken.New(idtoken.Options{Issuer: iss.URL(), JWKSURL: iss.URL() + "/keys", Logger: logger})
	if err != nil {
		return err
	}
	defer verifier.Close()

	secret := make([]byte, selfservice.MinCodeSecretLen)
	_, _ = rand.Read(secret)
	cfg := selfservice.Config{
		Users:      memstore.NewUserStore(store.User{ID: UserID, Email: UserEmail}),
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: ClientID, Name: "Demo app"}),
		Verifier:   verifier,
		Mailer:     selfservice.NewLogMailer(stdout),
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: secret,
		Logger:     logger,
	}
	svc, err := selfservice.New(cfg)
	if err != nil {
		return err
	}
	token, err := iss.IDToken(UserID, ClientID, 24*time.Hour)
	if err != nil {
		return err
	}

	srv := newServer(build(svc, cfg), logger)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "program", name, "addr", ln.Addr().String())
	printWalkthrough(stderr, "http://"+ln.Addr().String(), token)

	select {
	case err := <-serveErr:
		_ = svc.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// After the server: a change answered just now may still have its
	// notice to the old address in the queue.
	return svc.Shutdown(shutdownCtx)
}

// newServer returns the http.Server of the programs, with the timeouts a
// server exposed to clients needs.
func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// startIssuer serves the development issuer's JWKS on a loopback port of
// its own, so that the verifier fetches keys over HTTP as it would from a
// real identity provider, and the programs' routers hold the API alone.
func startIssuer(logger *slog.Logger) (*devissuer.Issuer, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	iss, err := devissuer.New("http://" + ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	srv := newServer(iss, logger)
	go func() { _ = srv.Serve(ln) }()
	return iss, func() { _ = srv.Close() }, nil
}

func printWalkthrough(w io.Writer, base, token string) {
	headers := fmt.Sprintf(`-H 'Content-Type: application/json' -H 'X-operating-sys-version: linux6.1' -H 'X-device-fingerprint: demo-device-1' -H 'X-agent: curl' -H 'X-L: en' -H 'X-client-id: %s'`, ClientID)
	fmt.Fprintf(w, `
Ready. A demo id_token (valid 24h) for the user %s (%s):

  export TOKEN=%s

1. Mail a code to the new address (printed on stdout as a JSON line):

  curl -i -X POST %s%s %s -d '{"email":"new.address@example.com","type":"%s","captcha_token":"dev"}'

2. Change the email with that code (replace 123456):

  curl -i -X POST %s%s %s -H "Authorization: Bearer $TOKEN" -d '{"email":"new.address@example.com","verify_code":"123456"}'

Any other method gets the package's 405: curl -i %s%s -H 'X-L: zh'

`, UserID, UserEmail, token,
		base, selfservice.SendCodePath, headers, selfservice.PurposeUpdateEmail,
		base, selfservice.UpdateEmailPath, headers,
		base, selfservice.SendCodePath)
}
