package idtoken_test

import (
	"context"
	"net/http"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// foldingRegistry finds clients whatever the case of the id, so that the
// client it returns has an ID that differs from the header.
type foldingRegistry struct{ clients map[string]store.Client }

func (r foldingRegistry) Client(_ context.Context, id string) (store.Client, error) {
	if c, ok := r.clients[strings.ToLower(id)]; ok {
		return c, nil
	}
	return store.Client{}, store.ErrNotFound
}

// claimsOf returns the id_token claims of the identity in ctx, or nil.
func claimsOf(ctx context.Context) *idtoken.Claims {
	id, ok := middleware.IdentityFromContext(ctx)
	if !ok {
		return nil
	}
	c, _ := id.Claims.(*idtoken.Claims)
	return c
}

// chain is the standard order of the middlewares, with a Verifier.
func chain(reg store.ClientRegistry, v *idtoken.Verifier, next http.Handler) http.Handler {
	return middleware.Localize(i18n.Default())(
		middleware.DeviceHeaders(
			middleware.RequireClientID(reg, discard)(
				middleware.RequireBearer(v)(next))))
}
