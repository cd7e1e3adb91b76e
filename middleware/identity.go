package middleware

import (
	"context"
	"time"
)

// Identity is the signed-in user a request acts for.
type Identity struct {
	// Subject is the user's id: the key of store.UserStore.User (for an
	// id_token, its sub).
	Subject string
	// AuthTime is when the user last signed in (an id_token's auth_time),
	// or the zero time when unknown. The root package's Config.MaxAuthAge
	// refuses a change when it is older, or unknown.
	AuthTime time.Time
	// Claims are what the verifier knows beyond that, such as
	// *idtoken.Claims, or nil. Shared by every request derived from the one
	// they were verified for: read them, do not modify them.
	Claims any
}

// TokenVerifier checks the bearer token of a request made by the client
// application clientID (X-client-id, already found registered) and says
// who it signed in. idtoken.Verifier is the implementation for OpenID
// Connect id_tokens checked against a JWKS.
//
// VerifyToken returns an error wrapping i18n.CodeTokenInvalid for a token
// that fails any check (answered IDAAS.SDK.PARAM.0016, "sign in again"),
// and any other error when it could not decide, such as keys it cannot load
// (answered as an internal failure, "try again later"). It must be safe for
// concurrent use and return when ctx is done.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token, clientID string) (Identity, error)
}
