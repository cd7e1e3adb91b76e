// Package selfservice is an embeddable net/http implementation of a CIAM
// self-service "change my email" API: POST /api/v2/sdk/email/send mails a
// verification code to a new address, and POST
// /api/v2/sdk/profile/update-email lets a signed-in user (a Bearer id_token
// checked against the issuer's JWKS) replace their email with that address.
// Errors are {"error_code","error_msg"} in English or Chinese, as X-L asks.
//
// The pieces compose: storage is four interfaces (package store, with an
// in-memory implementation in store/memstore); the four middlewares that
// check device headers, X-client-id, X-L and the bearer token live in package
// middleware; Service's handlers expect them in front. Mount wires all of it
// onto a ServeMux in one call:
//
//	verifier, err := middleware.NewVerifier(middleware.VerifierOptions{
//		Issuer:  "https://id.example.com",
//		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
//	})
//	if err != nil { ... }
//	defer verifier.Close()
//	_, err = selfservice.Mount(mux, selfservice.Config{
//		Users: users, Codes: codes, Limiter: limiter, Clients: clients,
//		Verifier: verifier, Mailer: mailer, Captcha: captcha,
//		CodeSecret: secret, // 32 random bytes, the same on every replica
//	})
package selfservice

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
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

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("selfservice: invalid configuration")

// ErrCaptchaRejected is what a CaptchaVerifier wraps when it refuses a
// token; it is answered with IDAAS.SDK.CAPTCHA.9202.
var ErrCaptchaRejected = errors.New("selfservice: captcha rejected")

// Config configures a Service. The stores, the mailer, the captcha verifier
// and the code secret are required: a missing one is a configuration error,
// not a silent pass. Clients and Verifier are required by Mount and Handler,
// which put the middlewares in front.
type Config struct {
	Users store.UserStore
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
	// Verifier checks the bearer id_token of update-email.
	Verifier *middleware.Verifier
	Mailer   Mailer
	// Captcha checks send requests; AllowAllCaptcha for development.
	Captcha CaptchaVerifier

	// CodeSecret keys the hash under which codes are stored. At least
	// MinCodeSecretLen random bytes, the same on every replica; changing
	// it voids the codes in flight.
	CodeSecret []byte
	// CodeTTL is how long a code stays valid. Default: 10m.
	CodeTTL time.Duration
	// MaxTries is how many wrong codes kill a code. Default: 5.
	MaxTries int
	// Budgets bound sends per address and per client IP, and wrong codes
	// per user and per client IP. Default: DefaultBudgets().
	Budgets Budgets
	// ClientIP returns the client address the IP budgets count for a
	// request. Default: RemoteIP, the connection's address; never a
	// header unless the function trusts a proxy (TrustProxies).
	ClientIP func(*http.Request) netip.Addr
	// MaxBodyBytes caps request bodies. Default: 4096.
	MaxBodyBytes int64
	// MaxAuthAge, when set, is a step-up rule for this sensitive change:
	// update-email needs an id_token whose auth_time is at most this old,
	// else it answers IDAAS.SDK.PARAM.9204 (HTTP 401 with an RFC 9470
	// WWW-Authenticate challenge) and the client signs the user in again.
	// Default: 0, no limit.
	MaxAuthAge time.Duration

	// NoticeTimeout bounds the notice mailed to the old address after a
	// change; the notice runs after the response, so it never delays or
	// undoes the change. Default: 30s.
	NoticeTimeout time.Duration
	// NoticeWorkers is how many notices are mailed at once. Default: 4.
	NoticeWorkers int
	// NoticeQueue is how many notices may wait for a worker; when the
	// queue is full a notice is dropped, logged and reported as
	// EventNoticeFailed, and the change stands. Default: 1024.
	NoticeQueue int

	// OnEvent, when set, receives every audit Event, synchronously on the
	// request's goroutine (or the notice's, for EventNoticeFailed): keep
	// it fast or hand the event off.
	OnEvent func(context.Context, Event)

	// Bundle holds the error messages. Default: i18n.Default().
	Bundle *i18n.Bundle
	// Logger receives audit records and internal failures, with
	// addresses masked and never a code. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Service serves the two endpoints. It is safe for concurrent use.
type Service struct {
	cfg   Config
	codes *codeHasher

	notices notifier
}

// New validates cfg, fills in its defaults and returns the Service.
func New(cfg Config) (*Service, error) {
	var missing []string
	for name, ok := range map[string]bool{
		"Users": cfg.Users != nil, "Codes": cfg.Codes != nil, "Limiter": cfg.Limiter != nil,
		"Mailer": cfg.Mailer != nil, "Captcha": cfg.Captcha != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrConfig, strings.Join(missing, ", "))
	}
	if len(cfg.CodeSecret) < MinCodeSecretLen {
		return nil, fmt.Errorf("%w: CodeSecret must hold at least %d bytes", ErrConfig, MinCodeSecretLen)
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
	if cfg.NoticeQueue == 0 {
		cfg.NoticeQueue = 1024
	}
	if cfg.CodeTTL < 0 || cfg.MaxTries < 0 || cfg.MaxBodyBytes < 0 || cfg.MaxAuthAge < 0 || cfg.NoticeTimeout < 0 ||
		cfg.NoticeWorkers < 0 || cfg.NoticeQueue < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
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
	var err error
	if cfg.Budgets, err = cfg.Budgets.withDefaults(); err != nil {
		return nil, err
	}
	cfg.Clients = newClientCache(cfg.Clients, cfg.ClientCacheTTL, cfg.Now)
	return &Service{cfg: cfg, codes: newCodeHasher(cfg.CodeSecret)}, nil
}

// Mount validates cfg and registers both endpoints on mux behind the
// standard middleware chain (see Service.Handler). Like ServeMux.Handle, it
// panics if mux already serves UpdateEmailPath or SendCodePath.
func Mount(mux *http.ServeMux, cfg Config) (*Service, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.register(mux); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns both endpoints on a ServeMux of their own, each behind the
// standard chain: Localize, POST only, DeviceHeaders, RequireClientID and,
// for update-email, RequireBearer. It fails if Config.Clients or
// Config.Verifier is missing.
func (s *Service) Handler() (http.Handler, error) {
	mux := http.NewServeMux()
	if err := s.register(mux); err != nil {
		return nil, err
	}
	return mux, nil
}

func (s *Service) register(mux *http.ServeMux) error {
	if s.cfg.Clients == nil || s.cfg.Verifier == nil {
		return fmt.Errorf("%w: the middleware chain needs Clients and Verifier", ErrConfig)
	}
	front := func(h http.Handler) http.Handler {
		return middleware.Localize(s.cfg.Bundle)(
			postOnly(middleware.DeviceHeaders(
				middleware.RequireClientID(s.cfg.Clients, s.cfg.Logger)(h))))
	}
	mux.Handle(UpdateEmailPath, front(middleware.RequireBearer(s.cfg.Verifier)(s.UpdateEmail())))
	mux.Handle(SendCodePath, front(s.SendCode()))
	return nil
}

// postOnly answers every method but POST with IDAAS.SDK.REQ.9101.
func postOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			middleware.WriteError(w, r, i18n.ErrMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// UpdateEmail returns the update-email handler. It expects RequireBearer in
// front (and the other middlewares for localised errors and device info);
// without verified claims in the context it answers an internal failure.
// After the middlewares, checks run in the contract's order: body, empty
// verify_code, email rules, user exists, code correct, email free, update.
func (s *Service) UpdateEmail() http.Handler { return http.HandlerFunc(s.updateEmail) }

func (s *Service) updateEmail(w http.ResponseWriter, r *http.Request) {
	if err := s.changeEmail(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	ok(w)
}

func (s *Service) changeEmail(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	claims := middleware.ClaimsFromContext(ctx)
	if claims == nil {
		return i18n.ErrInternal.WithCause(errors.New("selfservice: UpdateEmail served without RequireBearer"))
	}
	if err := s.checkAuthAge(w, claims); err != nil {
		return err
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var rawEmail, code string
	if err := decodeFields(body, []field{{"email", &rawEmail}, {"verify_code", &code}}); err != nil {
		return err
	}
	if strings.TrimSpace(code) == "" {
		return i18n.ErrCodeEmpty
	}
	email, canonical, err := CanonicalEmail(rawEmail)
	if err != nil {
		return err
	}
	user, err := s.cfg.Users.User(ctx, claims.Subject)
	if err != nil {
		return storeError(err, i18n.ErrUserNotFound)
	}
	if user.CanonicalEmail == canonical {
		// Already done, perhaps by this very request retried: succeed
		// without spending anyone's code.
		return nil
	}
	if !wellFormedCode(code) {
		return i18n.ErrCodeIncorrect
	}
	// Both budgets are charged before the code is evaluated, so that
	// concurrent guesses cannot overdraw them; the right code gives the
	// slots back. A spent budget refuses even the right code, and no code
	// is evaluated or spent.
	ip := s.cfg.ClientIP(r)
	taken, err := s.reserve(ctx, user.ID, i18n.ErrCodeBudgetSpent,
		budget{BudgetWrongCodesPerUser, wrongPerUserKey(user.ID), s.cfg.Budgets.WrongCodesPerUser},
		budget{BudgetWrongCodesPerIP, wrongPerIPKey(ip), s.cfg.Budgets.WrongCodesPerIP},
	)
	if err != nil {
		return err
	}
	key := store.CodeKey{Purpose: PurposeUpdateEmail, Email: canonical}
	hash := s.codes.hash(key.Purpose, key.Email, code)
	if err := s.cfg.Codes.Verify(ctx, key, hash, s.cfg.MaxTries, s.cfg.Now()); err != nil {
		// A store failure keeps the slots too: the code may have been
		// evaluated before the answer was lost.
		if errors.Is(err, store.ErrCodeInvalid) {
			s.event(ctx, EventCodeRejected, user.ID, email, "")
			return i18n.ErrCodeIncorrect
		}
		return i18n.ErrInternal.WithCause(err)
	}
	s.cancel(ctx, taken)
	if err := s.cfg.Users.UpdateEmail(ctx, user.ID, email, canonical); err != nil {
		if errors.Is(err, store.ErrEmailExists) {
			return i18n.ErrEmailExists
		}
		return storeError(err, i18n.ErrUserNotFound)
	}
	s.event(ctx, EventEmailChanged, user.ID, email, user.Email)
	if user.Email != "" {
		s.notifyOldAddress(ctx, user, email)
	}
	return nil
}

// language is the request's language, or the bundle's default.
func (s *Service) language(ctx context.Context) language.Tag {
	if loc := middleware.LocaleFromContext(ctx); loc != nil {
		return loc.Tag
	}
	return s.cfg.Bundle.DefaultLocale().Tag
}

// redact returns err's text with the given secrets hidden: addresses
// masked, in any case, and anything else (a code) starred. A mail server's
// or mail API's error often quotes what it was sent.
func redact(err error, addrs []string, secrets ...string) string {
	text := err.Error()
	for _, a := range addrs {
		if a != "" {
			text = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(a)).ReplaceAllLiteralString(text, MaskEmail(a))
		}
	}
	for _, sec := range secrets {
		if sec != "" {
			text = strings.ReplaceAll(text, sec, strings.Repeat("*", len(sec)))
		}
	}
	return text
}

// checkAuthAge applies Config.MaxAuthAge: the user must have signed in
// recently enough for this change.
func (s *Service) checkAuthAge(w http.ResponseWriter, claims *middleware.Claims) error {
	if s.cfg.MaxAuthAge == 0 {
		return nil
	}
	if claims.AuthTime == nil || s.cfg.Now().Sub(claims.AuthTime.Time) > s.cfg.MaxAuthAge {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer error="insufficient_user_authentication", max_age=%d`, int64(s.cfg.MaxAuthAge/time.Second)))
		return i18n.ErrReauthRequired
	}
	return nil
}

// SendCode returns the send-code handler. It expects RequireClientID and
// DeviceHeaders in front (Localize for localised errors). Checks run in this
// order: body, type, email rules, captcha, send limits, then the code is
// stored and mailed. The answer does not depend on whether the address
// belongs to anyone.
func (s *Service) SendCode() http.Handler { return http.HandlerFunc(s.sendCode) }

func (s *Service) sendCode(w http.ResponseWriter, r *http.Request) {
	if err := s.mailCode(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	ok(w)
}

// mailCode serves PurposeUpdateEmail only: the family's other send types
// (REGISTER_EMS, LOGIN_EMS, ...) get IDAAS.SDK.PARAM.9203 like unknown ones.
func (s *Service) mailCode(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var rawEmail, purpose, captcha string
	if err := decodeFields(body, []field{{"email", &rawEmail}, {"type", &purpose}, {"captcha_token", &captcha}}); err != nil {
		return err
	}
	if purpose != PurposeUpdateEmail {
		return i18n.ErrCodeTypeUnsupport
	}
	email, canonical, err := CanonicalEmail(rawEmail)
	if err != nil {
		return err
	}
	if strings.TrimSpace(captcha) == "" {
		return i18n.ErrCaptchaFailed
	}
	if err := s.cfg.Captcha.VerifyCaptcha(ctx, captcha); err != nil {
		if errors.Is(err, ErrCaptchaRejected) {
			return i18n.ErrCaptchaFailed.WithCause(err)
		}
		return i18n.ErrInternal.WithCause(err)
	}
	// The client's budget first: a machine that mails many addresses is
	// stopped whatever the addresses. A refused send costs no budget.
	ip := s.cfg.ClientIP(r)
	if _, err := s.reserve(ctx, "", i18n.ErrSendRateLimited,
		budget{BudgetSendsPerIP, sendsPerIPKey(ip), s.cfg.Budgets.SendsPerIP},
		budget{BudgetSendsPerEmail, sendsPerEmailKey(purpose, canonical), s.cfg.Budgets.SendsPerEmail},
	); err != nil {
		return err
	}
	now := s.cfg.Now()
	code := newCode()
	key := store.CodeKey{Purpose: purpose, Email: canonical}
	if err := s.cfg.Codes.Put(ctx, key, s.codes.hash(purpose, canonical, code), now.Add(s.cfg.CodeTTL)); err != nil {
		return i18n.ErrInternal.WithCause(err)
	}
	msg := Message{Type: purpose, To: email, Code: code, ExpiresIn: s.cfg.CodeTTL, Language: s.language(ctx)}
	if err := s.cfg.Mailer.Send(ctx, msg); err != nil {
		// The mail may have left or not: either way the code must not
		// stay usable, since it may now sit in a log or a bounce.
		dead := make([]byte, sha256.Size)
		_, _ = rand.Read(dead)
		_ = s.cfg.Codes.Put(context.WithoutCancel(ctx), key, dead, now)
		return i18n.ErrSendFailed.WithCause(errors.New(redact(err, []string{email, canonical}, code)))
	}
	s.event(ctx, EventCodeSent, "", email, "")
	return nil
}

// storeError maps a store failure: not-found to notFound, anything else to
// the internal-error code with the cause kept for the log.
func storeError(err error, notFound *i18n.Error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	return i18n.ErrInternal.WithCause(err)
}

// fail logs what the client will not see and writes the error, with a
// Retry-After in whole seconds, rounded up, when it has one.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *i18n.Error
	if !errors.As(err, &e) || e.Status >= http.StatusInternalServerError {
		s.cfg.Logger.ErrorContext(r.Context(), "selfservice: request failed",
			"path", r.URL.Path, "error", err)
	}
	if e != nil && e.RetryAfter() > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter()+time.Second-1)/time.Second), 10))
	}
	middleware.WriteError(w, r, err)
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// ok answers success as the seed page has it: 200, application/json and no
// body. Like every answer it must not be cached: it is about an account.
func ok(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
}
