package idtoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/ciamkit/selfservice/internal/configerr"
)

// ErrKeysUnavailable means that the key a token names cannot be had: no
// signing key has been loaded from the JWKS yet, or the token names a kid
// the loaded set lacks and the last fetch of the set for such a kid failed
// (the issuer may have rotated its keys during an outage), or the request's
// context ended while it waited for the fetch under way for such a kid.
// The token may well be good, so it is answered as an internal failure (retry later)
// rather than as an invalid token (sign in again).
const ErrKeysUnavailable reason = "idtoken: JWKS keys unavailable"

// jwksKeys resolves token keys from a JWKS over HTTP through keyfunc. It
// keeps three views of the same key storage: remote, which only reads what
// the last fetch brought; client, which fetches the set again when asked
// for a kid it lacks; and kf, the keyfunc over client. Every refetch a token
// causes first passes unknownKID, which never blocks a request, so a flood
// of made-up kids causes at most its rate of fetches. One refetch runs at a
// time: a token of an unknown kid that arrives meanwhile waits for it, at
// most until it ends, and looks its kid up once more, so that the tokens of
// a rotated key that the limiter holds back are not refused while the fetch
// that brings the key is under way.
//
// Besides jwkset's own refresh every RefreshInterval, a goroutine fetches
// while no key is loaded (retry), with capped exponential backoff: without
// it a server that started while the JWKS was down, or whose JWKS once
// served an empty set, would wait for a token or the hourly refresh before
// it could become ready. It starts with the Verifier when the first fetch
// brought no key, and again whenever Ready or a token finds none.
type jwksKeys struct {
	remote     jwkset.Storage
	client     jwkset.Storage
	kf         keyfunc.Keyfunc
	unknownKID *rate.Limiter
	ctx        context.Context // the Verifier's lifetime
	cancel     context.CancelFunc
	timeout    time.Duration // one fetch

	retryMin, retryMax time.Duration
	logger             *slog.Logger
	mu                 sync.Mutex // guards running and closed, and starting retry
	running, closed    bool
	retrying           sync.WaitGroup

	// refetchFailed is whether the last fetch of the set for an unknown
	// kid failed; until one succeeds, unknown kids are ErrKeysUnavailable.
	refetchFailed atomic.Bool

	// refetchMu guards refetching, and the unknownKID decision with it, so
	// that a token either starts a refetch or sees the one in flight.
	refetchMu sync.Mutex
	// refetching is closed when the refetch in flight ends, after
	// refetchFailed tells how it went; nil while none is.
	refetching chan struct{}
}

// fetchErrKey is the context key under which refetch collects the error of
// the fetch jwkset makes for it: jwkset gives a failed fetch only to the
// storage's error handler, and answers the read as a kid not found.
type fetchErrKey struct{}

func newJWKSKeys(opts Options) (*jwksKeys, error) {
	ctx, cancel := context.WithCancel(context.Background())
	logRefreshError := func(ctx context.Context, err error) {
		if slot, ok := ctx.Value(fetchErrKey{}).(*error); ok {
			*slot = err
		}
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
		return nil, fmt.Errorf("%w: JWKSURL: %w", configerr.Err, err)
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
		return nil, fmt.Errorf("%w: JWKSURL: %w", configerr.Err, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:          ctx,
		Storage:      client,
		UseWhitelist: keyUses,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %w", configerr.Err, err)
	}
	k := &jwksKeys{
		remote:     remote,
		client:     client,
		kf:         kf,
		unknownKID: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1),
		ctx:        ctx,
		cancel:     cancel,
		timeout:    opts.HTTPTimeout,
		retryMin:   opts.KeyRetryMin,
		retryMax:   opts.KeyRetryMax,
		logger:     opts.Logger,
	}
	k.ensureRetry()
	return k, nil
}

// ensureRetry starts retry unless keys are loaded, it runs already or the
// Verifier is closed.
func (k *jwksKeys) ensureRetry() {
	if k.loaded(k.ctx) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.running || k.closed {
		return
	}
	k.running = true
	k.retrying.Go(func() {
		k.retry(k.retryMin, k.retryMax)
		k.mu.Lock()
		k.running = false
		k.mu.Unlock()
	})
}

// retryKID is the kid retry asks the client for. The client holds no key
// at all when retry asks, so any kid makes it fetch the set; the name only
// makes the purpose plain in a debugger.
const retryKID = "selfservice: no key loaded yet"

// retry fetches the set until a key is loaded or the Verifier closes,
// waiting first, then doubling each wait from wait up to maxWait, each wait
// cut by a random part of up to half. Failed fetches are logged by the
// storage's error handler, like every other fetch.
func (k *jwksKeys) retry(wait, maxWait time.Duration) {
	timer := time.NewTimer(jitter(wait))
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-k.ctx.Done():
			return
		case <-timer.C:
		}
		// Another fetch (a token's kid, the periodic refresh) may have
		// brought keys meanwhile.
		if !k.loaded(k.ctx) {
			ctx, cancel := context.WithTimeout(k.ctx, k.timeout)
			_, _ = k.client.KeyRead(ctx, retryKID)
			cancel()
		}
		if k.loaded(k.ctx) {
			k.logger.InfoContext(k.ctx, "selfservice: JWKS keys loaded", "attempts", attempt)
			return
		}
		wait = min(2*wait, maxWait)
		timer.Reset(jitter(wait))
	}
}

// jitter returns d less a random part of up to half of it, so that replicas
// started together do not fetch together.
func jitter(d time.Duration) time.Duration {
	if half := int64(d / 2); half > 0 {
		return d - time.Duration(rand.Int64N(half+1))
	}
	return d
}

// keyfunc returns the jwt.Keyfunc for one request. Tokens must name their
// key: without a kid keyfunc would try every key of the set and skip the
// key's own "alg" and "use", so such a token is refused (checkHeader does
// so first, for a Keyfunc too).
func (k *jwksKeys) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, ErrTokenNoKID
		}
		jwk, err := k.remote.KeyRead(ctx, kid)
		if err == nil {
			return verificationKey(jwk, t)
		}
		if !errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil, err
		}
		inFlight, own := k.claimRefetch()
		switch {
		case own != nil:
			// Fetch the set again: the issuer may have rotated keys.
			key, err := k.refetch(ctx, t, own)
			if err != nil && !errors.Is(err, ErrKeysUnavailable) && !k.loaded(ctx) {
				k.ensureRetry()
				return nil, errors.Join(ErrKeysUnavailable, err)
			}
			return key, err
		case inFlight != nil:
			// The refetch under way may bring this kid: a token of a
			// rotated key must not be told to sign in again meanwhile.
			// It waits for that fetch only, which HTTPTimeout bounds,
			// and never starts another, so made-up kids sent meanwhile
			// cost no fetch and wait no longer.
			select {
			case <-inFlight:
			case <-ctx.Done():
				return nil, errors.Join(ErrKeysUnavailable, ctx.Err())
			}
			jwk, err = k.remote.KeyRead(ctx, kid)
			if err == nil {
				return verificationKey(jwk, t)
			}
			if !errors.Is(err, jwkset.ErrKeyNotFound) {
				return nil, err
			}
		}
		// Held back by unknownKID, or the refetch did not bring the kid.
		switch {
		case !k.loaded(ctx):
			k.ensureRetry()
			return nil, ErrKeysUnavailable
		case k.refetchFailed.Load():
			// The set could not be fetched for the last unknown kid:
			// this one may be of a key rotated in meanwhile.
			return nil, errors.Join(ErrKeysUnavailable, err)
		default:
			return nil, err
		}
	}
}

// keyUses are the "use" values a signing key may be published with.
var keyUses = []jwkset.USE{jwkset.UseSig, ""}

// verificationKey is what kf returns for t once it has found jwk under t's
// kid, with the same checks and errors: the key's published alg, if any,
// must be t's, and its use one of keyUses. keyfunc would read the key
// again through the client, a second lookup per token.
func verificationKey(jwk jwkset.JWK, t *jwt.Token) (any, error) {
	alg, ok := t.Header["alg"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: could not find alg in JWT header", keyfunc.ErrKeyfunc)
	}
	m := jwk.Marshal()
	if a := m.ALG.String(); a != "" && a != alg {
		return nil, fmt.Errorf(`%w: JWK "alg" parameter value %q does not match token "alg" parameter value %q`, keyfunc.ErrKeyfunc, a, alg)
	}
	if !slices.Contains(keyUses, m.USE) {
		return nil, fmt.Errorf(`%w: JWK "use" parameter value %q is not in whitelist`, keyfunc.ErrKeyfunc, m.USE)
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	return key, nil
}

// claimRefetch is the decision of a token whose kid the set lacks: wait
// for inFlight, the end of the refetch under way; or, when none is and
// unknownKID allows, make the refetch itself and close own when it ends
// (refetch does); or, with both nil, neither.
func (k *jwksKeys) claimRefetch() (inFlight <-chan struct{}, own chan struct{}) {
	k.refetchMu.Lock()
	defer k.refetchMu.Unlock()
	if k.refetching != nil {
		return k.refetching, nil
	}
	if !k.unknownKID.Allow() {
		return nil, nil
	}
	k.refetching = make(chan struct{})
	return nil, k.refetching
}

// refetch fetches the set and resolves t's key from it, then closes done,
// the channel claimRefetch gave. The fetch runs on the Verifier's own
// context, bounded by HTTPTimeout, so that a client that hangs up cannot
// waste the one fetch unknownKID allowed and keep rotated keys out; the
// request itself waits only as long as its context lets it.
func (k *jwksKeys) refetch(ctx context.Context, t *jwt.Token, done chan struct{}) (any, error) {
	type result struct {
		key any
		err error
	}
	res := make(chan result, 1)
	go func() {
		var fetchErr error
		fctx, cancel := context.WithTimeout(context.WithValue(k.ctx, fetchErrKey{}, &fetchErr), k.timeout)
		defer cancel()
		key, err := k.kf.KeyfuncCtx(fctx)(t)
		k.refetchFailed.Store(fetchErr != nil)
		k.refetchMu.Lock()
		k.refetching = nil
		close(done)
		k.refetchMu.Unlock()
		if fetchErr != nil && errors.Is(err, jwkset.ErrKeyNotFound) {
			err = errors.Join(ErrKeysUnavailable, fetchErr)
		}
		res <- result{key, err}
	}()
	select {
	case r := <-res:
		return r.key, r.err
	case <-ctx.Done():
		// Undecided, as for the tokens waiting on this fetch: the kid
		// may be a rotated key's.
		return nil, errors.Join(ErrKeysUnavailable, ctx.Err())
	}
}

func (k *jwksKeys) loaded(ctx context.Context) bool {
	keys, err := k.remote.KeyReadAll(ctx)
	return err == nil && len(keys) > 0
}

// close stops the background work and waits for retry to return; jwkset's
// refresh goroutine and a refetch in flight end with the same context, on
// their own.
func (k *jwksKeys) close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.cancel()
	k.retrying.Wait()
}

// defaults for Options.
const (
	defaultLeeway             = 30 * time.Second
	defaultHTTPTimeout        = 10 * time.Second
	defaultRefreshInterval    = time.Hour
	defaultUnknownKIDInterval = 10 * time.Second
	defaultKeyRetryMin        = 250 * time.Millisecond
	defaultKeyRetryMax        = 5 * time.Second
	defaultMaxTokenBytes      = 8 << 10
)

var defaultAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}
