// Package selfservice is an embeddable net/http implementation of a CIAM
// self-service "change my email" API: POST /api/v2/sdk/email/send mails a
// verification code to a new address, and POST
// /api/v2/sdk/profile/update-email lets a signed-in user (a Bearer id_token
// checked against the issuer's JWKS, or a user the application
// authenticated itself) replace their email with that address. Errors are
// {"error_code","error_msg"} in English or Chinese, as X-L asks. The owner
// of the address replaced is mailed a notice with an undo link, which POST
// /api/v2/sdk/profile/revert-email redeems.
//
// A Service is built once from a Config and serves the API three ways:
//
//   - Mount registers the three endpoints on any router with a Handle
//     method (http.ServeMux, chi), optionally under a prefix; Handler
//     returns them on a ServeMux of their own; SendCodeHandler,
//     UpdateEmailHandler and RevertEmailHandler return one endpoint each,
//     for frameworks that route themselves. Each endpoint is complete: the
//     middlewares of package middleware run in front of it (Localize, POST
//     only, device headers, X-client-id, the bearer token), as one
//     middleware.Chain.
//   - SendCode, UpdateEmail and RevertEmail are the same operations as Go
//     calls, with the same checks in the same order, for gRPC, huma or any
//     other front.
//   - Storage is four interfaces (package store), with in-memory
//     implementations (store/memstore), SQL and Redis ones, and one
//     conformance suite (store/storetest).
//
// Quick start:
//
//	verifier, err := idtoken.New(idtoken.Options{
//		Issuer:  "https://id.example.com",
//		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
//	})
//	if err != nil { ... }
//	defer verifier.Close()
//	svc, err := selfservice.New(selfservice.Config{
//		Users: users, Codes: codes, Limiter: limiter, Clients: clients,
//		Verifier: verifier, Mailer: mailer, Captcha: captcha,
//		CodeSecret: secret, // 32 random bytes, the same on every replica
//	})
//	if err != nil { ... }
//	svc.Mount(mux, "")
//	defer svc.Shutdown(ctx) // after http.Server.Shutdown: notices in flight
package selfservice

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// The endpoints' paths, as the API family publishes them.
const (
	UpdateEmailPath = "/api/v2/sdk/profile/update-email"
	SendCodePath    = "/api/v2/sdk/email/send"
)

// PurposeUpdateEmail is the send type whose codes update-email accepts.
const PurposeUpdateEmail = "UPDATE_EMAIL_EMS"

// MinCodeSecretLen is the least length of Config.CodeSecret, in bytes.
const MinCodeSecretLen = 32

// ErrConfig reports an unusable configuration. Every constructor of the
// module wraps it: New here, idtoken.New, mail.New, i18n.NewBundle.
const ErrConfig = configerr.Err

// Config configures a Service. The stores, the client registry, the mailer,
// the captcha verifier and the code secret are required: a missing one is a
// configuration error, not a silent pass. The zero value of every other
// field is the documented default.
type Config struct {
	// Users reads users and changes their email together with the owner's
	// alarm: each change records, in the same atomic step, the notice to
	// the old address and the change's undo (store.ChangeStore); the
	// Service's courier delivers the notices from there. store/sqlstore
	// keeps them durably, store/memstore in memory (lost with the
	// process); for a users table of your own, see the README.
	Users store.ChangeStore
	Codes store.CodeStore
	// Limiter keeps the counts of every budget (see Budgets). Replicas
	// must share it, like Codes.
	Limiter store.Limiter
	Clients store.ClientRegistry
	// ClientCacheTTL is how long the Service believes what Clients said
	// about a client id, so that most requests make no registry round
	// trip. A registration removed from Clients keeps working for up to
	// this long; an id found unknown is remembered for at most 5 seconds,
	// so a new registration is served within seconds. Failures are never
	// cached. At most 10,000 ids are held. Default: 30s; negative turns
	// the cache off.
	ClientCacheTTL time.Duration
	// Verifier checks the bearer token of update-email (an
	// *idtoken.Verifier for OpenID Connect id_tokens, or idtoken.Issuers
	// for applications of several issuers); a request without a token is
	// answered IDAAS.SDK.PARAM.0015, a refused one PARAM.0016, a sign-in
	// older than MaxAuthAge PARAM.9204 with an RFC 9470 challenge.
	Verifier TokenVerifier
	// Identify, for an application that signs its users in itself
	// (sessions, its own OIDC middleware) instead of a Verifier, returns
	// the user an update-email request acts for: ErrNotSignedIn (or an
	// empty Subject) when there is none, answered IDAAS.SDK.USER.9207;
	// Identity.AuthTime feeds MaxAuthAge, a sign-in too old being
	// IDAAS.SDK.USER.9208. Both are 403 with neutral words: there is no
	// token to speak of and no Bearer challenge to send. Any other error
	// is an internal failure (logged). Without Identify or a Verifier the
	// user comes from middleware.WithIdentity, with the same answers.
	// Setting both Identify and Verifier is a configuration error.
	Identify func(*http.Request) (Identity, error)
	Mailer   Mailer
	// MailTimeout bounds how long send-code waits for the Mailer to take a
	// code mail, and, apart, how long it waits for a mail slot (see
	// MailConcurrency); past either the send answers
	// IDAAS.SDK.CAPTCHA.0006. Default: 5s.
	MailTimeout time.Duration
	// MailConcurrency bounds the code mails in flight. A send that finds
	// them all busy waits for one to finish, at most MailTimeout, so that
	// a burst to a healthy mail server queues instead of failing; at most
	// four times this many sends wait, and a send beyond them, or one that
	// finds the mail circuit open, answers IDAAS.SDK.CAPTCHA.0006 at once.
	// A refused send costs no budget. A hung mail server thus holds at most
	// five times this many requests, until its failures open the circuit.
	// Default: 16.
	MailConcurrency int
	// MailCoolDown is how long the mail circuit stays open once 5 code
	// mails in a row have failed (a refusal of the recipient, which the
	// client chose, is no failure, and a send the Mailer never started is
	// not counted: see Mailer); then one mail probes the server, and its
	// success closes the circuit. While it is open the courier holds
	// notices back too. Default: 10s.
	MailCoolDown time.Duration
	// Captcha checks send requests; AllowAllCaptcha for development.
	Captcha CaptchaVerifier

	// CodeSecret keys the hash under which codes and undo tokens are
	// stored, and seals the undo token inside its notice until delivery.
	// At least MinCodeSecretLen random bytes, the same on every replica.
	CodeSecret []byte
	// PreviousCodeSecrets are retired code secrets, still accepted for what
	// was made under them: to rotate without voiding anything in flight,
	// move the current secret here and set a new CodeSecret, on every
	// replica; drop a retired one once RevertTTL has passed (codes live
	// CodeTTL, undo tokens RevertTTL). Each at least MinCodeSecretLen
	// bytes.
	PreviousCodeSecrets [][]byte
	// CodeTTL is how long a code stays valid. Default: 10m.
	CodeTTL time.Duration
	// MaxTries is how many wrong codes kill a code. Default: 5.
	MaxTries int
	// Budgets bound sends per address and per client IP, and wrong codes
	// per user and per client IP. Default: DefaultBudgets().
	Budgets Budgets
	// ClientIP returns the client address the IP budgets count for a
	// request. Default: RemoteIP, the connection's address; never a
	// header unless the function trusts a proxy (TrustProxies, or
	// TrustProxiesWith for RFC 7239 Forwarded or a Unix socket).
	ClientIP func(*http.Request) netip.Addr
	// MaxBodyBytes caps request bodies. Default: 4096.
	MaxBodyBytes int64
	// MaxAuthAge, when set, is a step-up rule for this sensitive change:
	// update-email needs an id_token whose auth_time is at most this old,
	// else it answers IDAAS.SDK.PARAM.9204 (HTTP 401 with an RFC 9470
	// WWW-Authenticate challenge) and the client signs the user in again.
	// Default: 0, no limit.
	MaxAuthAge time.Duration

	// NoticeTimeout bounds one attempt to mail a notice to an old
	// address; a failed attempt is retried. Default: 30s.
	NoticeTimeout time.Duration
	// NoticeWorkers is how many notices the courier mails at once.
	// Default: 4.
	NoticeWorkers int
	// NoticeMaxAge is how long the courier keeps trying to deliver a
	// notice (capped exponential backoff, 1 s doubling to 30 s, jittered)
	// before it gives up, logs an error and reports EventNoticeFailed.
	// Default: 72h.
	NoticeMaxAge time.Duration

	// RevertTTL is how long the undo token of a change, mailed in its
	// notice, stays usable. Default: 7 days (168h).
	RevertTTL time.Duration
	// RevertCoolOff is how long an undo locks the user's email changes
	// (answered IDAAS.SDK.REVERT.9305), so that whoever made the undone
	// change cannot make it again at once: it must outlast CodeTTL, so
	// that no code pending at the undo can be used. Default: 24h.
	RevertCoolOff time.Duration

	// OnEvent, when set, receives every audit Event, synchronously on the
	// request's goroutine (or the courier's, for EventNoticeFailed): keep
	// it fast or hand the event off. On EventEmailReverted, end the
	// user's sessions.
	OnEvent func(context.Context, Event)

	// Bundle holds the messages of answers and mails. Default:
	// i18n.Default().
	Bundle *i18n.Bundle
	// Logger receives audit records and internal failures, with
	// addresses masked and never a code; the middlewares the Service
	// builds log to it too. Default: slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the Service's metrics (the README lists
	// their names, units and attributes): the duration of each request by
	// operation and error code, of each call to a store, the mailer and
	// the captcha verifier, and counts of codes sent and rejected,
	// changes, budget refusals and failed notices. Never an address, a
	// user id or a client id. Default: otel.GetMeterProvider(), the global one, which
	// records nothing until the application installs an SDK. With
	// OpenTelemetry's no-op providers (metric/noop and trace/noop) in both
	// fields, nothing is instrumented at all.
	MeterProvider metric.MeterProvider
	// TracerProvider starts a span around each call to a store, the
	// mailer and the captcha verifier, as a child of the span the request's
	// context carries (otelhttp's, or the application's own around a Go
	// call); a call whose context carries no sampled span is not traced.
	// Default: otel.GetTracerProvider(), the global one.
	TracerProvider trace.TracerProvider
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Service serves the three endpoints. It is safe for concurrent use.
type Service struct {
	cfg     Config
	batch   store.BatchLimiter // cfg.Limiter, when it reserves in batches
	checker store.CodeChecker  // cfg.Codes, when it keeps cfg.Limiter's budgets
	mail    *mailGuard
	codes   codeHashers
	keys    secretKeys // of CodeSecret, then PreviousCodeSecrets
	courier *courier
	tel     *telemetry

	// The endpoints, each behind the middleware chain, built once.
	sendCodeHandler, updateEmailHandler, revertEmailHandler http.Handler
	mux                                                     *http.ServeMux
}

// New validates cfg, fills in its defaults and returns the Service. Its
// courier starts at once, delivering notices left in the outbox by an
// earlier run; stop it with Shutdown.
func New(cfg Config) (*Service, error) {
	return newService(cfg, defaultCourierTiming)
}

func newService(cfg Config, timing courierTiming) (*Service, error) {
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"Users", cfg.Users != nil}, {"Codes", cfg.Codes != nil}, {"Limiter", cfg.Limiter != nil},
		{"Clients", cfg.Clients != nil}, {"Mailer", cfg.Mailer != nil}, {"Captcha", cfg.Captcha != nil},
	} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if cfg.CodeSecret == nil {
		missing = append(missing, "CodeSecret")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrConfig, strings.Join(missing, ", "))
	}
	keys, err := newSecretKeys(cfg.CodeSecret, cfg.PreviousCodeSecrets)
	if err != nil {
		return nil, err
	}
	if cfg.Verifier != nil && cfg.Identify != nil {
		return nil, fmt.Errorf("%w: set Verifier (bearer tokens) or Identify (your own sign-in), not both", ErrConfig)
	}
	if cfg.CodeTTL == 0 {
		cfg.CodeTTL = 10 * time.Minute
	}
	if cfg.MaxTries == 0 {
		cfg.MaxTries = 5
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4096
	}
	if cfg.NoticeTimeout == 0 {
		cfg.NoticeTimeout = 30 * time.Second
	}
	if cfg.NoticeWorkers == 0 {
		cfg.NoticeWorkers = 4
	}
	if cfg.MailTimeout == 0 {
		cfg.MailTimeout = 5 * time.Second
	}
	if cfg.MailConcurrency == 0 {
		cfg.MailConcurrency = 16
	}
	if cfg.MailCoolDown == 0 {
		cfg.MailCoolDown = 10 * time.Second
	}
	if cfg.NoticeMaxAge == 0 {
		cfg.NoticeMaxAge = 72 * time.Hour
	}
	if cfg.RevertTTL == 0 {
		cfg.RevertTTL = 7 * 24 * time.Hour
	}
	if cfg.RevertCoolOff == 0 {
		cfg.RevertCoolOff = 24 * time.Hour
	}
	if cfg.CodeTTL < 0 || cfg.MaxTries < 0 || cfg.MaxBodyBytes < 0 || cfg.MaxAuthAge < 0 || cfg.NoticeTimeout < 0 ||
		cfg.NoticeWorkers < 0 || cfg.NoticeMaxAge < 0 || cfg.RevertTTL < 0 || cfg.RevertCoolOff < 0 ||
		cfg.MailTimeout < 0 || cfg.MailConcurrency < 0 || cfg.MailCoolDown < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if cfg.RevertCoolOff <= cfg.CodeTTL {
		return nil, fmt.Errorf("%w: RevertCoolOff (%v) must be longer than CodeTTL (%v): a code pending at an undo must die before changes resume", ErrConfig, cfg.RevertCoolOff, cfg.CodeTTL)
	}
	if cfg.Bundle == nil {
		cfg.Bundle = i18n.Default()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = RemoteIP
	}
	if cfg.Budgets, err = cfg.Budgets.withDefaults(); err != nil {
		return nil, err
	}
	// Whether the code store shares storage with the Limiter is asked of
	// the stores as given, before they are instrumented.
	shared := false
	if cc, ok := cfg.Codes.(store.CodeChecker); ok {
		shared = cc.SharesBudgets(cfg.Limiter)
	}
	tel := newTelemetry(cfg.MeterProvider, cfg.TracerProvider)
	tel.instrument(&cfg)
	cfg.Clients = newClientCache(cfg.Clients, cfg.ClientCacheTTL, cfg.Now)
	s := &Service{cfg: cfg, mail: newMailGuard(&cfg), codes: newCodeHashers(cfg.CodeSecret, cfg.PreviousCodeSecrets), keys: keys, tel: tel}
	s.batch, _ = cfg.Limiter.(store.BatchLimiter)
	if shared {
		s.checker = cfg.Codes.(store.CodeChecker)
	}
	chain := middleware.ChainOptions{
		Bundle: cfg.Bundle, Methods: []string{http.MethodPost}, Clients: cfg.Clients, Logger: cfg.Logger,
	}
	s.sendCodeHandler = tel.instrumentEndpoint(tel.sendCode, middleware.Chain(chain)(http.HandlerFunc(s.serveSendCode)))
	s.revertEmailHandler = tel.instrumentEndpoint(tel.revertEmail, middleware.Chain(chain)(http.HandlerFunc(s.serveRevertEmail)))
	chain.Verifier = cfg.Verifier
	s.updateEmailHandler = tel.instrumentEndpoint(tel.updateEmail, middleware.Chain(chain)(http.HandlerFunc(s.serveUpdateEmail)))
	s.mux = http.NewServeMux()
	s.Mount(s.mux, "")

	// The courier runs until Shutdown, or until the Service is collected:
	// it holds nothing of the Service.
	s.courier = newCourier(&cfg, keys, s.mail, tel, timing)
	go s.courier.run()
	runtime.AddCleanup(s, func(c *courier) { c.stop() }, s.courier)
	return s, nil
}

// Router is what Mount registers the endpoints on: http.ServeMux, chi's
// router and many others have this method.
type Router interface {
	Handle(pattern string, handler http.Handler)
}

// Mount registers the endpoints on r at prefix+SendCodePath,
// prefix+UpdateEmailPath and prefix+RevertEmailPath, for every method: the
// handlers answer any method but POST with IDAAS.SDK.REQ.9101 themselves.
// prefix is "" or a path without a trailing slash, such as "/identity".
// Panics if prefix is not, and, like ServeMux.Handle, if r already serves
// one of the patterns.
func (s *Service) Mount(r Router, prefix string) {
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/")) {
		panic(fmt.Sprintf("selfservice: Mount: prefix %q must be empty or start with / and not end with one", prefix))
	}
	r.Handle(prefix+SendCodePath, s.sendCodeHandler)
	r.Handle(prefix+UpdateEmailPath, s.updateEmailHandler)
	r.Handle(prefix+RevertEmailPath, s.revertEmailHandler)
}

// Handler returns the endpoints at their standard paths on a ServeMux of
// their own; any other path is answered 404 by the ServeMux.
func (s *Service) Handler() http.Handler { return s.mux }

// SendCodeHandler returns the send-code endpoint, whatever the path it is
// served at: the middleware chain, then the body (application/json, at most
// Config.MaxBodyBytes, exactly {"email","type","captcha_token"}), then
// SendCode's checks.
func (s *Service) SendCodeHandler() http.Handler { return s.sendCodeHandler }

// UpdateEmailHandler returns the update-email endpoint, whatever the path it
// is served at: the middleware chain (with the bearer token when
// Config.Verifier is set, else the user from middleware.WithIdentity), the
// sign-in's age, then the body (exactly {"email","verify_code"}), then
// UpdateEmail's checks.
func (s *Service) UpdateEmailHandler() http.Handler { return s.updateEmailHandler }

// RevertEmailHandler returns the revert-email endpoint, whatever the path
// it is served at: the middleware chain without a bearer token (the owner
// undoing a takeover may have lost every session), then the body (exactly
// {"revert_token"}), then RevertEmail's checks.
func (s *Service) RevertEmailHandler() http.Handler { return s.revertEmailHandler }

// CallerOf reads the Caller of r as the endpoints do, for a front that
// calls SendCode or UpdateEmail itself (a framework's own routing, a
// gateway): X-L and then Accept-Language choose the language, a repeated
// X-L or X-client-id is i18n.CodeHeaderRepeated, incomplete device headers
// are i18n.CodeDeviceIncomplete (middleware.ParseDevice), and the client IP
// is Config.ClientIP's. Whether the client is registered, SendCode and
// UpdateEmail check. On an error the Caller's Language is still the one to
// answer in.
func (s *Service) CallerOf(r *http.Request) (Caller, error) {
	var c Caller
	xl := r.Header.Values("X-L")
	if len(xl) > 1 {
		c.Language = s.cfg.Bundle.DefaultLocale().Tag()
		return c, i18n.CodeHeaderRepeated
	}
	c.Language = s.cfg.Bundle.Match(strings.Join(xl, ""), strings.Join(r.Header["Accept-Language"], ",")).Tag()
	d, err := middleware.ParseDevice(r.Header)
	if err != nil {
		return c, err
	}
	ids := r.Header.Values("X-Client-Id")
	if len(ids) > 1 {
		return c, i18n.CodeHeaderRepeated
	}
	c.ClientID, c.Device, c.IP = strings.TrimSpace(strings.Join(ids, "")), d, s.cfg.ClientIP(r)
	return c, nil
}

// httpCaller is the Caller of a request that passed the middleware chain.
func (s *Service) httpCaller(r *http.Request) caller {
	ctx := r.Context()
	client, _ := middleware.ClientFromContext(ctx)
	device, _ := middleware.DeviceFromContext(ctx)
	c := caller{clientID: client.ID, device: device, ip: s.cfg.ClientIP(r)}
	if loc := middleware.LocaleFromContext(ctx); loc != nil {
		c.language = loc.Tag()
	} else {
		c.language = s.cfg.Bundle.DefaultLocale().Tag()
	}
	return c
}

func (s *Service) serveSendCode(w http.ResponseWriter, r *http.Request) {
	var req SendCodeRequest
	err := readFields(w, r, s.cfg.MaxBodyBytes, []field{{"email", &req.Email}, {"type", &req.Type}, {"captcha_token", &req.CaptchaToken}})
	if err == nil {
		err = s.sendCode(r.Context(), s.httpCaller(r), req)
	}
	s.answer(w, r, err)
}

func (s *Service) serveUpdateEmail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var (
		id  Identity
		err error
	)
	if s.cfg.Verifier != nil {
		// RequireBearer, in the chain, put the token's user there.
		var ok bool
		if id, ok = middleware.IdentityFromContext(ctx); !ok || id.Subject == "" {
			err = i18n.CodeTokenEmpty
		}
	} else {
		id, err = s.identify(r)
	}
	if err == nil {
		err = s.checkAuthAge(id)
	}
	var email, code string
	if err == nil {
		err = readFields(w, r, s.cfg.MaxBodyBytes, []field{{"email", &email}, {"verify_code", &code}})
	}
	if err == nil {
		err = s.updateEmail(ctx, s.httpCaller(r), id, email, code)
	}
	s.answer(w, r, err)
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// answer writes the outcome of a request: success as the seed page has it
// (200, application/json, no body), a failure as middleware.WriteError does,
// after logging what the client will not see. Neither may be cached: both
// are about an account.
func (s *Service) answer(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil {
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		return
	}
	e := i18n.ErrorOf(err)
	if e.Code.Status() >= http.StatusInternalServerError {
		s.cfg.Logger.ErrorContext(r.Context(), "selfservice: request failed", "path", r.URL.Path, "error", err)
	}
	if e.Code == i18n.CodeReauthRequired {
		w.Header().Set("WWW-Authenticate", s.reauthChallenge())
	}
	middleware.WriteError(w, r, e)
}
