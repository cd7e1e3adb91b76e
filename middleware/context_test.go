package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// seen is what a handler behind the chain found in its context.
type seen struct {
	subject, client, fingerprint, lang string
}

func seenIn(ctx context.Context) seen {
	var s seen
	s.subject = subjectOf(ctx)
	if c, ok := middleware.ClientFromContext(ctx); ok {
		s.client = c.ID
	}
	if d, ok := middleware.DeviceFromContext(ctx); ok {
		s.fingerprint = d.Fingerprint
	}
	if loc := middleware.LocaleFromContext(ctx); loc != nil {
		s.lang = loc.Tag().String()
	}
	return s
}

// TestFanOutSubRequests: a handler behind Localize dispatches sub-requests,
// derived from its own, through the rest of the chain, each for another
// user, client and device (a batch endpoint). Every sub-request sees its own
// values, while it runs and after its siblings ran, and the parent's context
// is what Localize left, untouched (issue 10, 1).
func TestFanOutSubRequests(t *testing.T) {
	t.Parallel()
	v := tokens{}
	const n = 100
	clients := []store.Client{{ID: "app-1"}, {ID: "app-2"}, {ID: "app-3"}}
	reg := memstore.NewClientRegistry(clients...)

	type want struct {
		seen seen
		auth string
	}
	wants := make([]want, n)
	for i := range wants {
		client := clients[i%len(clients)].ID
		sub := fmt.Sprintf("user-%03d", i)
		wants[i] = want{
			seen: seen{subject: sub, client: client, fingerprint: fmt.Sprintf("fp-%03d", i), lang: "zh"},
			auth: "Bearer " + sub + "@" + client,
		}
	}

	inners := map[string]func(http.Handler) http.Handler{
		"separate": func(leaf http.Handler) http.Handler {
			return middleware.DeviceHeaders(middleware.RequireClientID(reg, discard)(middleware.RequireBearer(v)(leaf)))
		},
		"Chain": middleware.Chain(middleware.ChainOptions{Clients: reg, Verifier: v, Logger: discard}),
	}
	for _, mode := range []string{"sequential", "concurrent"} {
		for impl, innerOf := range inners {
			t.Run(mode+"/"+impl, func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				leafCtx := make(map[string]context.Context) // by fingerprint
				leafSaw := make(map[string]seen)
				leaf := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s := seenIn(r.Context())
					mu.Lock()
					leafCtx[s.fingerprint], leafSaw[s.fingerprint] = r.Context(), s
					mu.Unlock()
				})
				inner := innerOf(leaf)

				var parentBefore, parentAfter seen
				codes := make([]int, n)
				batch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					parentBefore = seenIn(r.Context())
					var wg sync.WaitGroup
					for i, want := range wants {
						sub := r.Clone(r.Context())
						for key, vs := range handlertest.DeviceHeaders() {
							sub.Header[key] = vs
						}
						sub.Header.Set("X-Device-Fingerprint", want.seen.fingerprint)
						sub.Header.Set("X-Client-Id", want.seen.client)
						sub.Header.Set("Authorization", want.auth)
						run := func() {
							rec := httptest.NewRecorder()
							inner.ServeHTTP(rec, sub)
							codes[i] = rec.Code
						}
						if mode == "concurrent" {
							wg.Go(run)
						} else {
							run()
						}
					}
					wg.Wait()
					parentAfter = seenIn(r.Context())
				})
				w := handlertest.Serve(middleware.Localize(i18n.Default())(batch), handlertest.NewRequest(http.Header{"X-L": {"zh"}}))
				if w.Code != http.StatusOK {
					t.Fatalf("batch answered %d: %s", w.Code, w.Body)
				}

				parentWant := seen{lang: "zh"}
				if parentBefore != parentWant || parentAfter != parentWant {
					t.Errorf("parent saw %+v before and %+v after the sub-requests, want %+v both times", parentBefore, parentAfter, parentWant)
				}
				wrong := 0
				for i, want := range wants {
					fp := want.seen.fingerprint
					if codes[i] != http.StatusOK {
						t.Fatalf("sub-request %d answered %d", i, codes[i])
					}
					during, after := leafSaw[fp], seenIn(leafCtx[fp])
					if during != want.seen || after != want.seen {
						wrong++
						if wrong <= 3 {
							t.Errorf("sub-request %d saw %+v while it ran and %+v after its siblings, want %+v", i, during, after, want.seen)
						}
					}
				}
				if wrong > 0 {
					t.Errorf("%d of %d sub-requests saw values that were not their own", wrong, n)
				}
			})
		}
	}
}

// TestDerivedRequestLeavesParent: a handler that runs a derived request
// through Localize again (a framework re-dispatching it, in another
// language) changes nothing its own request carries.
func TestDerivedRequestLeavesParent(t *testing.T) {
	t.Parallel()
	reg := memstore.NewClientRegistry(store.Client{ID: "app-1"}, store.Client{ID: "app-2"})
	var inner seen
	again := middleware.Localize(i18n.Default())(middleware.RequireClientID(reg, discard)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = seenIn(r.Context())
	})))
	var before, after seen
	outer := middleware.Localize(i18n.Default())(middleware.RequireClientID(reg, discard)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before = seenIn(r.Context())
		sub := r.Clone(r.Context())
		sub.Header.Set("X-L", "zh")
		sub.Header.Set("X-Client-Id", "app-2")
		again.ServeHTTP(httptest.NewRecorder(), sub)
		after = seenIn(r.Context())
	})))
	w := handlertest.Serve(outer, handlertest.NewRequest(http.Header{"X-L": {"en"}, "X-Client-Id": {"app-1"}}))
	if w.Code != http.StatusOK {
		t.Fatalf("answered %d: %s", w.Code, w.Body)
	}
	if want := (seen{client: "app-1", lang: "en"}); before != want || after != want {
		t.Errorf("parent saw %+v before and %+v after the derived request, want %+v", before, after, want)
	}
	if want := (seen{client: "app-2", lang: "zh"}); inner != want {
		t.Errorf("derived request saw %+v, want %+v", inner, want)
	}
}
