package idtoken_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/selfservicetest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// tenant is an OpenID provider of the multi-issuer tests: its issuer, its
// JWKS on a jwksServer of its own (which counts its fetches, and can fail
// or hang), and its current signing key. Every tenant names its keys k1,
// k2, ... in the order it rotates them, so that tenants share kids: a
// verifier that kept one key set for all issuers, or looked keys up by kid
// alone, would be found out.
type tenant struct {
	iss     string
	srv     *jwksServer
	jwksURL string // srv's, unless a test serves the keys elsewhere

	mu  sync.Mutex
	key *ecdsa.PrivateKey
	gen int
}

func newTenant(t *testing.T, name string) *tenant {
	t.Helper()
	tn := &tenant{iss: "https://" + name + ".example", key: newECKey(t), gen: 1}
	tn.srv = newJWKSServer(t, tn.jwks(t))
	tn.jwksURL = tn.srv.URL
	return tn
}

// jwks is the set the tenant publishes: its current key only.
func (tn *tenant) jwks(t *testing.T) []byte {
	return jwksJSON(t, published{&tn.key.PublicKey, tn.kid(), jwkset.AlgES256, jwkset.UseSig})
}

func (tn *tenant) kid() string { return fmt.Sprintf("k%d", tn.gen) }

// signer signs with the tenant's current key.
func (tn *tenant) signer() signer {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return signer{jwt.SigningMethodES256, tn.key, tn.kid()}
}

// rotate withdraws the current key, publishes a new one, and returns a
// signer of the withdrawn key.
func (tn *tenant) rotate(t *testing.T) signer {
	t.Helper()
	old := tn.signer()
	tn.mu.Lock()
	tn.key, tn.gen = newECKey(t), tn.gen+1
	body := tn.jwks(t)
	tn.mu.Unlock()
	tn.srv.setBody(body)
	return old
}

// token returns an id_token of the tenant for client, signed by s.
func (tn *tenant) token(t *testing.T, s signer, client string, edits ...func(jwt.MapClaims)) string {
	t.Helper()
	return s.sign(t, claims(append([]func(jwt.MapClaims){setClaim("iss", tn.iss), setClaim("aud", client)}, edits...)...))
}

// client is the registration of an application that signs in through tn.
func (tn *tenant) client(id string) store.Client {
	return store.Client{ID: id, Issuer: tn.iss, JWKSURL: tn.jwksURL}
}

func (tn *tenant) fetches() int32 { return tn.srv.fetches.Load() }

// defaultVerifier is the Verifier of the clients registered without an
// issuer: tn's.
func defaultVerifier(t *testing.T, tn *tenant) *idtoken.Verifier {
	t.Helper()
	return newVerifier(t, func(o *idtoken.Options) { o.Issuer, o.JWKSURL = tn.iss, tn.srv.URL })
}

// newIssuers returns Issuers over reg with the tests' clock and logger,
// changed by edit, closed when t ends.
func newIssuers(t *testing.T, reg store.ClientRegistry, def *idtoken.Verifier, edit func(*idtoken.IssuersOptions)) *idtoken.Issuers {
	t.Helper()
	opts := idtoken.IssuersOptions{
		Clients: reg,
		Default: def,
		Options: idtoken.Options{Now: fixedNow, Logger: discard},
	}
	if edit != nil {
		edit(&opts)
	}
	is, err := idtoken.NewIssuers(opts)
	if err != nil {
		t.Fatalf("NewIssuers: %v", err)
	}
	t.Cleanup(is.Close)
	return is
}

// clientRequest is a request of client with the device headers and
// Authorization: Bearer raw.
func clientRequest(client, raw string) *http.Request {
	h := handlertest.DeviceHeaders()
	h.Set("X-Client-Id", client)
	h.Set("Authorization", "Bearer "+raw)
	return handlertest.NewRequest(h)
}

// outcome is what the chain answers a token: accepted, refused
// (PARAM.0016) or an internal failure (SYS.9001); notAccepted is either of
// the latter, what a token of another issuer may meet while the client's
// issuer is down (its kid may be a key rotated in meanwhile).
type outcome int

const (
	accepted outcome = iota
	refused
	internal
	notAccepted
)

func (o outcome) String() string {
	return [...]string{"accepted", "refused", "internal", "not accepted"}[o]
}

// expectChain sends raw as client's bearer token through h and checks the
// outcome; the user must be the token's.
func expectChain(t *testing.T, h http.Handler, next *handlertest.Recorder, client, raw string, want outcome) {
	t.Helper()
	before := next.Calls()
	w := handlertest.Serve(h, clientRequest(client, raw))
	got := refused
	switch {
	case w.Code == http.StatusOK && next.Calls() == before+1:
		got = accepted
	case w.Code == http.StatusInternalServerError && strings.Contains(w.Body.String(), handlertest.CodeInternal):
		got = internal
	case w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), handlertest.CodeTokenInvalid):
		t.Fatalf("client %s: status %d, body %s: neither an acceptance nor a refusal", client, w.Code, w.Body)
	}
	if got != want && (want != notAccepted || got == accepted) {
		t.Fatalf("client %s: token %s (status %d, body %s), want %s", client, got, w.Code, w.Body, want)
	}
}

// TestIssuersTwoIssuers: tokens of each issuer are accepted for its own
// clients only, through the middleware chain: a token of A presented with
// a client of B, with a client of the Default, or by the Default's issuer
// with a client of A, is refused, though every issuer names its key k1.
// Clients of one issuer share its key set: each JWKS is fetched once.
func TestIssuersTwoIssuers(t *testing.T) {
	t.Parallel()
	a, b, d := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), a.client("a2"), b.client("b1"), store.Client{ID: "d1"})
	is := newIssuers(t, reg, defaultVerifier(t, d), nil)
	next := &handlertest.Recorder{}
	h := middleware.Chain(middleware.ChainOptions{Clients: reg, Verifier: is})(next)

	tenants := map[string]*tenant{"a": a, "b": b, "d": d}
	clients := map[string]string{"a1": "a", "a2": "a", "b1": "b", "d1": "d"}
	for _, issuer := range []string{"a", "b", "d"} {
		for client, owner := range clients {
			want := refused
			if owner == issuer {
				want = accepted
			}
			tn := tenants[issuer]
			t.Run(fmt.Sprintf("issuer %s, client %s", issuer, client), func(t *testing.T) {
				expectChain(t, h, next, client, tn.token(t, tn.signer(), client), want)
			})
		}
	}
	// Forgeries that name the client's issuer but carry another's key.
	forged := []struct {
		name, client, raw string
	}{
		{"iss a, key of b", "a1", a.token(t, b.signer(), "a1")},
		{"iss b, key of a", "b1", b.token(t, a.signer(), "b1")},
		{"iss d, key of a", "d1", d.token(t, a.signer(), "d1")},
	}
	for _, f := range forged {
		t.Run(f.name, func(t *testing.T) { expectChain(t, h, next, f.client, f.raw, refused) })
	}
	for name, tn := range tenants {
		if n := tn.fetches(); n != 1 {
			t.Errorf("JWKS of %s fetched %d times, want 1", name, n)
		}
	}
	id, _ := middleware.IdentityFromContext(next.Context(t))
	if c, _ := id.Claims.(*idtoken.Claims); c == nil || c.Subject != testUser {
		t.Errorf("identity %+v, want the token's user", id)
	}
}

// TestIssuersRotationAndOutage: two issuers over HTTP, each rotating its
// key and each going down at its own time, and the Default's issuer
// beside them. A's rotation and outage neither fetch B's keys nor stop B's
// tokens, nor the other way round; a withdrawn key is refused once its
// issuer's new set is fetched; tokens never cross issuers.
func TestIssuersRotationAndOutage(t *testing.T) {
	t.Parallel()
	a, b, d := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"), store.Client{ID: "d1"})
	is := newIssuers(t, reg, defaultVerifier(t, d), func(o *idtoken.IssuersOptions) {
		o.Options.UnknownKIDInterval = time.Millisecond
	})
	next := &handlertest.Recorder{}
	h := middleware.Chain(middleware.ChainOptions{Clients: reg, Verifier: is})(next)
	expect := func(t *testing.T, tn *tenant, s signer, client string, want outcome) {
		t.Helper()
		// The unknown-kid limiter lets one fetch through per millisecond.
		time.Sleep(2 * time.Millisecond)
		expectChain(t, h, next, client, tn.token(t, s, client), want)
	}
	// crossed checks that the current keys of a and b are not accepted
	// for each other's clients, nor d's for either; it may fetch the set
	// of a or b (for a kid the set lacks), never d's.
	crossed := func(t *testing.T) {
		t.Helper()
		expect(t, a, a.signer(), "b1", notAccepted)
		expect(t, b, b.signer(), "a1", notAccepted)
		expect(t, d, d.signer(), "a1", notAccepted)
		expect(t, d, d.signer(), "b1", notAccepted)
	}

	expect(t, a, a.signer(), "a1", accepted)
	expect(t, b, b.signer(), "b1", accepted)
	expect(t, d, d.signer(), "d1", accepted)
	expect(t, a, a.signer(), "d1", refused)

	// A rotates: the new key is fetched, the old one refused; B's set is
	// not fetched.
	bBefore := b.fetches()
	aOld := a.rotate(t)
	expect(t, a, a.signer(), "a1", accepted)
	expect(t, a, aOld, "a1", refused)
	expect(t, b, b.signer(), "b1", accepted)
	if n := b.fetches(); n != bBefore {
		t.Errorf("A's rotation fetched B's JWKS %d times", n-bBefore)
	}
	crossed(t)

	// A goes down: its loaded key still works, a kid it lacks is an
	// outage (internal), B rotates meanwhile and is not held up, and A's
	// set is not fetched for B's rotation.
	a.srv.status.Store(http.StatusInternalServerError)
	expect(t, a, a.signer(), "a1", accepted)
	expect(t, a, signer{jwt.SigningMethodES256, a.signer().key, "k9"}, "a1", internal)
	aBefore := a.fetches()
	bOld := b.rotate(t)
	expect(t, b, b.signer(), "b1", accepted)
	expect(t, b, bOld, "b1", refused)
	if n := a.fetches(); n != aBefore {
		t.Errorf("B's rotation fetched A's JWKS %d times", n-aBefore)
	}
	crossed(t)

	// B goes down (connections dropped) while A comes back and rotates
	// again: A's new key is fetched, B's loaded key still works.
	b.srv.drop.Store(true)
	a.srv.status.Store(http.StatusOK)
	a.rotate(t)
	expect(t, a, a.signer(), "a1", accepted)
	expect(t, b, b.signer(), "b1", accepted)
	expect(t, b, signer{jwt.SigningMethodES256, b.signer().key, "k9"}, "b1", internal)
	crossed(t)

	// Neither rotation nor outage touched the Default's issuer.
	expect(t, d, d.signer(), "d1", accepted)
	if n := d.fetches(); n != 1 {
		t.Errorf("the Default's JWKS fetched %d times, want 1", n)
	}
}

// TestIssuersService: the same through the Service, as Config.Verifier,
// over HTTP and through the Go API: a user of A changes their email with
// A's token on A's client while A's tokens on B's client, and B's on A's,
// are refused; A's outage leaves B's users signing in.
func TestIssuersService(t *testing.T) {
	t.Parallel()
	a, b := newTenant(t, "a"), newTenant(t, "b")
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"))
	is := newIssuers(t, reg, nil, nil)
	users := &memstore.UserStore{}
	for _, u := range []store.User{
		// Each issuer's users, with the ids their tokens act for.
		{ID: idtoken.QualifiedSubject(a.iss, "user-a"), Email: "a@example.com", CanonicalEmail: "a@example.com"},
		{ID: idtoken.QualifiedSubject(b.iss, "user-b"), Email: "b@example.com", CanonicalEmail: "b@example.com"},
	} {
		if err := users.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	mail := &selfservicetest.Mailer{}
	secret := []byte(strings.Repeat("issuers test code secret ", 2))
	svc, err := selfservice.New(selfservice.Config{
		Users: users, Codes: memstore.NewCodeStore(), Limiter: memstore.NewLimiter(), Clients: reg,
		Verifier: is, Mailer: mail, Captcha: selfservice.AllowAllCaptcha{}, CodeSecret: secret, Logger: discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	ca, cb := selfservicetest.NewClient(srv.URL, "a1"), selfservicetest.NewClient(srv.URL, "b1")
	tokenA := a.token(t, a.signer(), "a1", setClaim("sub", "user-a"))
	tokenB := b.token(t, b.signer(), "b1", setClaim("sub", "user-b"))

	ca.SendCode(t, "a.new@example.com").Expect(t, http.StatusOK, "")
	code := mail.Code(t, "a.new@example.com")
	// Another's token first: refused before the code is even looked at.
	ca.UpdateEmail(t, tokenB, "a.new@example.com", code).Expect(t, http.StatusBadRequest, handlertest.CodeTokenInvalid)
	cb.UpdateEmail(t, a.token(t, a.signer(), "b1", setClaim("sub", "user-a")), "a.new@example.com", code).
		Expect(t, http.StatusBadRequest, handlertest.CodeTokenInvalid)
	ca.UpdateEmail(t, tokenA, "a.new@example.com", code).Expect(t, http.StatusOK, "")

	// A is down and rotated: its new tokens cannot be checked; B's users
	// are not held up.
	a.srv.status.Store(http.StatusServiceUnavailable)
	a.rotate(t)
	ca.UpdateEmail(t, a.token(t, a.signer(), "a1", setClaim("sub", "user-a")), "a.other@example.com", "123456").
		Expect(t, http.StatusInternalServerError, handlertest.CodeInternal)
	cb.SendCode(t, "b.new@example.com").Expect(t, http.StatusOK, "")
	cb.UpdateEmail(t, tokenB, "b.new@example.com", mail.Code(t, "b.new@example.com")).Expect(t, http.StatusOK, "")

	// The Go API: no middleware put the client in the context, so
	// Issuers finds it in the registry.
	caller := func(client string) selfservice.Caller {
		return selfservice.Caller{ClientID: client, Device: selfservice.Device{OSVersion: "test-os", Fingerprint: "fp", Agent: "go"}}
	}
	err = svc.UpdateEmail(t.Context(), selfservice.UpdateEmailRequest{Caller: caller("a1"), IDToken: tokenB, Email: "x@example.com", VerifyCode: "123456"})
	if !errors.Is(err, i18n.CodeTokenInvalid) {
		t.Errorf("Go API, B's token with A's client: %v, want %v", err, i18n.CodeTokenInvalid)
	}
	err = svc.UpdateEmail(t.Context(), selfservice.UpdateEmailRequest{Caller: caller("b1"), IDToken: tokenB, Email: "b.new@example.com", VerifyCode: "123456"})
	if errors.Is(err, i18n.CodeTokenInvalid) || errors.Is(err, i18n.CodeInternal) {
		t.Errorf("Go API, B's token with B's client: %v, want past the token", err)
	}
}

// TestIssuersRefusals: what Issuers answers for registrations it cannot
// use, and that none of them is a pass or a crash. VerifyToken is called
// without the chain, so each client is looked up in the registry.
func TestIssuersRefusals(t *testing.T) {
	t.Parallel()
	a, d := newTenant(t, "a"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), store.Client{ID: "plain"})
	half := func(c store.Client) store.ClientRegistry {
		return foldingRegistry{clients: map[string]store.Client{c.ID: c}}
	}
	tests := []struct {
		name   string
		reg    store.ClientRegistry
		def    bool
		client string
		token  string
		want   []error
		logged string // a message the Logger must have received
	}{
		{name: "no issuer, no Default", reg: reg, client: "plain", token: d.token(t, d.signer(), "plain"),
			want: []error{i18n.CodeTokenInvalid, idtoken.ErrClientNoIssuer}, logged: "selfservice: id_token refused"},
		{name: "no issuer, token of another issuer", reg: reg, def: true, client: "plain", token: a.token(t, a.signer(), "plain"),
			want: []error{i18n.CodeTokenInvalid, jwt.ErrTokenInvalidIssuer}}, // refused before any key work
		{name: "issuer without JWKS URL", reg: half(store.Client{ID: "c", Issuer: a.iss}), client: "c", token: a.token(t, a.signer(), "c"),
			want: []error{i18n.CodeInternal, idtoken.ErrClientIssuer}, logged: "selfservice: client's issuer registration is unusable"},
		{name: "JWKS URL without issuer", reg: half(store.Client{ID: "c", JWKSURL: a.srv.URL}), def: true, client: "c", token: a.token(t, a.signer(), "c"),
			want: []error{i18n.CodeInternal, idtoken.ErrClientIssuer}, logged: "selfservice: client's issuer registration is unusable"},
		{name: "JWKS over plain http", reg: half(store.Client{ID: "c", Issuer: a.iss, JWKSURL: "http://id.partner.example/keys"}), client: "c",
			token: a.token(t, a.signer(), "c"),
			want:  []error{i18n.CodeInternal, idtoken.ErrClientIssuer, configerr.Err}, logged: "JWKSURL must be https"},
		{name: "JWKS URL that does not parse", reg: half(store.Client{ID: "c", Issuer: a.iss, JWKSURL: "https://[::1"}), client: "c",
			token: a.token(t, a.signer(), "c"),
			want:  []error{i18n.CodeInternal, idtoken.ErrClientIssuer, configerr.Err}},
		{name: "unknown client", reg: reg, def: true, client: "nobody", token: a.token(t, a.signer(), "nobody"),
			want: []error{i18n.CodeClientUnknown}},
		{name: "registry down", reg: handlertest.FailingRegistry{Err: errors.New("registry down")}, client: "a1", token: a.token(t, a.signer(), "a1"),
			want: []error{i18n.CodeInternal}, logged: "selfservice: client registry failed"},
		{name: "audience of another client of the same issuer", reg: reg, client: "a1", token: a.token(t, a.signer(), "a2"),
			want: []error{i18n.CodeTokenInvalid, idtoken.ErrTokenAudience}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var def *idtoken.Verifier
			if tt.def {
				def = defaultVerifier(t, d)
			}
			var logs handlertest.LogSink
			is := newIssuers(t, tt.reg, def, func(o *idtoken.IssuersOptions) { o.Options.Logger = logs.Logger() })
			id, err := is.VerifyToken(t.Context(), tt.token, tt.client)
			if err == nil {
				t.Fatalf("accepted for %q: %+v", id.Subject, id)
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("error %v, want one wrapping %v", err, want)
				}
			}
			if tt.logged != "" && !strings.Contains(logs.Text(), tt.logged) {
				t.Errorf("log %q lacks %q", logs.Text(), tt.logged)
			}
		})
	}
}

// TestIssuersSkipsLookupWithClientInContext: behind RequireClientID the
// client comes from the request's context, without a second lookup.
func TestIssuersSkipsLookupWithClientInContext(t *testing.T) {
	t.Parallel()
	a := newTenant(t, "a")
	reg := &handlertest.CountingRegistry{ClientRegistry: memstore.NewClientRegistry(a.client("a1"))}
	is := newIssuers(t, reg, nil, nil)
	next := &handlertest.Recorder{}
	h := middleware.Chain(middleware.ChainOptions{Clients: reg, Verifier: is})(next)
	for range 3 {
		expectChain(t, h, next, "a1", a.token(t, a.signer(), "a1"), accepted)
	}
	if n := reg.Calls(); n != 3 {
		t.Errorf("%d registry lookups for 3 requests, want 3 (RequireClientID's only)", n)
	}
}

// TestIssuersMaxIssuers: past MaxIssuers a new issuer is an internal
// failure, logged, while the issuers in use and the Default go on; a
// registration that could not be used takes no place.
func TestIssuersMaxIssuers(t *testing.T) {
	t.Parallel()
	a, b, d := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"), store.Client{ID: "d1"},
		store.Client{ID: "bad", Issuer: "https://bad.example", JWKSURL: "http://bad.example/keys"})
	var logs handlertest.LogSink
	is := newIssuers(t, reg, defaultVerifier(t, d), func(o *idtoken.IssuersOptions) {
		o.MaxIssuers = 1
		o.Options.Logger = logs.Logger()
	})
	ctx := t.Context()
	if _, err := is.VerifyToken(ctx, a.token(t, a.signer(), "bad"), "bad"); !errors.Is(err, idtoken.ErrClientIssuer) {
		t.Fatalf("unusable registration: %v, want ErrClientIssuer", err)
	}
	if _, err := is.VerifyToken(ctx, a.token(t, a.signer(), "a1"), "a1"); err != nil {
		t.Fatalf("first issuer: %v", err)
	}
	_, err := is.VerifyToken(ctx, b.token(t, b.signer(), "b1"), "b1")
	if !errors.Is(err, idtoken.ErrTooManyIssuers) || !errors.Is(err, i18n.CodeInternal) {
		t.Errorf("second issuer: %v, want an internal ErrTooManyIssuers", err)
	}
	if !strings.Contains(logs.Text(), "MaxIssuers") {
		t.Errorf("log %q does not name MaxIssuers", logs.Text())
	}
	if b.fetches() != 0 {
		t.Errorf("the refused issuer's JWKS was fetched %d times", b.fetches())
	}
	for client, tn := range map[string]*tenant{"a1": a, "d1": d} {
		if _, err := is.VerifyToken(ctx, tn.token(t, tn.signer(), client), client); err != nil {
			t.Errorf("%s after the bound was met: %v", client, err)
		}
	}
}

// TestIssuersFirstUse: many first tokens of an issuer at once make one
// Verifier and one fetch; an issuer whose JWKS hangs holds its own first
// tokens only as long as their context lets it, and nobody else's.
func TestIssuersFirstUse(t *testing.T) {
	t.Parallel()
	a, b, h := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "hung")
	// A JWKS that hangs until the test ends (before the Issuers closes,
	// which waits for the hung Verifier's first fetch).
	stop := make(chan struct{})
	hungSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hungSrv.Close)
	defer close(stop)
	h.jwksURL = hungSrv.URL
	reg := memstore.NewClientRegistry(a.client("a1"), a.client("a2"), b.client("b1"), h.client("h1"))
	is := newIssuers(t, reg, nil, func(o *idtoken.IssuersOptions) { o.Options.HTTPTimeout = time.Minute })

	hung := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := is.VerifyToken(ctx, h.token(t, h.signer(), "h1"), "h1")
		hung <- err
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	start := time.Now()
	for i := range 60 {
		client, tn := []string{"a1", "a2", "b1"}[i%3], a
		if client == "b1" {
			tn = b
		}
		raw := tn.token(t, tn.signer(), client)
		wg.Go(func() {
			if _, err := is.VerifyToken(context.Background(), raw, client); err != nil {
				errs <- fmt.Errorf("%s: %w", client, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Held up by the hung issuer, they would wait for its HTTPTimeout.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("first tokens of a and b took %v: held up by the hung issuer", d)
	}
	if na, nb := a.fetches(), b.fetches(); na != 1 || nb != 1 {
		t.Errorf("JWKS fetched %d times (a) and %d times (b), want once each", na, nb)
	}
	if err := <-hung; !errors.Is(err, i18n.CodeInternal) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("first token of the hung issuer: %v, want an internal failure at its deadline", err)
	}
}

// TestIssuersReady: readiness is the Default's; an issuer's outage does
// not take the replica out of its load balancer.
func TestIssuersReady(t *testing.T) {
	t.Parallel()
	a, d := newTenant(t, "a"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), store.Client{ID: "d1"})
	ctx := t.Context()

	a.srv.status.Store(http.StatusServiceUnavailable)
	is := newIssuers(t, reg, defaultVerifier(t, d), nil)
	if _, err := is.VerifyToken(ctx, a.token(t, a.signer(), "a1"), "a1"); !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Fatalf("issuer down: %v, want ErrKeysUnavailable", err)
	}
	if err := is.Ready(ctx); err != nil {
		t.Errorf("Ready with an issuer down and the Default up: %v", err)
	}

	d2 := newTenant(t, "d2")
	d2.srv.status.Store(http.StatusServiceUnavailable)
	down := newIssuers(t, reg, defaultVerifier(t, d2), nil)
	if err := down.Ready(ctx); !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Errorf("Ready with the Default down: %v, want ErrKeysUnavailable", err)
	}
	if err := newIssuers(t, reg, nil, nil).Ready(ctx); err != nil {
		t.Errorf("Ready without a Default: %v", err)
	}
}

// TestNewIssuersConfig: a template that names an issuer, or that New
// would refuse, and a missing registry are configuration errors.
func TestNewIssuersConfig(t *testing.T) {
	t.Parallel()
	reg := memstore.NewClientRegistry()
	tests := []struct {
		name string
		opts idtoken.IssuersOptions
	}{
		{"no Clients", idtoken.IssuersOptions{}},
		{"template with an Issuer", idtoken.IssuersOptions{Clients: reg, Options: idtoken.Options{Issuer: testIssuer}}},
		{"template with a JWKSURL", idtoken.IssuersOptions{Clients: reg, Options: idtoken.Options{JWKSURL: "https://id.example.com/keys"}}},
		{"template with a Keyfunc", idtoken.IssuersOptions{Clients: reg, Options: idtoken.Options{Keyfunc: func(*jwt.Token) (any, error) { return nil, nil }}}},
		{"template allowing HS256", idtoken.IssuersOptions{Clients: reg, Options: idtoken.Options{Algorithms: []string{"HS256"}}}},
		{"template with a bad cache", idtoken.IssuersOptions{Clients: reg, Options: idtoken.Options{Cache: idtoken.CacheOptions{MaxAge: time.Minute}}}},
		{"negative MaxIssuers", idtoken.IssuersOptions{Clients: reg, MaxIssuers: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is, err := idtoken.NewIssuers(tt.opts)
			if !errors.Is(err, configerr.Err) {
				t.Errorf("NewIssuers: %v, want a configuration error", err)
			}
			if is != nil {
				is.Close()
			}
		})
	}
}

// TestIssuersClose: Close stops every Verifier, the Default's and one
// still being made, and leaves no goroutine; afterwards no Verifier is
// made. Not parallel: goleak must see only this test's goroutines.
func TestIssuersClose(t *testing.T) {
	before := goleak.IgnoreCurrent()
	a, b, d, h := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "d"), newTenant(t, "hung")
	h.srv.hang.Store(true)
	transport := &http.Transport{}
	client := &http.Client{Transport: transport}
	def, err := idtoken.New(idtoken.Options{Issuer: d.iss, JWKSURL: d.srv.URL, HTTPClient: client, Logger: discard, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"), h.client("h1"), store.Client{ID: "d1"})
	is, err := idtoken.NewIssuers(idtoken.IssuersOptions{Clients: reg, Default: def, Options: idtoken.Options{
		HTTPClient: client, HTTPTimeout: 200 * time.Millisecond, Logger: discard, Now: fixedNow,
		KeyRetryMin: time.Millisecond, KeyRetryMax: 5 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for client, tn := range map[string]*tenant{"a1": a, "b1": b, "d1": d} {
		if _, err := is.VerifyToken(ctx, tn.token(t, tn.signer(), client), client); err != nil {
			t.Fatalf("%s: %v", client, err)
		}
	}
	// The hung issuer's Verifier is being made when Close is called.
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := is.VerifyToken(waiting, h.token(t, h.signer(), "h1"), "h1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung issuer: %v, want its deadline", err)
	}
	is.Close()
	is.Close()
	if _, err := is.VerifyToken(ctx, h.token(t, h.signer(), "h1"), "h1"); !errors.Is(err, i18n.CodeInternal) {
		t.Errorf("after Close, an issuer whose Verifier was being made: %v, want an internal failure", err)
	}
	c := newTenant(t, "c")
	if _, err := reg.Client(ctx, "c1"); err == nil {
		t.Fatal("c1 registered already")
	}
	if err := reg.CreateClient(ctx, c.client("c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := is.VerifyToken(ctx, c.token(t, c.signer(), "c1"), "c1"); !errors.Is(err, i18n.CodeInternal) || c.fetches() != 0 {
		t.Errorf("after Close, a new issuer: %v with %d fetches, want an internal failure and none", err, c.fetches())
	}
	for _, tn := range []*tenant{a, b, c, d, h} {
		tn.srv.Close()
	}
	transport.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// TestIssuersTelemetry: every issuer's Verifier records its JWKS fetches
// in the template's MeterProvider, under the same attributes as a single
// Verifier's: no issuer in them, so the number of series does not grow
// with the registry.
func TestIssuersTelemetry(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a, b := newTenant(t, "a"), newTenant(t, "b")
	b.srv.status.Store(http.StatusServiceUnavailable)
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"))
	is := newIssuers(t, reg, nil, func(o *idtoken.IssuersOptions) {
		o.Options.MeterProvider = mp
		o.Options.KeyRetryMin, o.Options.KeyRetryMax = time.Hour, time.Hour
	})
	if _, err := is.VerifyToken(t.Context(), a.token(t, a.signer(), "a1"), "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := is.VerifyToken(t.Context(), b.token(t, b.signer(), "b1"), "b1"); !errors.Is(err, idtoken.ErrKeysUnavailable) {
		t.Fatalf("issuer down: %v", err)
	}
	// jwksSamples fails on any attribute but dependency, operation and
	// error having other values; check that there are no others at all.
	ok, failed := jwksSamples(t, reader)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if dp.Attributes.Len() != 3 {
					t.Errorf("attributes %v, want dependency, operation and error only", dp.Attributes.ToSlice())
				}
			}
		}
	}
	if ok != uint64(a.fetches()) || failed != uint64(b.fetches()) || ok == 0 || failed == 0 {
		t.Errorf("%d fetches recorded ok and %d failed, want %d of a and %d of b", ok, failed, a.fetches(), b.fetches())
	}
}

// TestIssuersSubjectsPerIssuer: two issuers and the Default all sign a
// token for the same sub. Only the Default's acts for that user id; the
// others act for their issuer's user (QualifiedSubject), so no tenant's
// provider can sign in as another issuer's user. SharedSubjects makes
// them one namespace.
func TestIssuersSubjectsPerIssuer(t *testing.T) {
	t.Parallel()
	a, b, d := newTenant(t, "a"), newTenant(t, "b"), newTenant(t, "d")
	reg := memstore.NewClientRegistry(a.client("a1"), b.client("b1"), store.Client{ID: "d1"},
		store.Client{ID: "d2", Issuer: d.iss, JWKSURL: d.jwksURL})
	sub := setClaim("sub", "victim-1")
	tokens := []struct{ client, raw string }{
		{"d1", d.token(t, d.signer(), "d1", sub)},
		{"d2", d.token(t, d.signer(), "d2", sub)},
		{"a1", a.token(t, a.signer(), "a1", sub)},
		{"b1", b.token(t, b.signer(), "b1", sub)},
	}
	for _, shared := range []bool{false, true} {
		is := newIssuers(t, reg, defaultVerifier(t, d), func(o *idtoken.IssuersOptions) { o.SharedSubjects = shared })
		want := map[string]string{"d1": "victim-1", "d2": "victim-1",
			"a1": idtoken.QualifiedSubject(a.iss, "victim-1"), "b1": idtoken.QualifiedSubject(b.iss, "victim-1")}
		if shared {
			want["a1"], want["b1"] = "victim-1", "victim-1"
		}
		for _, tk := range tokens {
			id, err := is.VerifyToken(context.Background(), tk.raw, tk.client)
			if err != nil {
				t.Fatalf("shared %v, client %s: %v", shared, tk.client, err)
			}
			if id.Subject != want[tk.client] {
				t.Errorf("shared %v, client %s: acts for %q, want %q", shared, tk.client, id.Subject, want[tk.client])
			}
		}
	}
	if got := idtoken.QualifiedSubject("https://a.example", "u#1"); got != "https://a.example#u#1" {
		t.Errorf("QualifiedSubject: %q", got)
	}
}
