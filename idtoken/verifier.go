// Package idtoken verifies OpenID Connect id_tokens against the issuer's
// JWKS: signature, algorithm allow-list, issuer, audience and authorized
// party, dates, and the markers that tell an access token from an id_token
// (OpenID Connect Core 3.1.3.7 and section 2, RFC 7519, RFC 8725, RFC 9068).
// A *Verifier is the middleware.TokenVerifier that the root package and
// middleware.RequireBearer use; it is safe for concurrent use.
//
// Quick start:
//
//	v, err := idtoken.New(idtoken.Options{
//		Issuer:  "https://id.example.com",
//		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
//	})
//	if err != nil { ... }
//	defer v.Close()
//	id, err := v.VerifyToken(ctx, token, clientID) // id.Subject is the user
//
// Keys are fetched with github.com/MicahParks/keyfunc at start, in the
// background (every RefreshInterval, and while none is loaded), and when a
// token names an unknown kid; Ready tells a readiness probe whether keys
// are loaded.
package idtoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/middleware"
)

// Options configures New. Issuer and exactly one of JWKSURL
// and Keyfunc are required.
type Options struct {
	// Issuer is the exact "iss" tokens must carry. Required: an empty
	// issuer is a configuration error, never a pass.
	Issuer string

	// JWKSURL is where the issuer publishes its keys; they are fetched
	// with keyfunc at start, every RefreshInterval, and when a token names
	// an unknown kid (at most once per UnknownKIDInterval).
	JWKSURL string
	// AllowInsecureJWKS accepts a JWKSURL over plain http to a host that
	// is not loopback. Off by default: whoever sits on that path could
	// hand out signing keys.
	AllowInsecureJWKS bool
	// Keyfunc resolves keys instead of JWKSURL, e.g. keyfunc.Keyfunc's
	// Keyfunc method or a static key in tests. Tokens must name their key
	// (kid) here too: a token without one is refused before Keyfunc runs,
	// so that a Keyfunc written for one key set cannot be handed a token
	// meant to be tried against every key.
	Keyfunc jwt.Keyfunc

	// Algorithms is the allow-list of "alg" values. HMAC algorithms and
	// "none" are refused even if listed. Default: RS256, PS256, ES256, EdDSA.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default: 30s;
	// a negative value means none.
	Leeway time.Duration
	// MaxTokenBytes refuses longer tokens before any parsing. Default: 8 KiB.
	MaxTokenBytes int

	// HTTPClient fetches the JWKS. Default: a client of its own.
	HTTPClient *http.Client
	// HTTPTimeout bounds one JWKS fetch. Default: 10s.
	HTTPTimeout time.Duration
	// RefreshInterval is how often the JWKS is fetched in the background.
	// Default: 1h.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by
	// tokens naming an unknown kid. Default: 10s.
	UnknownKIDInterval time.Duration
	// KeyRetryMin and KeyRetryMax pace the fetches while no key is loaded
	// (the JWKS was down at start-up, or served no usable key): a goroutine
	// fetches again KeyRetryMin after the failed fetch, then waits twice as
	// long each time up to KeyRetryMax, each wait shortened by a random
	// part of up to half so that replicas spread out, and stops once a key
	// is loaded. Ready thus turns nil within about KeyRetryMax of the JWKS
	// answering, with no traffic at all. Default: 250ms and 5s (or
	// KeyRetryMin, if that is longer).
	KeyRetryMin time.Duration
	KeyRetryMax time.Duration

	// Cache keeps verified tokens so that a repeated token skips the
	// signature check. Default: off; see CacheOptions for why.
	Cache CacheOptions

	// Logger receives JWKS fetch failures, key outages and refused tokens.
	// Default: slog.Default().
	Logger *slog.Logger
	// RefusalLogLevel is the level at which Verify logs each token it
	// refuses, once: the message "selfservice: id_token refused" with the
	// reason (the text of the sentinel error that names it, such as
	// ErrTokenAudience or jwt.ErrTokenExpired), the kid and alg of the
	// token's header, the client id it was checked for, and the error.
	// Never the token, nor its claims: they are unverified, and sub is a
	// user id. Default: slog.LevelInfo, the zero value, which
	// slog.Default() shows: a refusal is the client's failure, not the
	// server's, so not a warning, but an operator must be able to tell an
	// audience from an expiry from a signature failure without changing
	// the configuration. Choose slog.LevelDebug to keep refusals out of
	// production logs (each refusal is one line, which a flood of bad
	// tokens multiplies), or a level the Logger drops to silence them.
	RefusalLogLevel slog.Level
	// MeterProvider receives the duration of each JWKS fetch, as the
	// histogram selfservice.dependency.duration with dependency "jwks",
	// operation "fetch" and error (a transport failure or a status other
	// than 2xx). Default: otel.GetMeterProvider(), the global one, which
	// records nothing until the application installs an SDK.
	MeterProvider metric.MeterProvider
	// TracerProvider starts a client span "jwks.fetch" around each JWKS
	// fetch. Fetches run on the Verifier's own context (at start, in the
	// background, or once for a token's unknown kid), so each span is a
	// root. Default: otel.GetTracerProvider(), the global one.
	TracerProvider trace.TracerProvider

	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Verifier checks id_tokens per OpenID Connect Core 3.1.3.7 and section 2,
// and RFC 8725:
//
//   - the token is a JWS in compact form of at most MaxTokenBytes (an
//     encrypted token, a JWE, is refused: 3.1.3.7 step 1 does not apply);
//   - its header has an alg of the allow-list (never none or HMAC, steps 7
//     and 8), a kid, no crit, and a typ of JWT if any;
//   - its payload is decoded strictly: exp, iat, nbf and auth_time are JSON
//     numbers, a typ claim is JWT or ID, and a token with a client_id,
//     scope or scp claim is an access token (RFC 9068) and refused (RFC
//     8725 sections 3.11 and 3.12);
//   - the signature is checked with the issuer's key named by kid, whose
//     published alg and use must fit (step 6);
//   - iss equals Issuer exactly (step 2); aud contains the client id (step
//     3); with several audiences, or any azp, azp is the client id (steps 4
//     and 5); and when the context carries that client
//     (middleware.ClientFromContext) registered with an issuer
//     (store.Client's Issuer and JWKSURL), it is this one
//     (ErrClientOtherIssuer), checked first;
//   - exp is required and not past (step 9), iat is required and not in
//     the future, nbf if present is not in the future (step 10), each
//     within Leeway; sub is required, at most 255 printable ASCII
//     characters.
//
// nonce, acr and auth_time (steps 11 to 13) belong to the party that sent
// the authentication request; Claims carries them for the caller to judge.
// It is safe for concurrent use.
type Verifier struct {
	opts   Options
	parser *jwt.Parser
	jwks   *jwksKeys   // nil when Keyfunc is given
	cache  *tokenCache // nil when off
}

// New validates opts and, with JWKSURL, fetches the keys once before
// it returns and then in the background. The first fetch is waited for at
// most HTTPTimeout: a JWKS that refuses connections or answers an error
// returns at once, one that hangs holds New that long. A JWKS that
// cannot be reached at start is not an error: requests are answered as
// internal failures until keys arrive, fetched again in the background
// (KeyRetryMin, KeyRetryMax) with or without traffic; see Ready. Call Close
// to stop the background work.
func New(opts Options) (*Verifier, error) {
	if strings.TrimSpace(opts.Issuer) == "" {
		return nil, fmt.Errorf("%w: Issuer is required", configerr.Err)
	}
	if (opts.JWKSURL == "") == (opts.Keyfunc == nil) {
		return nil, fmt.Errorf("%w: exactly one of JWKSURL and Keyfunc is required", configerr.Err)
	}
	if opts.JWKSURL != "" && !opts.AllowInsecureJWKS {
		if err := checkJWKSURL(opts.JWKSURL); err != nil {
			return nil, err
		}
	}
	// A copy: the caller's slice must not be able to add HS256 later.
	opts.Algorithms = slices.Clone(opts.Algorithms)
	if len(opts.Algorithms) == 0 {
		opts.Algorithms = slices.Clone(defaultAlgorithms)
	}
	for _, alg := range opts.Algorithms {
		if alg == "none" || strings.HasPrefix(alg, "HS") {
			return nil, fmt.Errorf("%w: algorithm %q is not allowed for id_tokens", configerr.Err, alg)
		}
	}
	switch {
	case opts.Leeway == 0:
		opts.Leeway = defaultLeeway
	case opts.Leeway < 0:
		opts.Leeway = 0
	}
	if opts.MaxTokenBytes == 0 {
		opts.MaxTokenBytes = defaultMaxTokenBytes
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if opts.JWKSURL != "" {
		// A copy, so that the caller's client is not instrumented too.
		client := *opts.HTTPClient
		client.Transport = newJWKSTransport(client.Transport, opts.MeterProvider, opts.TracerProvider)
		opts.HTTPClient = &client
	}
	if opts.HTTPTimeout == 0 {
		opts.HTTPTimeout = defaultHTTPTimeout
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = defaultRefreshInterval
	}
	if opts.UnknownKIDInterval == 0 {
		opts.UnknownKIDInterval = defaultUnknownKIDInterval
	}
	if opts.KeyRetryMin < 0 || opts.KeyRetryMax < 0 {
		return nil, fmt.Errorf("%w: negative KeyRetryMin or KeyRetryMax", configerr.Err)
	}
	if opts.KeyRetryMin == 0 {
		opts.KeyRetryMin = defaultKeyRetryMin
	}
	if opts.KeyRetryMax == 0 {
		opts.KeyRetryMax = max(defaultKeyRetryMax, opts.KeyRetryMin)
	}
	if opts.KeyRetryMax < opts.KeyRetryMin {
		return nil, fmt.Errorf("%w: KeyRetryMax is shorter than KeyRetryMin", configerr.Err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cache, err := newTokenCache(opts.Cache)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		opts:  opts,
		cache: cache,
		parser: jwt.NewParser(
			jwt.WithValidMethods(opts.Algorithms),
			jwt.WithIssuer(opts.Issuer),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithTimeFunc(opts.Now),
		),
	}
	if opts.JWKSURL != "" {
		k, err := newJWKSKeys(opts)
		if err != nil {
			return nil, err
		}
		v.jwks = k
	}
	return v, nil
}

// checkJWKSURL requires https, or http to a loopback host (a sidecar, a
// test server).
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: JWKSURL does not parse", configerr.Err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%w: JWKSURL must be https (or http to a loopback host, or set AllowInsecureJWKS)", configerr.Err)
}

// Close stops the background JWKS refresh. It is safe to call more than once.
func (v *Verifier) Close() {
	if v.jwks != nil {
		v.jwks.close()
	}
}

// Ready reports whether keys are available: nil while the last JWKS fetch
// that succeeded brought at least one key (always, with a Keyfunc),
// ErrKeysUnavailable otherwise. Use it in a readiness probe: while no key is
// loaded the Verifier fetches the set in the background (KeyRetryMin,
// KeyRetryMax), and a call that finds none makes sure it does, so Ready
// turns nil within seconds of the JWKS answering, with no traffic at all.
func (v *Verifier) Ready(ctx context.Context) error {
	if v.jwks != nil && !v.jwks.loaded(ctx) {
		v.jwks.ensureRetry()
		return ErrKeysUnavailable
	}
	return nil
}

// VerifyToken checks raw as an id_token issued to clientID and returns the
// user it signed in, with its *Claims in Identity.Claims. A token that
// fails any check yields an error wrapping i18n.CodeTokenInvalid and the
// reason (see the Err* constants); a key that cannot be had (see
// ErrKeysUnavailable) yields one wrapping i18n.CodeInternal and
// ErrKeysUnavailable. Either is logged once,
// here (see Options.RefusalLogLevel). With the cache on (Options.Cache), a
// token that passed before is not parsed again: only the checks on clientID
// run.
func (v *Verifier) VerifyToken(ctx context.Context, raw, clientID string) (middleware.Identity, error) {
	claims, hdr, err := v.verify(ctx, raw, clientID)
	if err == nil {
		id := middleware.Identity{Subject: claims.Subject, Claims: claims}
		if claims.AuthTime != nil {
			id.AuthTime = claims.AuthTime.Time
		}
		return id, nil
	}
	if errors.Is(err, ErrKeysUnavailable) {
		v.opts.Logger.ErrorContext(ctx, "selfservice: token keys unavailable", "kid", hdr.kid, "error", logSafe(err.Error(), maxLoggedError))
		return middleware.Identity{}, i18n.Wrap(i18n.CodeInternal, err)
	}
	v.opts.Logger.Log(ctx, v.opts.RefusalLogLevel, "selfservice: id_token refused",
		"reason", refusalReason(err), "kid", hdr.kid, "alg", hdr.alg, "client", logSafe(clientID, middleware.MaxClientIDLen), "error", logSafe(err.Error(), maxLoggedError))
	return middleware.Identity{}, i18n.Wrap(i18n.CodeTokenInvalid, err)
}

// ErrClientOtherIssuer: the context's client (middleware.ClientFromContext,
// the one the token is verified for) is registered with an issuer other
// than the Verifier's: its store.Client names another Issuer, or another
// JWKSURL than the Verifier's own. Such a client takes no token of this
// Verifier's issuer (use Issuers to verify each client against its own);
// answered IDAAS.SDK.PARAM.0016, never a pass.
const ErrClientOtherIssuer reason = "idtoken: client is registered with another issuer"

// checkClientIssuer refuses a token for clientID when the context carries
// that client and its registration names an issuer other than v's. A
// client registered without one takes v's tokens, as does one without the
// context (the Go API without a client, a caller of its own).
func (v *Verifier) checkClientIssuer(ctx context.Context, clientID string) error {
	c, ok := middleware.ClientFromContext(ctx)
	if !ok || c.ID != clientID || (c.Issuer == "" && c.JWKSURL == "") {
		return nil
	}
	if c.Issuer != v.opts.Issuer || (v.opts.JWKSURL != "" && c.JWKSURL != v.opts.JWKSURL) {
		return ErrClientOtherIssuer
	}
	return nil
}

// tokenHeader is what a refusal logs of the token's header, cut to a
// length a log line can take.
type tokenHeader struct{ kid, alg string }

func headerOf(h map[string]any) tokenHeader {
	kid, _ := h["kid"].(string)
	alg, _ := h["alg"].(string)
	return tokenHeader{kid: logSafe(kid, maxLoggedKID), alg: logSafe(alg, maxLoggedAlg)}
}

// Lengths of what a refusal logs. The error may quote the kid (jwkset
// does), which the client chose, up to MaxTokenBytes long.
const (
	maxLoggedKID   = 128
	maxLoggedAlg   = 16
	maxLoggedError = 512
)

// logSafe cuts s to at most n bytes, at a character boundary. Log handlers
// quote what they print; the cut keeps padded headers from bloating logs.
func logSafe(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// refusalReasons are the sentinels a refusal is named by in logs, the more
// specific first (ErrTokenAuthorizedParty wraps ErrTokenAudience; the
// package's reasons arrive wrapped in jwt's ErrTokenMalformed or
// ErrTokenUnverifiable).
var refusalReasons = []error{
	ErrClientOtherIssuer, ErrTokenTooLarge, ErrTokenAccessToken, ErrTokenType, ErrTokenNumericDate, ErrTokenCrit, ErrTokenNoKID,
	ErrTokenAuthorizedParty, ErrTokenAudience, ErrTokenNoSubject, ErrTokenSubject, ErrTokenNoIssuedAt,
	jwkset.ErrKeyNotFound, jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenInvalidIssuer, jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenMalformed, jwt.ErrTokenUnverifiable,
}

func refusalReason(err error) string {
	for _, r := range refusalReasons {
		if errors.Is(err, r) {
			return r.Error()
		}
	}
	return "other"
}

// verify is Verify without the logging: the claims, or why not, and what the
// token's header says.
func (v *Verifier) verify(ctx context.Context, raw, clientID string) (*Claims, tokenHeader, error) {
	if len(raw) > v.opts.MaxTokenBytes {
		return nil, tokenHeader{}, ErrTokenTooLarge
	}
	// Before the cache, too, and any key lookup: the token is refused
	// whatever it is.
	if err := v.checkClientIssuer(ctx, clientID); err != nil {
		return nil, tokenHeader{}, err
	}
	if v.cache != nil {
		if claims, kid := v.cache.get(raw, v.opts.Now()); claims != nil {
			// Only the checks that depend on this request remain.
			hdr := tokenHeader{kid: logSafe(kid, maxLoggedKID)}
			if err := checkAudience(claims, clientID); err != nil {
				return nil, hdr, err
			}
			return claims, hdr, nil
		}
	}
	keyfunc := v.opts.Keyfunc
	if v.jwks != nil {
		keyfunc = v.jwks.keyfunc(ctx)
	}
	t := new(idToken)
	tok, err := v.parser.ParseWithClaims(raw, t, func(tok *jwt.Token) (any, error) {
		if err := checkHeader(tok.Header); err != nil {
			return nil, err
		}
		// Cheap claim checks before key work: a token of another issuer
		// (a tenant's, with idtoken.Issuers) costs no key lookup, and no
		// JWKS fetch for a kid this issuer never had. The signature is
		// still checked, and iss again, for a token that passes.
		if t.Issuer != v.opts.Issuer {
			return nil, jwt.ErrTokenInvalidIssuer
		}
		return keyfunc(tok)
	})
	var hdr tokenHeader
	if tok != nil {
		hdr = headerOf(tok.Header)
	}
	if err != nil {
		return nil, hdr, err
	}
	if !tok.Valid {
		return nil, hdr, jwt.ErrTokenUnverifiable
	}
	claims := t.verified()
	if err := checkIDToken(claims); err != nil {
		return nil, hdr, err
	}
	if err := checkAudience(claims, clientID); err != nil {
		return nil, hdr, err
	}
	if v.cache != nil {
		kid, _ := tok.Header["kid"].(string)
		v.cache.put(raw, claims, kid, v.opts.Now())
	}
	return claims, hdr, nil
}
