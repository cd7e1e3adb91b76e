package middleware

import (
	"net/http"
	"slices"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
)

// AllowMethods returns a middleware that answers a request whose method is
// not among methods with IDAAS.SDK.REQ.9101 (405) and an Allow header, in
// the package's error format. A router that routes only POST to the API
// answers other methods in its own format; route every method to the
// handlers instead (ServeMux.Handle without a method, chi's Handle, gin's
// Any, echo's Any) and let this guard answer. Panics if methods is empty.
func AllowMethods(methods ...string) func(http.Handler) http.Handler {
	return stepMiddleware(allowMethods(methods))
}

func allowMethods(methods []string) step {
	if len(methods) == 0 {
		panic("middleware: AllowMethods: no method")
	}
	methods = slices.Clone(methods)
	allow := []string{strings.Join(methods, ", ")}
	return func(w http.ResponseWriter, r *http.Request, st *state) bool {
		if slices.Contains(methods, r.Method) {
			return true
		}
		w.Header()["Allow"] = allow
		writeError(w, st.localeOrDefault(), i18n.CodeMethodNotAllowed)
		return false
	}
}
