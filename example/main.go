// Command example runs the self-service API on a plain ServeMux with
// everything it needs built in: an RS256 issuer that serves its JWKS at
// /api/v1/oauth2/keys, in-memory stores seeded with a demo client and user,
// and a mailer that prints each mail as one JSON line on stdout.
//
//	go run ./example
//
// prints a ready id_token and the curl commands that walk through sending a
// code and changing the demo user's email.
//
// Flags:
//
//	-addr HOST:PORT   listen address (default 127.0.0.1:8080)
//	-seed FILE        {"clients":[{"client_id":"..."}],"users":[{"id":"...","email":"..."}]};
//	                  inserted after the demo client and user, when missing;
//	                  never overwrites
//	-issuer URL       trust this external issuer instead of the built-in one
//	-jwks-url URL     the external issuer's JWKS (required with -issuer)
//	-second-issuer    also serve a second built-in issuer under
//	                  /second-issuer, with an application bound to it
//	                  (idtoken.Issuers), and print a token of it
//	-store S          users and clients: memory (default), sqlite:PATH or postgres://...
//	-codes C          codes and send limits: memory (default) or redis://...
//	-mail M           log (default: each mail as a JSON line on stdout),
//	                  smtp://[user:pass@]host:port (STARTTLS when offered) or
//	                  smtps://[user:pass@]host:port (implicit TLS); ?from=addr;
//	                  notices link to ?revert_url=, else to the demo page when
//	                  it is served on a loopback address (or every address),
//	                  else to no undo page
//	-db-conns N       SQL connections kept open and idle (default 16)
//	-load-test        loosen every budget to 1,000,000 events a second, so
//	                  that a load generator on one address is not refused;
//	                  never in production
//	-metrics          serve GET /metrics in Prometheus format: the Service's
//	                  and the Verifier's OpenTelemetry metrics through an
//	                  SDK MeterProvider and OpenTelemetry's Prometheus
//	                  exporter (in production, serve it where only the
//	                  scraper reaches)
//
// Codes and undo tokens are hashed under SELFSERVICE_CODE_SECRET (hex, at
// least 32 bytes; several comma-separated during a rotation: the first is
// stored under, the others still accepted) when it is set, else under a
// random secret of this process, which voids the codes in a shared store
// and the undo links of notices still waiting on restart.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/mail"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// jwksPath is where the built-in issuer publishes its keys, as the API
// family's vendor does.
const jwksPath = "/api/v1/oauth2/keys"

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h printed the usage, as asked: not a failure.
	case err != nil:
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

type flags struct {
	addr, seed, issuer, jwksURL, store, codes, mail string
	loadTest, metrics, secondIssuer                 bool
	dbConns                                         int
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "listen address `HOST:PORT`")
	fs.StringVar(&f.seed, "seed", "", "seed `FILE` with clients and users to insert, after the demo ones, when missing")
	fs.StringVar(&f.issuer, "issuer", "", "trust this external issuer `URL` instead of the built-in one")
	fs.StringVar(&f.jwksURL, "jwks-url", "", "JWKS `URL` of the external issuer")
	fs.StringVar(&f.store, "store", "memory", "users and clients: memory, sqlite:PATH or postgres://...")
	fs.StringVar(&f.codes, "codes", "memory", "codes and send limits: memory or redis://...")
	fs.StringVar(&f.mail, "mail", "log", "mail delivery: log (JSON lines on stdout), smtp://[user:pass@]host:port or smtps://...")
	fs.IntVar(&f.dbConns, "db-conns", 16, "SQL connections kept open and idle (sqlite: and postgres:// stores)")
	fs.BoolVar(&f.loadTest, "load-test", false, "loosen every budget to 1,000,000 a second for load generators (never in production)")
	fs.BoolVar(&f.metrics, "metrics", false, "serve GET /metrics: OpenTelemetry metrics in Prometheus format")
	fs.BoolVar(&f.secondIssuer, "second-issuer", false, "also serve a second built-in issuer with an application bound to it")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.dbConns < 1 {
		return f, errors.New("-db-conns must be at least 1")
	}
	if (f.issuer == "") != (f.jwksURL == "") {
		return f, errors.New("-issuer and -jwks-url go together")
	}
	return f, nil
}

// run serves until ctx is cancelled or SIGINT/SIGTERM arrives, then shuts
// down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	st, err := openStores(ctx, f.store, f.codes, f.dbConns)
	if err != nil {
		return err
	}
	defer st.Close()
	// The demo client and user always, then the -seed file's: the
	// walkthrough and the demo page need the demo ones.
	seed := defaultSeed
	if err := seed.apply(ctx, st.users, st.clients); err != nil {
		return err
	}
	if f.seed != "" {
		extra, err := readSeed(f.seed)
		if err != nil {
			return err
		}
		if err := extra.apply(ctx, st.users, st.clients); err != nil {
			return err
		}
	}
	secret, previous, err := codeSecrets()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	// The demo page carries the built-in issuer's token for the demo user,
	// so it is served with that issuer only. It undoes a change from the
	// link of its notice: without it, notices link to no page of ours.
	demo := f.issuer == "" && len(seed.Clients) > 0 && len(seed.Users) > 0
	var revertURL string
	if demo {
		revertURL = undoPage(ln.Addr())
	}
	mailer, err := newMailer(f.mail, stdout, revertURL, logger)
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	// A set-up failure below still closes the listener; after a graceful
	// Shutdown this does nothing.
	defer srv.Close()

	// The meter provider comes before the verifier, whose first JWKS fetch
	// it times. Without -metrics both record into the global no-op one.
	var meters metric.MeterProvider
	if f.metrics {
		if prometheusMetrics == nil {
			return errors.New("-metrics needs the Prometheus exporter: build with -tags metrics (go run -tags metrics ./example -metrics)")
		}
		mp, metrics, shutdown, err := prometheusMetrics()
		if err != nil {
			return err
		}
		defer shutdown(context.Background())
		meters = mp
		mux.Handle("GET /metrics", metrics)
	}

	// The built-in issuer is served first, so the verifier's first JWKS
	// fetch below finds it over real HTTP like any integrator's would.
	var iss *devissuer.Issuer
	issuerURL, jwksURL := f.issuer, f.jwksURL
	if issuerURL == "" {
		if iss, err = devissuer.New(base); err != nil {
			return err
		}
		mux.Handle("GET "+jwksPath, iss)
		issuerURL, jwksURL = iss.URL(), base+jwksPath
	}
	verifier, err := idtoken.New(idtoken.Options{
		Issuer:        issuerURL,
		JWKSURL:       jwksURL,
		Logger:        logger,
		MeterProvider: meters,
	})
	if err != nil {
		return err
	}
	defer verifier.Close()
	var clients store.ClientRegistry = st.clients
	var tokens middleware.TokenVerifier = verifier
	var second *secondIssuer
	if f.secondIssuer {
		if second, err = newSecondIssuer(mux, base, st.clients, verifier, logger, meters); err != nil {
			return err
		}
		defer second.tokens.Close()
		clients, tokens = second.clients, second.tokens
	}

	var budgets selfservice.Budgets
	if f.loadTest {
		logger.Warn("-load-test: every budget is loosened to 1,000,000 a second; never run this in production")
		loose := []store.Limit{{N: 1_000_000, Window: time.Second}}
		budgets = selfservice.Budgets{SendsPerEmail: loose, SendsPerIP: loose, WrongCodesPerUser: loose, WrongCodesPerIP: loose,
			ChangesPerUser: loose, RevertsPerIP: loose}
	}
	svc, err := selfservice.New(selfservice.Config{
		Users:      st.users,
		Codes:      st.codes,
		Limiter:    st.limiter,
		Clients:    clients,
		Verifier:   tokens,
		Mailer:     mailer,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: secret,
		// A rotation in progress: still accepted, no longer stored under.
		PreviousCodeSecrets: previous,
		Budgets:             budgets,
		Logger:              logger,
		// nil without -metrics: the global provider, a no-op here.
		MeterProvider: meters,
	})
	if err != nil {
		return err
	}
	svc.Mount(mux, "")
	mux.Handle("GET /openapi.yaml", selfservice.OpenAPIHandler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := verifier.Ready(r.Context()); err != nil {
			http.Error(w, "JWKS keys not loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})

	logger.Info("listening", "addr", ln.Addr().String(), "issuer", issuerURL)
	if demo {
		token, err := iss.IDToken(seed.Users[0].ID, seed.Clients[0].ClientID, 24*time.Hour)
		if err != nil {
			return err
		}
		mountDemo(mux, demoPage{Users: st.users, UserID: seed.Users[0].ID, ClientID: seed.Clients[0].ClientID, Token: token,
			Hosts: listenHosts(f.addr, ln.Addr()), Logger: logger})
		printWalkthrough(stderr, base, seed.Clients[0].ClientID, token)
	}
	if second != nil && len(seed.Users) > 0 {
		if err := second.print(stderr, base, seed.Users[0].ID); err != nil {
			return err
		}
	}

	select {
	case err := <-serveErr:
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
	if err := svc.Shutdown(shutdownCtx); err != nil {
		return err
	}
	// The SMTP mailer's sessions, once the courier is done with them.
	if c, ok := mailer.(interface{ Close(context.Context) error }); ok {
		if err := c.Close(shutdownCtx); err != nil {
			logger.Warn("closing the mail sessions", "error", err)
		}
	}
	return nil
}

// prometheusMetrics builds the meter provider and handler of -metrics: the
// Prometheus exporter of package prom when the example is built with -tags
// metrics (metrics.go), nil otherwise.
var prometheusMetrics func() (metric.MeterProvider, http.Handler, func(context.Context) error, error)

// newMailer returns the mailer -mail names: the development LogMailer on
// stdout, or SMTP delivery through package mail, whose notices link to
// the URL's undo page (?revert_url=), else to revertURL, else to none and
// only advise contacting support, which logger warns of.
func newMailer(flag string, stdout io.Writer, revertURL string, logger *slog.Logger) (selfservice.Mailer, error) {
	if flag == "" || flag == "log" {
		return selfservice.NewLogMailer(stdout), nil
	}
	opts, err := mail.ParseURL(flag)
	if err != nil {
		return nil, fmt.Errorf("-mail: %w", err)
	}
	if opts.RevertURL == "" {
		opts.RevertURL = revertURL
	}
	if opts.RevertURL == "" {
		logger.Warn("-mail: notices carry no undo link, only the advice to contact support; " +
			"add ?revert_url= (your undo page, https, URL-encoded) to -mail")
	}
	return mail.New(opts)
}

// undoPage is the demo page's URL for the notices' undo links, or "" when
// a mail may not link to it: http is for a loopback host only (see
// mail.Options.RevertURL). The example listens for development, so when
// it listens on every address the page is linked on this machine, by name.
func undoPage(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	switch {
	case err != nil || ap.Addr().IsUnspecified():
		_, port, _ := net.SplitHostPort(addr.String())
		return "http://localhost:" + port + "/"
	case !ap.Addr().Unmap().IsLoopback():
		return ""
	}
	return "http://" + ap.String() + "/"
}

// codeSecrets returns the keys codes and undo tokens are hashed under:
// SELFSERVICE_CODE_SECRET, comma-separated hex secrets, the first stored
// under and the others still accepted (a rotation in progress), so that
// replicas and restarts share them; else one random secret.
func codeSecrets() (current []byte, previous [][]byte, err error) {
	h := os.Getenv("SELFSERVICE_CODE_SECRET")
	if h == "" {
		current = make([]byte, selfservice.MinCodeSecretLen)
		_, _ = rand.Read(current)
		return current, nil, nil
	}
	for i, part := range strings.Split(h, ",") {
		b, err := hex.DecodeString(strings.TrimSpace(part))
		if err != nil || len(b) < selfservice.MinCodeSecretLen {
			return nil, nil, fmt.Errorf("SELFSERVICE_CODE_SECRET: secret %d must be at least %d bytes in hex", i+1, selfservice.MinCodeSecretLen)
		}
		if i == 0 {
			current = b
		} else {
			previous = append(previous, b)
		}
	}
	return current, previous, nil
}

func printWalkthrough(w io.Writer, base, clientID, token string) {
	headers := fmt.Sprintf(`-H 'Content-Type: application/json' -H 'X-operating-sys-version: linux6.1' -H 'X-device-fingerprint: demo-device-1' -H 'X-agent: curl' -H 'X-L: en' -H 'X-client-id: %s'`, clientID)
	fmt.Fprintf(w, `
Ready. A demo id_token (valid 24h) for the seeded user:

  export TOKEN=%s

1. Mail a code to the new address (the development mailer prints it on stdout as a JSON line):

  curl -i -X POST %s%s %s -d '{"email":"new.address@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}'

2. Change the email with that code (replace 123456):

  curl -i -X POST %s%s %s -H "Authorization: Bearer $TOKEN" -d '{"email":"new.address@example.com","verify_code":"123456"}'

   The old address is then sent a notice (a JSON line with "kind":"email_changed" and a "revert_token").

3. Undo the change with that token, as the owner of the old address would (replace TOKEN):

  curl -i -X POST %s%s %s -d '{"revert_token":"TOKEN"}'

Errors come back as {"error_code","error_msg"}; replace X-L: en by X-L: zh for Chinese.

Or open %s/ in a browser: a demo page runs the same flow as the demo user, in English or 中文 (?lang=zh).
The API's OpenAPI document is at %s/openapi.yaml.

`, token, base, selfservice.SendCodePath, headers, base, selfservice.UpdateEmailPath, headers,
		base, selfservice.RevertEmailPath, headers, base, base)
}
