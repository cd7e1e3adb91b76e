package middleware

import (
	"net/http"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
)

// Localize returns a middleware that picks the response language from X-L,
// then Accept-Language, then the bundle's default (see i18n.Bundle.Match),
// puts it in the request context and sets Content-Language. It answers on
// its own only a repeated X-L, with IDAAS.SDK.REQ.9105 in the bundle's
// default language: which of the values would be the right one? Panics if
// bundle is nil.
func Localize(bundle *i18n.Bundle) func(http.Handler) http.Handler {
	return stepMiddleware(localize(bundle))
}

func localize(bundle *i18n.Bundle) step {
	if bundle == nil {
		panic("middleware: Localize: nil bundle")
	}
	decided := decidingXL(bundle)
	fallback := bundle.DefaultLocale()
	return func(w http.ResponseWriter, r *http.Request, st *state) bool {
		xl, ok := singleValue(r.Header, "X-L")
		if !ok {
			w.Header()["Content-Language"] = fallback.ContentLanguage()
			writeError(w, fallback, i18n.CodeHeaderRepeated)
			return false
		}
		loc := decided.lookup(xl)
		if loc == nil {
			loc = bundle.Match(xl, strings.Join(r.Header["Accept-Language"], ","))
		}
		st.locale = loc
		w.Header()["Content-Language"] = loc.ContentLanguage()
		return true
	}
}

// xlTable maps the X-L values that choose a locale on their own, whatever
// Accept-Language says, to that locale. Most requests send one of them, and
// a short scan spares them Accept-Language and the bundle's own lookups.
type xlTable []xlEntry

type xlEntry struct {
	value string
	loc   *i18n.Locale
}

func (t xlTable) lookup(xl string) *i18n.Locale {
	for _, e := range t {
		if e.value == xl {
			return e.loc
		}
	}
	return nil
}

// decidingXL builds the table from each locale's tag and base language.
// Only values that bundle.Match itself resolves from X-L alone go in, so the
// table changes no answer: a value that matched nothing would leave the
// choice to Accept-Language, which some other locale's tag would then win.
func decidingXL(bundle *i18n.Bundle) xlTable {
	locales := bundle.Locales()
	var t xlTable
	for _, loc := range locales {
		base, _ := loc.Tag().Base()
		for _, v := range []string{loc.Tag().String(), base.String()} {
			if v == "" || t.lookup(v) != nil || bundle.Match(v, "") != loc {
				continue
			}
			decides := true
			for _, other := range locales {
				if bundle.Match(v, other.Tag().String()) != loc {
					decides = false
				}
			}
			if decides {
				t = append(t, xlEntry{v, loc})
			}
		}
	}
	return t
}

// singleValue returns the value of a header that may appear at most once,
// given in canonical form, or "" when it is absent; ok is false when it
// appears more than once. Go keeps each occurrence of a header as its own
// value; a comma inside one value is left to the header's own syntax.
func singleValue(h http.Header, canonicalKey string) (value string, ok bool) {
	switch v := h[canonicalKey]; len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	default:
		return "", false
	}
}
