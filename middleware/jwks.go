package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// ErrKeysUnavailable means that no signing key has ever been loaded from the
// JWKS: the token may well be good, so it is answered as an internal failure
// (retry later) rather than as an invalid token (sign in again).
var ErrKeysUnavailable = errors.New("middleware: no JWKS keys loaded")

var errNoKID = errors.New("middleware: token has no kid")

// jwksKeys resolves token keys from a JWKS over HTTP through keyfunc. It
// keeps two views of the same key storage: remote, which only reads what the
// last fetch brought, and kf, which also refetches on an unknown kid. Every
// refetch first passes unknownKID, which never blocks a request, so a flood
// of made-up kids causes at most its rate of fetches.
type jwksKeys struct {
	remote     jwkset.Storage
	kf         keyfunc.Keyfunc
	unknownKID *rate.Limiter
	ctx        context.Context // the Verifier's lifetime
	cancel     context.CancelFunc
	timeout    time.Duration // one fetch
}

func newJWKSKeys(opts VerifierOptions) (*jwksKeys, error) {
	ctx, cancel := context.WithCancel(context.Background())
	logRefreshError := func(ctx context.Context, err error) {
		// The URL is the integrator's own and fine in logs; the error
		// may quote the response, which is not secret either.
		opts.Logger.WarnContext(ctx, "selfservice: JWKS fetch failed", "url", opts.JWKSURL, "error", err)
	}
	remote, err := jwkset.NewStorageFromHTTP(opts.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    opts.HTTPClient,
		Ctx:                       ctx,
		HTTPTimeout:               opts.HTTPTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       logRefreshError,
		RefreshInterval:           opts.RefreshInterval,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: JWKSURL: %w", ErrConfig, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{opts.JWKSURL: remote},
		// The gate is unknownKID below; this limiter only has to let
		// through what passed it, at once.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  opts.HTTPTimeout,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: JWKSURL: %w", ErrConfig, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:          ctx,
		Storage:      client,
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &jwksKeys{
		remote:     remote,
		kf:         kf,
		unknownKID: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1),
		ctx:        ctx,
		cancel:     cancel,
		timeout:    opts.HTTPTimeout,
	}, nil
}

// keyfunc returns the jwt.Keyfunc for one request. Tokens must name their
// key: without a kid keyfunc would try every key of the set and skip the
// key's own "alg" and "use", so such a token is refused.
func (k *jwksKeys) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKID
		}
		_, err := k.remote.KeyRead(ctx, kid)
		switch {
		case err == nil:
			return k.kf.KeyfuncCtx(ctx)(t)
		case !errors.Is(err, jwkset.ErrKeyNotFound):
			return nil, err
		case k.unknownKID.Allow():
			// Fetch the set again: the issuer may have rotated keys.
			key, err := k.refetch(ctx, t)
			if err != nil && !k.loaded(ctx) {
				return nil, errors.Join(ErrKeysUnavailable, err)
			}
			return key, err
		case !k.loaded(ctx):
			return nil, ErrKeysUnavailable
		default:
			return nil, err
		}
	}
}

// refetch fetches the set and resolves t's key from it. The fetch runs on
// the Verifier's own context, bounded by HTTPTimeout, so that a client that
// hangs up cannot waste the one fetch unknownKID allowed and keep rotated
// keys out; the request itself waits only as long as its context lets it.
func (k *jwksKeys) refetch(ctx context.Context, t *jwt.Token) (any, error) {
	type result struct {
		key any
		err error
	}
	done := make(chan result, 1)
	go func() {
		fctx, cancel := context.WithTimeout(k.ctx, k.timeout)
		defer cancel()
		key, err := k.kf.KeyfuncCtx(fctx)(t)
		done <- result{key, err}
	}()
	select {
	case r := <-done:
		return r.key, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k *jwksKeys) loaded(ctx context.Context) bool {
	keys, err := k.remote.KeyReadAll(ctx)
	return err == nil && len(keys) > 0
}

func (k *jwksKeys) close() { k.cancel() }

// defaults for VerifierOptions.
const (
	defaultLeeway             = 30 * time.Second
	defaultHTTPTimeout        = 10 * time.Second
	defaultRefreshInterval    = time.Hour
	defaultUnknownKIDInterval = 10 * time.Second
	defaultMaxTokenBytes      = 8 << 10
)

var defaultAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}
