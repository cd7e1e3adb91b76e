package loadgen

import (
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Floor is what the load comparisons measure the API against: a bare
// handler of the API's two paths that verifies the bearer token of a
// request, when it carries one, with golang-jwt and the key keyfunc gives
// (RS256 only), and nothing else. It answers a success as the API does
// (200, application/json, no-store, no body) and a token that does not
// verify with 401; it reads no body and checks no other header. Run drives
// it with Options.Floor.
func Floor(keyfunc jwt.Keyfunc) http.Handler {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if _, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc); err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
	})
	mux := http.NewServeMux()
	mux.Handle(SendCodePath, h)
	mux.Handle(UpdateEmailPath, h)
	return mux
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)
