// Package middleware holds the net/http middlewares in front of the
// self-service endpoints, each a func(http.Handler) http.Handler usable on
// its own, and the getters that read what they put in the request context:
//
//	Localize        X-L / Accept-Language -> LocaleFromContext
//	AllowMethods    answers other methods with IDAAS.SDK.REQ.9101
//	DeviceHeaders   X-operating-sys-version, X-device-fingerprint, X-agent, X-device-ip -> DeviceFromContext
//	RequireClientID X-client-id checked against a store.ClientRegistry -> ClientFromContext
//	RequireBearer   Authorization: Bearer <token> checked by a TokenVerifier -> IdentityFromContext
//
// The standard order is the one above: Localize first so that every error,
// even a missing device header, is answered in the request's language.
// Chain runs them all in that order as one middleware, for one allocation
// per request. Errors are written by WriteError as
// {"error_code","error_msg"}. A header that may appear once (X-L,
// X-client-id, Authorization) and is repeated is refused with
// IDAAS.SDK.REQ.9105 by the middleware that reads it.
//
// An application that authenticates users itself (a session, its own OIDC
// middleware) puts the user in the context with WithIdentity instead of
// RequireBearer; the handlers of the root package read IdentityFromContext
// either way. The id_token verifier of this module is package idtoken.
//
// What a middleware puts in the context is never changed afterwards: each
// one attaches a new value, so a request derived from another, such as a
// sub-request a batch handler dispatches through the chain again, never
// sees or overwrites its parent's or a sibling's values.
//
// The name collides with the middleware packages of chi and echo; import
// it under another name next to them:
//
//	import ssmw "github.com/ciamkit/selfservice/middleware"
//
// Quick start:
//
//	h := middleware.Chain(middleware.ChainOptions{
//		Clients:  clients,  // a store.ClientRegistry
//		Verifier: verifier, // an *idtoken.Verifier, or nil with WithIdentity
//		Methods:  []string{http.MethodPost},
//	})(app)
package middleware

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

type contextKey struct{ name string }

var stateKey = &contextKey{"selfservice request state"}

// state is what the middlewares learn about one request. It is immutable
// once a middleware has passed the request on: each middleware attaches a new
// state, copied from the one its request carried plus its own finding, so
// that a request derived from another (a sub-request of a batch, a request
// a framework dispatches again) never sees or changes its parent's or a
// sibling's state. Getters read the nearest state, which holds everything
// the middlewares before it learnt.
type state struct {
	locale    *i18n.Locale
	device    Device
	hasDevice bool
	client    store.Client
	hasClient bool
	identity  Identity
	hasIdent  bool
}

// stateContext carries a state without a separate allocation for the value.
type stateContext struct {
	context.Context
	st state
}

func (c *stateContext) Value(key any) any {
	if key == stateKey {
		return &c.st
	}
	return c.Context.Value(key)
}

func stateFrom(ctx context.Context) *state {
	st, _ := ctx.Value(stateKey).(*state)
	return st
}

// stateRequest is the request copy that carries a stateContext together
// with that context, so that attaching a state costs one allocation.
type stateRequest struct {
	req http.Request
	ctx stateContext
}

// withState returns a copy of r carrying a new state, a copy of the state r
// carried (if any), for the caller to complete before it calls the next
// handler. Nothing writes to the state after that: the caller owns it until
// then, and nobody else has seen it.
func withState(r *http.Request) (*http.Request, *state) {
	sr := &stateRequest{ctx: stateContext{Context: r.Context()}}
	if parent := stateFrom(r.Context()); parent != nil {
		sr.ctx.st = *parent
	}
	// WithContext is the only way to set a request's context; its copy
	// does not escape here, so the compiler keeps it off the heap, and
	// this copy of it is the shallow copy WithContext documents.
	sr.req = *r.WithContext(&sr.ctx)
	return &sr.req, &sr.ctx.st
}

// withStateContext returns ctx carrying a new state, a copy of the one ctx
// carried, for the caller to complete before anyone sees the context.
func withStateContext(ctx context.Context) (context.Context, *state) {
	sc := &stateContext{Context: ctx}
	if parent := stateFrom(ctx); parent != nil {
		sc.st = *parent
	}
	return sc, &sc.st
}

// LocaleFromContext returns the locale Localize chose, or nil.
func LocaleFromContext(ctx context.Context) *i18n.Locale {
	if st := stateFrom(ctx); st != nil {
		return st.locale
	}
	return nil
}

// DeviceFromContext returns the device headers DeviceHeaders parsed, and
// whether there were any.
func DeviceFromContext(ctx context.Context) (Device, bool) {
	if st := stateFrom(ctx); st != nil && st.hasDevice {
		return st.device, true
	}
	return Device{}, false
}

// ClientFromContext returns the application RequireClientID found, and
// whether there was one.
func ClientFromContext(ctx context.Context) (store.Client, bool) {
	if st := stateFrom(ctx); st != nil && st.hasClient {
		return st.client, true
	}
	return store.Client{}, false
}

// IdentityFromContext returns the signed-in user RequireBearer verified or
// the application put in with WithIdentity, and whether there is one.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	if st := stateFrom(ctx); st != nil && st.hasIdent {
		return st.identity, true
	}
	return Identity{}, false
}

// WithIdentity returns a copy of ctx carrying id as the signed-in user, for
// an application that authenticates its users itself: its own middleware
// calls it, and the handlers of the root package then act for id without
// RequireBearer. Give it only a subject your application has verified.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	ctx, st := withStateContext(ctx)
	st.identity, st.hasIdent = id, true
	return ctx
}

// WithClient returns a copy of ctx carrying c as the application
// RequireClientID would have found, for a caller that looked the client
// up itself (the root package's Go API does): a TokenVerifier that picks
// keys by client (idtoken.Issuers) then needs no second lookup.
func WithClient(ctx context.Context, c store.Client) context.Context {
	ctx, st := withStateContext(ctx)
	st.client, st.hasClient = c, true
	return ctx
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// WriteError answers err as {"error_code","error_msg"} in the request's
// language (the default bundle's default when Localize did not run), with
// the status of its code (see i18n.ErrorOf: an error that carries no code is
// answered as i18n.CodeInternal, so a Go error string never reaches the
// client), Cache-Control: no-store, and a Retry-After in whole seconds,
// rounded up, when the error has one.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	loc := LocaleFromContext(r.Context())
	if loc == nil {
		loc = i18n.Default().DefaultLocale()
	}
	writeError(w, loc, err)
}

// writeError is WriteError in the language loc.
func writeError(w http.ResponseWriter, loc *i18n.Locale, err error) {
	e := i18n.ErrorOf(err)
	if e == nil {
		e = &i18n.Error{Code: i18n.CodeInternal}
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	if e.RetryAfter > 0 {
		h["Retry-After"] = []string{strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10)}
	}
	w.WriteHeader(e.Code.Status())
	_, _ = w.Write(loc.ErrorBody(e.Code))
}
