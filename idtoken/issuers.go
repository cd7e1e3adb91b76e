package idtoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// Why Issuers refuses a token or cannot decide, wrapped in the error
// VerifyToken returns.
const (
	// ErrClientNoIssuer: the client is registered without an issuer and
	// IssuersOptions.Default is not set, so no token can sign in to it
	// (answered IDAAS.SDK.PARAM.0016, never a pass).
	ErrClientNoIssuer reason = "idtoken: client has no issuer and there is no default Verifier"
	// ErrClientIssuer: the client's registration names an issuer that
	// cannot be used: an Issuer without a JWKSURL or the other way round,
	// or a JWKSURL that New refuses (not https, nor http to a loopback
	// host, unless IssuersOptions.Options.AllowInsecureJWKS). A
	// configuration problem of the registry, answered as an internal
	// failure and logged; the cause is wrapped too (New's errors wrap
	// selfservice.ErrConfig).
	ErrClientIssuer reason = "idtoken: client's issuer registration is unusable"
	// ErrTooManyIssuers: the client names an issuer beyond
	// IssuersOptions.MaxIssuers. Answered as an internal failure and
	// logged; the issuers already in use go on working.
	ErrTooManyIssuers reason = "idtoken: more issuers than IssuersOptions.MaxIssuers"
)

// errIssuersClosed is what a token meets whose issuer has no Verifier yet
// once Close has been called: none is made after Close.
var errIssuersClosed = errors.New("idtoken: Issuers closed")

// defaultMaxIssuers is IssuersOptions.MaxIssuers's default.
const defaultMaxIssuers = 100

// IssuersOptions configures NewIssuers. Clients is required.
type IssuersOptions struct {
	// Clients is the registry in which the client of each token is found,
	// with its Issuer and JWKSURL (store.Client): the one the Service and
	// middleware.RequireClientID use. It is asked only when the context
	// does not already carry the client (middleware.ClientFromContext, set
	// by RequireClientID), as in the Go API's UpdateEmail. Required.
	Clients store.ClientRegistry
	// Default verifies the tokens of clients registered without an issuer,
	// and of those registered with exactly Default's Issuer and JWKSURL.
	// Issuers takes it over: Close closes it. Default: none, and such
	// clients' tokens are refused (ErrClientNoIssuer).
	Default *Verifier
	// Options is what each issuer's Verifier is made from, on the first
	// token of a client that names that issuer, with the client's Issuer
	// and JWKSURL filled in and, for its logs, an "issuer" attribute added
	// to Logger: Algorithms, Leeway, HTTPClient, the refresh intervals,
	// Cache (one cache per issuer: the memory bound is per issuer too),
	// the providers. Its Issuer, JWKSURL and Keyfunc must be empty; the
	// rest is checked as New checks it. RefusalLogLevel and Logger serve
	// the refusals Issuers makes itself too.
	Options Options
	// MaxIssuers bounds the issuers (distinct Issuer and JWKSURL pairs)
	// that get a Verifier; the Default is not counted. Each costs a
	// goroutine, its key set, a fetch every RefreshInterval and its
	// token cache. A token of a client whose issuer would be one more is
	// answered as an internal failure (ErrTooManyIssuers) and logged:
	// a registry that names more issuers than this is a configuration to
	// fix, by raising the bound. Issuers in use are never dropped to make
	// room, since a dropped issuer would fetch its keys again on its next
	// token: a registry with more issuers than the bound would otherwise
	// turn requests into JWKS fetches, and alternating client ids would
	// make an attacker's requests do so. An issuer no client names any
	// more (a registration moved elsewhere) keeps its Verifier, and its
	// place, until Close. Default: 100.
	MaxIssuers int
	// SharedSubjects makes every issuer speak for one namespace of users:
	// a token's sub is the user id (Identity.Subject) whatever its issuer.
	// By default only the Default's tokens do; a token verified with a
	// client's own issuer acts for the user QualifiedSubject(iss, sub), so
	// that an issuer (a tenant's OpenID provider) naming a sub of another
	// issuer's user cannot act for that user: OpenID Connect makes a sub
	// unique within its issuer only. Set it only when every issuer is
	// yours and they share their users' ids.
	SharedSubjects bool
}

// QualifiedSubject is the user id a token of a client's own issuer acts
// for under Issuers (unless IssuersOptions.SharedSubjects): its sub,
// qualified with its issuer as issuer#sub. An issuer has no fragment
// (OpenID Connect Discovery section 3), so the first '#' parts the two.
// Give the users of such an issuer these ids in the UserStore.
func QualifiedSubject(issuer, sub string) string { return issuer + "#" + sub }

// Issuers is a middleware.TokenVerifier for a deployment whose applications
// sign in through different issuers: it finds the token's client (X-client-id)
// and verifies the token with the Verifier of the issuer the client is
// registered with (store.Client.Issuer and JWKSURL), or with the Default
// for a client registered without one.
//
// Each issuer has a Verifier of its own, made on its first token from
// IssuersOptions.Options and kept until Close: its own key set, background
// refresh, unknown-kid rate limit and key retries. So one issuer's outage
// or key rotation never touches another's keys, and a token is checked
// against its client's issuer only: a token of issuer A presented with a
// client of issuer B is refused by B's Verifier (its iss is not B, and its
// key is not B's), and one presented with a client registered without an
// issuer is refused by the Default (its iss is not the Default's). The
// audience must still name the client, as with a single Verifier. Users are
// told apart by issuer too: a token of a client's own issuer acts for the
// user QualifiedSubject(iss, sub), not sub (see SharedSubjects), so a
// tenant's provider cannot sign in as another issuer's user.
//
// The first token of an issuer waits for its Verifier's first JWKS fetch
// (at most HTTPTimeout, and only as long as its context lets it); tokens of
// other issuers do not wait for it. A registration read through a cache,
// such as the Service's (Config.ClientCacheTTL), takes effect when the
// cache forgets the old one.
//
// It is safe for concurrent use.
type Issuers struct {
	clients  store.ClientRegistry
	def      *Verifier
	template Options
	max      int
	shared   bool
	logger   *slog.Logger

	mu        sync.Mutex // guards verifiers and closed
	verifiers map[issuerKey]*issuerVerifier
	closed    bool
	making    sync.WaitGroup // the Verifiers being made
}

var _ middleware.TokenVerifier = (*Issuers)(nil)

// issuerKey names an issuer's Verifier: two registrations that agree on
// the issuer but not on where its keys are get a Verifier each.
type issuerKey struct{ issuer, jwksURL string }

// issuerVerifier is an issuer's Verifier, or its making: v and err are set
// before ready is closed, and not changed afterwards.
type issuerVerifier struct {
	ready chan struct{}
	v     *Verifier
	err   error
}

// NewIssuers validates opts and returns an Issuers. It makes no Verifier
// and fetches nothing: each issuer's Verifier is made on its first token.
// Call Close to stop their background work.
func NewIssuers(opts IssuersOptions) (*Issuers, error) {
	if opts.Clients == nil {
		return nil, fmt.Errorf("%w: Issuers: Clients is required", configerr.Err)
	}
	t := opts.Options
	if t.Issuer != "" || t.JWKSURL != "" || t.Keyfunc != nil {
		return nil, fmt.Errorf("%w: Issuers: Options.Issuer, JWKSURL and Keyfunc come from each client's registration and must be empty", configerr.Err)
	}
	if opts.MaxIssuers < 0 {
		return nil, fmt.Errorf("%w: Issuers: negative MaxIssuers", configerr.Err)
	}
	if opts.MaxIssuers == 0 {
		opts.MaxIssuers = defaultMaxIssuers
	}
	// Check the rest now, as New will: a bad template is a configuration
	// error at start, not an internal failure on each issuer's first token.
	probe, err := New(withKeyfunc(t))
	if err != nil {
		return nil, fmt.Errorf("Issuers: Options: %w", err)
	}
	probe.Close()
	if t.Logger == nil {
		t.Logger = slog.Default()
	}
	return &Issuers{
		clients:   opts.Clients,
		def:       opts.Default,
		template:  t,
		max:       opts.MaxIssuers,
		shared:    opts.SharedSubjects,
		logger:    t.Logger,
		verifiers: make(map[issuerKey]*issuerVerifier),
	}, nil
}

// withKeyfunc is the template with what New requires and the template
// leaves out, for checking the rest.
func withKeyfunc(t Options) Options {
	t.Issuer = "https://issuer.invalid"
	t.Keyfunc = func(*jwt.Token) (any, error) { return nil, errors.New("unused") }
	return t
}

// VerifyToken implements middleware.TokenVerifier: it finds clientID's
// registration (the context's client when it is that one, else in
// IssuersOptions.Clients) and verifies raw with the Verifier of its issuer,
// as Verifier.VerifyToken does. Besides that method's errors: a client
// without an issuer and no Default is i18n.CodeTokenInvalid wrapping
// ErrClientNoIssuer; an unusable registration or one issuer too many is
// i18n.CodeInternal wrapping ErrClientIssuer or ErrTooManyIssuers; a
// client id that is not registered is middleware.LookupClient's error.
func (is *Issuers) VerifyToken(ctx context.Context, raw, clientID string) (middleware.Identity, error) {
	client, err := is.client(ctx, clientID)
	if err != nil {
		return middleware.Identity{}, err
	}
	v, err := is.verifierOf(ctx, client)
	if err != nil {
		return middleware.Identity{}, err
	}
	// The registry's id, as RequireBearer passes it: the audience must
	// name the client as registered.
	id, err := v.VerifyToken(ctx, raw, client.ID)
	if err != nil || v == is.def || is.shared {
		return id, err
	}
	id.Subject = QualifiedSubject(v.opts.Issuer, id.Subject)
	return id, nil
}

// client returns clientID's registration: the one RequireClientID put in
// ctx, or the registry's.
func (is *Issuers) client(ctx context.Context, clientID string) (store.Client, error) {
	if c, ok := middleware.ClientFromContext(ctx); ok && c.ID == clientID {
		return c, nil
	}
	c, err := middleware.LookupClient(ctx, is.clients, clientID)
	if err != nil && errors.Is(err, i18n.CodeInternal) {
		is.logger.ErrorContext(ctx, "selfservice: client registry failed", "error", err)
	}
	return c, err
}

// verifierOf returns the Verifier of c's issuer, making it on first use.
func (is *Issuers) verifierOf(ctx context.Context, c store.Client) (*Verifier, error) {
	client := logSafe(c.ID, middleware.MaxClientIDLen)
	if c.Issuer == "" && c.JWKSURL == "" {
		if is.def == nil {
			is.logger.Log(ctx, is.template.RefusalLogLevel, "selfservice: id_token refused",
				"reason", ErrClientNoIssuer.Error(), "client", client)
			return nil, i18n.Wrap(i18n.CodeTokenInvalid, ErrClientNoIssuer)
		}
		return is.def, nil
	}
	key := issuerKey{c.Issuer, c.JWKSURL}
	if d := is.def; d != nil && d.opts.Issuer == key.issuer && d.opts.JWKSURL == key.jwksURL {
		return d, nil
	}
	if c.Issuer == "" || c.JWKSURL == "" {
		return nil, is.unusable(ctx, client, key, errors.New("the registration has an issuer without a JWKS URL, or a JWKS URL without an issuer"))
	}
	is.mu.Lock()
	iv := is.verifiers[key]
	switch {
	case iv != nil:
		// Made, or being made: wait for it below.
	case is.closed:
		is.mu.Unlock()
		return nil, i18n.Wrap(i18n.CodeInternal, errIssuersClosed)
	case len(is.verifiers) >= is.max:
		is.mu.Unlock()
		is.logger.ErrorContext(ctx, "selfservice: more issuers than IssuersOptions.MaxIssuers; raise it",
			"client", client, "issuer", key.issuer, "max_issuers", is.max)
		return nil, i18n.Wrap(i18n.CodeInternal, ErrTooManyIssuers)
	default:
		iv = &issuerVerifier{ready: make(chan struct{})}
		is.verifiers[key] = iv
		// Made apart from the request, like a refetch: a client that
		// hangs up does not waste the first fetch of the issuer's keys.
		is.making.Go(func() { is.make(key, iv) })
	}
	is.mu.Unlock()
	select {
	case <-iv.ready:
	case <-ctx.Done():
		return nil, i18n.Wrap(i18n.CodeInternal, ctx.Err())
	}
	if iv.err != nil {
		if errors.Is(iv.err, errIssuersClosed) {
			return nil, i18n.Wrap(i18n.CodeInternal, iv.err)
		}
		return nil, is.unusable(ctx, client, key, iv.err)
	}
	return iv.v, nil
}

// make makes key's Verifier from the template. One that New refuses is
// forgotten, so that it counts for no place under MaxIssuers, and is tried
// again (and logged again) on the next token: New refuses at once, before
// any fetch.
func (is *Issuers) make(key issuerKey, iv *issuerVerifier) {
	opts := is.template
	opts.Issuer, opts.JWKSURL = key.issuer, key.jwksURL
	opts.Logger = is.logger.With("issuer", key.issuer)
	v, err := New(opts)
	is.mu.Lock()
	defer is.mu.Unlock()
	switch {
	case err != nil:
		delete(is.verifiers, key)
	case is.closed:
		v.Close()
		v, err = nil, errIssuersClosed
	}
	iv.v, iv.err = v, err
	close(iv.ready)
}

// unusable logs and returns the internal failure of a registration that
// names an issuer no Verifier can be made for.
func (is *Issuers) unusable(ctx context.Context, client string, key issuerKey, err error) error {
	is.logger.ErrorContext(ctx, "selfservice: client's issuer registration is unusable",
		"client", client, "issuer", key.issuer, "jwks_url", key.jwksURL, "error", err)
	return i18n.Wrap(i18n.CodeInternal, fmt.Errorf("%w: %w", ErrClientIssuer, err))
}

// Ready reports whether the Default has keys (Verifier.Ready), or nil
// without a Default. The issuers' own Verifiers do not count: each is made
// on its issuer's first token, and one issuer's JWKS being down must not
// take a replica out of its load balancer for the clients of every other
// issuer. An issuer's outage shows on its own tokens (internal failures,
// ErrKeysUnavailable), in its logs (with an "issuer" attribute) and in the
// JWKS fetch metrics.
func (is *Issuers) Ready(ctx context.Context) error {
	if is.def == nil {
		return nil
	}
	return is.def.Ready(ctx)
}

// Close stops the background work of every Verifier, the Default's too,
// waiting for those being made (each at most its first fetch, HTTPTimeout).
// Tokens of issuers whose Verifier exists are still checked against the
// keys it has; no Verifier is made afterwards. It is safe to call more than
// once.
func (is *Issuers) Close() {
	is.mu.Lock()
	is.closed = true
	is.mu.Unlock()
	is.making.Wait()
	is.mu.Lock()
	defer is.mu.Unlock()
	for _, iv := range is.verifiers {
		if iv.v != nil {
			iv.v.Close()
		}
	}
	if is.def != nil {
		is.def.Close()
	}
}
