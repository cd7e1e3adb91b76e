package middleware

import (
	"net/http"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
)

// RequireBearer returns a middleware that requires "Authorization: Bearer
// <token>" (the scheme in any case) and verifies the token with v for the
// client that RequireClientID found, or else the X-client-id header. A
// repeated Authorization header (or, read here, X-client-id) is
// IDAAS.SDK.REQ.9105: a proxy may have checked the other one. A missing or
// empty token is IDAAS.SDK.PARAM.0015; v's refusal is IDAAS.SDK.PARAM.0016
// (see TokenVerifier for its errors). The Identity goes into the request
// context. Panics if v is nil.
func RequireBearer(v TokenVerifier) func(http.Handler) http.Handler {
	return stepMiddleware(requireBearer(v))
}

func requireBearer(v TokenVerifier) step {
	if v == nil {
		panic("middleware: RequireBearer: nil TokenVerifier")
	}
	return func(w http.ResponseWriter, r *http.Request, st *state) bool {
		fail := func(err error) bool {
			writeError(w, st.localeOrDefault(), err)
			return false
		}
		auth, ok := singleValue(r.Header, "Authorization")
		if !ok {
			return fail(i18n.CodeHeaderRepeated)
		}
		raw, ok := bearerToken(auth)
		if !ok {
			return fail(i18n.CodeTokenEmpty)
		}
		clientID := st.client.ID
		if !st.hasClient {
			id, ok := singleValue(r.Header, "X-Client-Id")
			if !ok {
				return fail(i18n.CodeHeaderRepeated)
			}
			clientID = strings.TrimSpace(id)
		}
		id, err := v.VerifyToken(r.Context(), raw, clientID)
		if err != nil {
			return fail(err)
		}
		st.identity, st.hasIdent = id, true
		return true
	}
}

// bearerToken extracts the token of a Bearer authorization; ok is false when
// there is none or it is blank.
func bearerToken(h string) (token string, ok bool) {
	const scheme = "Bearer"
	h = strings.TrimSpace(h)
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	rest := h[len(scheme):]
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}
