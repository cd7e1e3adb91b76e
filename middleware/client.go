package middleware

import (
	"context"
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
	return stepMiddleware(requireClientID(reg, logger))
}

func requireClientID(reg store.ClientRegistry, logger *slog.Logger) step {
	if reg == nil {
		panic("middleware: RequireClientID: nil ClientRegistry")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return func(w http.ResponseWriter, r *http.Request, st *state) bool {
		id, ok := singleValue(r.Header, "X-Client-Id")
		if !ok {
			writeError(w, st.localeOrDefault(), i18n.CodeHeaderRepeated)
			return false
		}
		c, err := LookupClient(r.Context(), reg, id)
		if err != nil {
			if errors.Is(err, i18n.CodeInternal) {
				logger.ErrorContext(r.Context(), "selfservice: client registry failed", "error", err)
			}
			writeError(w, st.localeOrDefault(), err)
			return false
		}
		st.client, st.hasClient = c, true
		return true
	}
}

// LookupClient finds the application id names, as RequireClientID does:
// id is trimmed; blank is i18n.CodeClientIDEmpty; too long, not UTF-8 or
// holding a control character is i18n.CodeClientUnknown without a lookup;
// not in reg is i18n.CodeClientUnknown; a registry failure is
// i18n.CodeInternal wrapping it.
func LookupClient(ctx context.Context, reg store.ClientRegistry, id string) (store.Client, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return store.Client{}, i18n.CodeClientIDEmpty
	}
	if len(id) > MaxClientIDLen || !plausibleID(id) {
		return store.Client{}, i18n.CodeClientUnknown
	}
	c, err := reg.Client(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Client{}, i18n.CodeClientUnknown
		}
		return store.Client{}, i18n.Wrap(i18n.CodeInternal, err)
	}
	return c, nil
}
