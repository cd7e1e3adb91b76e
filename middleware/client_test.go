package middleware_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

func TestRequireClientID(t *testing.T) {
	t.Parallel()
	atLimit := strings.Repeat("c", middleware.MaxClientIDLen)
	overLimit := strings.Repeat("c", middleware.MaxClientIDLen+1)
	clients := []store.Client{
		{ID: "app-1", Name: "App One"},
		{ID: atLimit, Name: "Long"},
		{ID: overLimit, Name: "Too long to ever be looked up"},
	}

	tests := []struct {
		name      string
		header    []string // nil: no X-client-id
		status    int
		code, msg string
		lookups   int
		want      store.Client // when let through
	}{
		{"registered", []string{"app-1"}, http.StatusOK, "", "", 1, clients[0]},
		{"registered, padded", []string{"  app-1\t"}, http.StatusOK, "", "", 1, clients[0]},
		{"registered, at the length limit", []string{atLimit}, http.StatusOK, "", "", 1, clients[1]},
		{"missing", nil, http.StatusBadRequest, handlertest.CodeClientEmpty, handlertest.MsgClientEmpty, 0, store.Client{}},
		{"empty", []string{""}, http.StatusBadRequest, handlertest.CodeClientEmpty, handlertest.MsgClientEmpty, 0, store.Client{}},
		{"blank", []string{" \t "}, http.StatusBadRequest, handlertest.CodeClientEmpty, handlertest.MsgClientEmpty, 0, store.Client{}},
		{"unknown", []string{"app-2"}, http.StatusBadRequest, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown, 1, store.Client{}},
		{"case differs", []string{"APP-1"}, http.StatusBadRequest, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown, 1, store.Client{}},
		{"too long, even if registered", []string{overLimit}, http.StatusBadRequest, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown, 0, store.Client{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := &handlertest.CountingRegistry{ClientRegistry: memstore.NewClientRegistry(clients...)}
			next := &handlertest.Recorder{}
			hdr := http.Header{}
			if tt.header != nil {
				hdr["X-Client-Id"] = tt.header
			}
			w := handlertest.Serve(middleware.RequireClientID(reg, discard)(next), handlertest.NewRequest(hdr))
			if got := reg.Calls(); got != tt.lookups {
				t.Errorf("registry called %d times, want %d", got, tt.lookups)
			}
			if tt.status != http.StatusOK {
				handlertest.AssertError(t, w, next, tt.status, tt.code, tt.msg)
				return
			}
			handlertest.AssertPassed(t, w, next)
			c, ok := middleware.ClientFromContext(next.Context(t))
			if !ok || c != tt.want {
				t.Errorf("ClientFromContext = %+v, %v; want %+v, true", c, ok, tt.want)
			}
		})
	}
}

func TestRequireClientIDRegistryFailure(t *testing.T) {
	t.Parallel()
	const secret = "dial tcp 10.1.2.3:5432: connection refused (password=hunter2)"
	tests := []struct {
		name string
		err  error
		xl   string
		msg  string
	}{
		{"plain error", errors.New(secret), "", handlertest.MsgInternal},
		{"wrapped error", fmt.Errorf("clients: %w", errors.New(secret)), "", handlertest.MsgInternal},
		{"other sentinel", fmt.Errorf("%s: %w", secret, store.ErrRateLimited), "", handlertest.MsgInternal},
		{"in Chinese", errors.New(secret), "zh", handlertest.MsgInternalZH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			h := middleware.Localize(i18n.Default())(middleware.RequireClientID(handlertest.FailingRegistry{Err: tt.err}, discard)(next))
			w := handlertest.Serve(h, handlertest.NewRequest(http.Header{"X-Client-Id": {"app-1"}, "X-L": {tt.xl}}))
			handlertest.AssertError(t, w, next, http.StatusInternalServerError, handlertest.CodeInternal, tt.msg)
			for _, leak := range []string{"hunter2", "10.1.2.3", "connection refused", "clients:"} {
				if strings.Contains(w.Body.String(), leak) {
					t.Errorf("body %s leaks %q", w.Body, leak)
				}
			}
		})
	}
}

// A registry may wrap ErrNotFound with its own context.
func TestRequireClientIDWrappedNotFound(t *testing.T) {
	t.Parallel()
	next := &handlertest.Recorder{}
	reg := handlertest.FailingRegistry{Err: fmt.Errorf("sql registry: client %q: %w", "x", store.ErrNotFound)}
	w := handlertest.Serve(middleware.RequireClientID(reg, discard)(next), handlertest.NewRequest(http.Header{"X-Client-Id": {"x"}}))
	handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown)
}

func TestRequireClientIDLocalised(t *testing.T) {
	t.Parallel()
	reg := memstore.NewClientRegistry(store.Client{ID: "app-1"})
	tests := []struct {
		name, id, code, msg string
	}{
		{"empty", "", handlertest.CodeClientEmpty, handlertest.MsgClientEmptyZH},
		{"unknown", "nope", handlertest.CodeClientUnknown, handlertest.MsgClientUnknownZH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			h := middleware.Localize(i18n.Default())(middleware.RequireClientID(reg, discard)(next))
			w := handlertest.Serve(h, handlertest.NewRequest(http.Header{"X-Client-Id": {tt.id}, "X-L": {"zh_CN"}}))
			handlertest.AssertError(t, w, next, http.StatusBadRequest, tt.code, tt.msg)
		})
	}
}

func TestRequireClientIDPanicsOnNilRegistry(t *testing.T) {
	t.Parallel()
	handlertest.AssertPanics(t, "RequireClientID(nil)", func() { middleware.RequireClientID(nil, nil) })
}

// TestRequireClientIDRepeated: two X-client-id values are refused before
// any other check and without a lookup: a proxy may have checked the other
// one (issue 10, 5).
func TestRequireClientIDRepeated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ids  []string
	}{
		{"two clients", []string{"app-1", "app-2"}},
		{"the same client twice", []string{"app-1", "app-1"}},
		{"both empty", []string{"", ""}},
		{"one of them blank", []string{" ", "app-1"}},
		{"one of them implausible", []string{"app-1", "\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := &handlertest.CountingRegistry{ClientRegistry: memstore.NewClientRegistry(store.Client{ID: "app-1"}, store.Client{ID: "app-2"})}
			next := &handlertest.Recorder{}
			h := middleware.Localize(i18n.Default())(middleware.RequireClientID(reg, discard)(next))
			for _, lang := range []struct{ xl, msg string }{{"en", handlertest.MsgHeaderRepeated}, {"zh", handlertest.MsgHeaderRepeatedZH}} {
				w := handlertest.Serve(h, handlertest.NewRequest(http.Header{"X-Client-Id": tt.ids, "X-L": {lang.xl}}))
				handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeHeaderRepeated, lang.msg)
			}
			if n := reg.Calls(); n != 0 {
				t.Errorf("registry called %d times", n)
			}
		})
	}
}

// TestRequireClientIDLogger: a registry failure goes to the logger given,
// once.
func TestRequireClientIDLogger(t *testing.T) {
	t.Parallel()
	logs := &handlertest.LogSink{}
	next := &handlertest.Recorder{}
	h := middleware.RequireClientID(handlertest.FailingRegistry{Err: errors.New("registry down")}, logs.Logger())(next)
	w := handlertest.Serve(h, handlertest.NewRequest(http.Header{"X-Client-Id": {"app-1"}}))
	handlertest.AssertError(t, w, next, http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal)
	recs := logs.Records()
	if len(recs) != 1 || recs[0]["msg"] != "selfservice: client registry failed" || recs[0]["level"] != "ERROR" ||
		!strings.Contains(fmt.Sprint(recs[0]["error"]), "registry down") {
		t.Errorf("logged %v, want one ERROR record of the registry failure", recs)
	}
}
