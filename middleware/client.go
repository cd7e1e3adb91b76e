package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

// MaxClientIDLen bounds X-client-id; a longer value is answered as not
// registered without asking the registry.
const MaxClientIDLen = 256

// plausibleID reports whether id could name a client at all: valid UTF-8
// without control characters. Anything else is unknown without asking the
// registry, whose database might choke on it and answer a 500.
func plausibleID(id string) bool {
	if !utf8.ValidString(id) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// RequireClientID returns a middleware that requires X-client-id and looks it
// up in reg: repeated is IDAAS.SDK.REQ.9105 (a proxy may have checked the
// other value), blank is IDAAS.SDK.PARAM.0002, unknown (or too long, not
// UTF-8, holding a control character) is IDAAS.SDK.PARAM.0003, a registry
// failure is the internal-error code, logged to logger (nil:
// slog.Default()). The store.Client found goes into the request context.
// Panics if reg is nil: a missing registry is a configuration error, not a
// pass.
func RequireClientID(reg store.ClientRegistry, logger *slog.Logger) func(http.Handler) http.Handler {
	if reg == nil {
		panic("middleware: RequireClientID: nil ClientRegistry")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := singleValue(r.Header, "X-Client-Id")
			if !ok {
				WriteError(w, r, i18n.ErrHeaderRepeated)
				return
			}
			id = strings.TrimSpace(id)
			if id == "" {
				WriteError(w, r, i18n.ErrClientIDEmpty)
				return
			}
			if len(id) > MaxClientIDLen || !plausibleID(id) {
				WriteError(w, r, i18n.ErrClientUnknown)
				return
			}
			c, err := reg.Client(r.Context(), id)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					WriteError(w, r, i18n.ErrClientUnknown)
					return
				}
				logger.ErrorContext(r.Context(), "selfservice: client registry failed", "error", err)
				WriteError(w, r, i18n.ErrInternal.WithCause(err))
				return
			}
			r, st := withState(r)
			st.client, st.hasClient = c, true
			next.ServeHTTP(w, r)
		})
	}
}
