package middleware

import (
	"net/http"

	"github.com/ciamkit/selfservice/i18n"
)

// Localize returns a middleware that picks the response language from X-L,
// then Accept-Language, then the bundle's default (see i18n.Bundle.Match),
// puts it in the request context and sets Content-Language. It never answers
// on its own. Panics if bundle is nil.
func Localize(bundle *i18n.Bundle) func(http.Handler) http.Handler {
	if bundle == nil {
		panic("middleware: Localize: nil bundle")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			loc := bundle.Match(headerValue(r.Header, "X-L"), headerValue(r.Header, "Accept-Language"))
			r, st := withState(r)
			st.locale = loc
			w.Header()["Content-Language"] = loc.ContentLanguage()
			next.ServeHTTP(w, r)
		})
	}
}

// headerValue returns the first value of a header given in canonical form,
// without the canonicalisation Header.Get repeats on every call.
func headerValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}
