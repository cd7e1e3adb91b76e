package middleware

import (
	"log/slog"
	"net/http"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

// step is one middleware's check: it reads r, records what it finds in st,
// and on a failure writes the answer (in st's language) and returns false.
// st belongs to the request being built and nobody else sees it yet.
type step func(w http.ResponseWriter, r *http.Request, st *state) bool

// stepMiddleware makes a middleware of one step: a new state, copied from
// the request's, completed by the step and attached to a copy of the
// request that next receives.
func stepMiddleware(s step) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, st := withState(r)
			if s(w, r, st) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// localeOrDefault returns the request's locale, or the default bundle's
// default when Localize did not run.
func (st *state) localeOrDefault() *i18n.Locale {
	if st.locale != nil {
		return st.locale
	}
	return i18n.Default().DefaultLocale()
}

// ChainOptions configures Chain. Clients is required; the zero value of
// every other field is a documented default.
type ChainOptions struct {
	// Bundle localises the answers (Localize). Default: i18n.Default().
	Bundle *i18n.Bundle
	// Methods, when set, are the only methods let through (AllowMethods).
	// Default: every method.
	Methods []string
	// Clients is the registry X-client-id is looked up in
	// (RequireClientID). Required.
	Clients store.ClientRegistry
	// Verifier, when set, verifies the bearer token (RequireBearer).
	// Default: no token is asked for; an application that authenticates
	// users itself calls WithIdentity before the chain.
	Verifier TokenVerifier
	// Logger receives registry failures. Default: slog.Default().
	Logger *slog.Logger
}

// Chain returns Localize, AllowMethods, DeviceHeaders, RequireClientID and
// RequireBearer, in that order, as one middleware: the same checks, the
// same answers, the same context values, with one allocation per request
// instead of one per middleware. The middlewares whose option is unset are
// left out (see ChainOptions). Panics if opts.Clients is nil.
func Chain(opts ChainOptions) func(http.Handler) http.Handler {
	if opts.Bundle == nil {
		opts.Bundle = i18n.Default()
	}
	steps := []step{localize(opts.Bundle)}
	if opts.Methods != nil {
		steps = append(steps, allowMethods(opts.Methods))
	}
	steps = append(steps, deviceHeaders, requireClientID(opts.Clients, opts.Logger))
	if opts.Verifier != nil {
		steps = append(steps, requireBearer(opts.Verifier))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, st := withState(r)
			for _, s := range steps {
				if !s(w, r, st) {
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
