package middleware_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
)

// The client and user of the tests.
const (
	testClient = "app-1"
	testUser   = "user-42"
)

// discard is a logger that drops everything.
var discard = slog.New(slog.DiscardHandler)

// tokens is the TokenVerifier of the middleware tests: "SUB@CLIENT" signs SUB
// in for the client CLIENT (and only for it), "down" cannot be decided, as
// when no key can be loaded, and anything else is refused.
type tokens struct{}

func (tokens) VerifyToken(_ context.Context, token, clientID string) (middleware.Identity, error) {
	sub, client, ok := strings.Cut(token, "@")
	switch {
	case token == "down":
		return middleware.Identity{}, i18n.Wrap(i18n.CodeInternal, errors.New("no key loaded"))
	case ok && sub != "" && client == clientID:
		return middleware.Identity{Subject: sub}, nil
	}
	return middleware.Identity{}, i18n.Wrap(i18n.CodeTokenInvalid, errors.New("not a token of tokens"))
}

// subjectOf returns the subject of the identity in ctx, or "".
func subjectOf(ctx context.Context) string {
	id, _ := middleware.IdentityFromContext(ctx)
	return id.Subject
}
