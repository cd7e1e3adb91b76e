// Package middleware holds the four net/http middlewares in front of the
// self-service endpoints, each a func(http.Handler) http.Handler usable on
// its own, and the getters that read what they put in the request context:
//
//	Localize        X-L / Accept-Language -> LocaleFromContext, LocalizerFromContext
//	DeviceHeaders   X-operating-sys-version, X-device-fingerprint, X-agent, X-device-ip -> DeviceFromContext
//	RequireClientID X-client-id checked against a store.ClientRegistry -> ClientFromContext
//	RequireBearer   Authorization: Bearer <id_token> checked by a Verifier -> ClaimsFromContext
//
// The standard order is the one above: Localize first so that every error,
// even a missing device header, is answered in the request's language.
// Errors are written by WriteError as {"error_code","error_msg"}. A header
// that may appear once (X-L, X-client-id, Authorization) and is repeated is
// refused with IDAAS.SDK.REQ.9105 by the middleware that reads it.
//
// What a middleware puts in the context is never changed afterwards: each
// one attaches a new value, so a request derived from another, such as a
// sub-request a batch handler dispatches through the chain again, never
// sees or overwrites its parent's or a sibling's values.
//
// Quick start:
//
//	v, err := middleware.NewVerifier(middleware.VerifierOptions{
//		Issuer:  "https://id.example.com",
//		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
//	})
//	if err != nil { ... }
//	defer v.Close()
//	h := middleware.Localize(i18n.Default())(
//		middleware.DeviceHeaders(
//			middleware.RequireClientID(clients, logger)(
//				middleware.RequireBearer(v)(app))))
package middleware

import (
	"context"
	"errors"
	"net/http"

	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"

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
	claims    *Claims
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

// LocaleFromContext returns the locale Localize chose, or nil.
func LocaleFromContext(ctx context.Context) *i18n.Locale {
	if st := stateFrom(ctx); st != nil {
		return st.locale
	}
	return nil
}

// LocalizerFromContext returns the localizer of the locale Localize chose,
// or nil.
func LocalizerFromContext(ctx context.Context) *goi18n.Localizer {
	if loc := LocaleFromContext(ctx); loc != nil {
		return loc.Localizer
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

// ClaimsFromContext returns the verified id_token claims RequireBearer put
// in the context, or nil. They are shared with every request derived from
// this one: read them, do not modify them.
func ClaimsFromContext(ctx context.Context) *Claims {
	if st := stateFrom(ctx); st != nil {
		return st.claims
	}
	return nil
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// WriteError answers err as {"error_code","error_msg"} in the request's
// language (English when Localize did not run). An error that is not an
// *i18n.Error, or wraps none, is answered as i18n.ErrInternal: a Go error
// string never reaches the client. An *i18n.Error whose Status is not a 4xx
// or 5xx code is answered with its code and HTTP 500.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	loc := LocaleFromContext(r.Context())
	if loc == nil {
		loc = i18n.Default().DefaultLocale()
	}
	writeError(w, loc, err)
}

// writeError is WriteError in the language loc.
func writeError(w http.ResponseWriter, loc *i18n.Locale, err error) {
	var e *i18n.Error
	if !errors.As(err, &e) {
		e = i18n.ErrInternal
	}
	status := e.Status
	if status < 400 || status > 599 {
		// An integrator's *i18n.Error built without a failure status
		// must neither panic in WriteHeader (0) nor answer as a success.
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	_, _ = w.Write(loc.ErrorBody(e))
}
