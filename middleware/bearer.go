package middleware

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

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
)

// ErrConfig reports unusable VerifierOptions.
var ErrConfig = errors.New("middleware: invalid configuration")

// Reasons a token is refused, wrapped in the i18n.ErrTokenInvalid that
// Verify returns so that logs can tell them apart; clients see only
// IDAAS.SDK.PARAM.0016.
var (
	ErrTokenTooLarge   = errors.New("middleware: token larger than MaxTokenBytes")
	ErrTokenAudience   = errors.New("middleware: token audience is not this client")
	ErrTokenNoSubject  = errors.New("middleware: token has no sub")
	ErrTokenNoIssuedAt = errors.New("middleware: token has no iat")
	ErrTokenType       = errors.New("middleware: token typ is not an id_token")
	ErrTokenCrit       = errors.New("middleware: token has critical header extensions")
)

// Claims are the id_token claims the package reads. Sub is the user id.
type Claims struct {
	jwt.RegisteredClaims
	AuthorizedParty string           `json:"azp,omitempty"`
	AuthTime        *jwt.NumericDate `json:"auth_time,omitempty"`
	Nonce           string           `json:"nonce,omitempty"`
}

// VerifierOptions configures NewVerifier. Issuer and exactly one of JWKSURL
// and Keyfunc are required.
type VerifierOptions struct {
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
	// Keyfunc method or a static key in tests.
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

	// Cache keeps verified tokens so that a repeated token skips the
	// signature check. Default: off; see CacheOptions for why.
	Cache CacheOptions

	// Logger receives JWKS fetch failures and key outages. Default:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Verifier checks id_tokens: signature by a key of the issuer, algorithm
// allow-list, iss, aud containing the client id, exp, nbf, iat and sub, per
// OpenID Connect Core 3.1.3.7 and RFC 8725. It is safe for concurrent use.
type Verifier struct {
	opts   VerifierOptions
	parser *jwt.Parser
	jwks   *jwksKeys   // nil when Keyfunc is given
	cache  *tokenCache // nil when off
}

// NewVerifier validates opts and, with JWKSURL, fetches the keys once before
// it returns (waiting at most HTTPTimeout) and then in the background. A
// JWKS that cannot be reached at start is not an error: requests are
// answered as internal failures until keys arrive (see Ready). Call Close to
// stop the background refresh.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if strings.TrimSpace(opts.Issuer) == "" {
		return nil, fmt.Errorf("%w: Issuer is required", ErrConfig)
	}
	if (opts.JWKSURL == "") == (opts.Keyfunc == nil) {
		return nil, fmt.Errorf("%w: exactly one of JWKSURL and Keyfunc is required", ErrConfig)
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
			return nil, fmt.Errorf("%w: algorithm %q is not allowed for id_tokens", ErrConfig, alg)
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
	if opts.HTTPTimeout == 0 {
		opts.HTTPTimeout = defaultHTTPTimeout
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = defaultRefreshInterval
	}
	if opts.UnknownKIDInterval == 0 {
		opts.UnknownKIDInterval = defaultUnknownKIDInterval
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
		return fmt.Errorf("%w: JWKSURL does not parse", ErrConfig)
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
	return fmt.Errorf("%w: JWKSURL must be https (or http to a loopback host, or set AllowInsecureJWKS)", ErrConfig)
}

// Close stops the background JWKS refresh. It is safe to call more than once.
func (v *Verifier) Close() {
	if v.jwks != nil {
		v.jwks.close()
	}
}

// Ready reports whether keys are available: nil once a JWKS fetch has
// brought at least one key (always, with a Keyfunc), ErrKeysUnavailable
// before. Use it in a readiness probe.
func (v *Verifier) Ready(ctx context.Context) error {
	if v.jwks != nil && !v.jwks.loaded(ctx) {
		return ErrKeysUnavailable
	}
	return nil
}

// Verify checks raw as an id_token issued to clientID and returns its claims.
// A token that fails any check yields an error wrapping i18n.ErrTokenInvalid;
// keys that could never be loaded yield one wrapping i18n.ErrInternal and
// ErrKeysUnavailable. With the cache on (VerifierOptions.Cache), a token that
// passed before is not parsed again: only the checks on clientID run.
func (v *Verifier) Verify(ctx context.Context, raw, clientID string) (*Claims, error) {
	if len(raw) > v.opts.MaxTokenBytes {
		return nil, i18n.ErrTokenInvalid.WithCause(ErrTokenTooLarge)
	}
	if v.cache != nil {
		if claims := v.cache.get(raw, v.opts.Now()); claims != nil {
			// Only the checks that depend on this request remain.
			if err := checkClaims(claims, clientID); err != nil {
				return nil, i18n.ErrTokenInvalid.WithCause(err)
			}
			return claims, nil
		}
	}
	keyfunc := v.opts.Keyfunc
	if v.jwks != nil {
		keyfunc = v.jwks.keyfunc(ctx)
	}
	claims := new(Claims)
	tok, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t.Header); err != nil {
			return nil, err
		}
		return keyfunc(t)
	})
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, i18n.ErrInternal.WithCause(err)
		}
		return nil, i18n.ErrTokenInvalid.WithCause(err)
	}
	if !tok.Valid {
		return nil, i18n.ErrTokenInvalid
	}
	if err := checkClaims(claims, clientID); err != nil {
		return nil, i18n.ErrTokenInvalid.WithCause(err)
	}
	if v.cache != nil {
		v.cache.put(raw, claims, v.opts.Now())
	}
	return claims, nil
}

// checkHeader refuses what RFC 8725 warns about before any key is fetched:
// extensions we would have to understand (crit) and tokens typed as
// something other than an id_token, such as an access token (RFC 9068).
func checkHeader(h map[string]any) error {
	if _, ok := h["crit"]; ok {
		return ErrTokenCrit
	}
	if typ, ok := h["typ"]; ok {
		s, _ := typ.(string)
		if !strings.EqualFold(s, "JWT") {
			return ErrTokenType
		}
	}
	return nil
}

func checkClaims(c *Claims, clientID string) error {
	if c.Subject == "" {
		return ErrTokenNoSubject
	}
	if c.IssuedAt == nil {
		return ErrTokenNoIssuedAt
	}
	if clientID == "" || !slices.Contains(c.Audience, clientID) {
		return ErrTokenAudience
	}
	// OIDC Core 3.1.3.7: with several audiences the authorized party must
	// be this client; when present it must be this client anyway.
	if (len(c.Audience) > 1 || c.AuthorizedParty != "") && c.AuthorizedParty != clientID {
		return ErrTokenAudience
	}
	return nil
}

// RequireBearer returns a middleware that requires "Authorization: Bearer
// <id_token>" (the scheme in any case) and verifies the token with v for the
// client that RequireClientID found, or else the X-client-id header. A
// missing or empty token is IDAAS.SDK.PARAM.0015, any failed check
// IDAAS.SDK.PARAM.0016. The claims go into the request context. Panics if v
// is nil.
func RequireBearer(v *Verifier) func(http.Handler) http.Handler {
	if v == nil {
		panic("middleware: RequireBearer: nil Verifier")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := bearerToken(headerValue(r.Header, "Authorization"))
			if !ok {
				WriteError(w, r, i18n.ErrTokenEmpty)
				return
			}
			clientID := ""
			if c, ok := ClientFromContext(r.Context()); ok {
				clientID = c.ID
			} else {
				clientID = strings.TrimSpace(headerValue(r.Header, "X-Client-Id"))
			}
			claims, err := v.Verify(r.Context(), raw, clientID)
			if err != nil {
				if errors.Is(err, i18n.ErrInternal) {
					v.opts.Logger.ErrorContext(r.Context(), "selfservice: token keys unavailable", "error", err)
				}
				WriteError(w, r, err)
				return
			}
			r, st := withState(r)
			st.claims = claims
			next.ServeHTTP(w, r)
		})
	}
}

// bearerToken extracts the token of a Bearer authorization; ok is false when
// there is none or it is blank.
func bearerToken(h string) (token string, ok bool) {
	const scheme = "Bearer"
	h = strings.TrimSpace(h)
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	rest := h[len(scheme):]
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}
