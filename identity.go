package selfservice

import (
	"errors"
	"net/http"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
)

// Identity is the signed-in user a change acts for: what Config.Identify,
// a TokenVerifier or the application's own authentication establishes.
// It is middleware.Identity under the name non-HTTP code uses, so that a
// gRPC or CLI front needs no import of package middleware.
type Identity = middleware.Identity

// Device is what a client says about itself in the device headers
// (middleware.Device).
type Device = middleware.Device

// TokenVerifier checks a bearer token and says who it signed in
// (middleware.TokenVerifier); *idtoken.Verifier is the OpenID Connect one.
type TokenVerifier = middleware.TokenVerifier

// ErrNotSignedIn is what Config.Identify returns for a request without a
// signed-in user; it is answered IDAAS.SDK.USER.9207 (403).
const ErrNotSignedIn notSignedIn = "selfservice: not signed in"

// notSignedIn is the type of ErrNotSignedIn: a constant, so that no
// importer can reassign it.
type notSignedIn string

func (e notSignedIn) Error() string { return string(e) }

// identify returns the user an update-email request acts for, for an
// application that signs users in itself: Config.Identify's, else the one
// middleware.WithIdentity put in the request's context. No user is
// IDAAS.SDK.USER.9207, whatever the request carries (a stray Authorization
// header is not looked at: there is no Verifier to believe it).
func (s *Service) identify(r *http.Request) (Identity, error) {
	if s.cfg.Identify == nil {
		if id, ok := middleware.IdentityFromContext(r.Context()); ok && id.Subject != "" {
			return id, nil
		}
		return Identity{}, i18n.CodeNotSignedIn
	}
	id, err := s.cfg.Identify(r)
	switch {
	case errors.Is(err, ErrNotSignedIn) || err == nil && id.Subject == "":
		return Identity{}, i18n.CodeNotSignedIn
	case err != nil:
		if e := new(i18n.Error); errors.As(err, &e) || errors.As(err, new(i18n.Code)) {
			return Identity{}, err
		}
		return Identity{}, i18n.Wrap(i18n.CodeInternal, err)
	}
	return id, nil
}

// Failure is an error of the Go API as a client is told it: the HTTP
// status, the stable code, the message in a language, for a 429 how long
// to wait, and the challenge of a 401 that asks for a fresh sign-in. A
// gRPC or CLI front maps these instead of reading errors.
type Failure struct {
	Status     int
	Code       i18n.Code
	Message    string
	RetryAfter time.Duration
	// Challenge is the WWW-Authenticate value the HTTP endpoints send
	// with the failure, or empty: for IDAAS.SDK.PARAM.9204 (the sign-in
	// is older than Config.MaxAuthAge), RFC 9470's step-up challenge,
	// Bearer error="insufficient_user_authentication", max_age=N. A front
	// that answers over HTTP itself sends it as is.
	Challenge string
}

// Failure describes err, an error of SendCode, UpdateEmail or RevertEmail,
// in lang (or the bundle's closest language, else its default). Any error
// that is not the package's own is the internal failure, its text never
// shown. The zero Failure describes nil.
func (s *Service) Failure(err error, lang language.Tag) Failure {
	e := i18n.ErrorOf(err)
	if e == nil {
		return Failure{}
	}
	loc := s.cfg.Bundle.Match(lang.String(), "")
	f := Failure{Status: e.Code.Status(), Code: e.Code, Message: loc.Message(e.Code), RetryAfter: e.RetryAfter}
	if e.Code == i18n.CodeReauthRequired {
		f.Challenge = s.reauthChallenge()
	}
	return f
}
