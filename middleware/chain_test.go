package middleware_test

import (
	"errors"
	"net/http"
	"testing"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// chain is the standard order of the package doc, as separate middlewares.
func chain(reg store.ClientRegistry, v middleware.TokenVerifier, next http.Handler) http.Handler {
	return middleware.Localize(i18n.Default())(
		middleware.DeviceHeaders(
			middleware.RequireClientID(reg, discard)(
				middleware.RequireBearer(v)(next))))
}

// fused is the same order as one Chain.
func fused(reg store.ClientRegistry, v middleware.TokenVerifier, next http.Handler) http.Handler {
	return middleware.Chain(middleware.ChainOptions{Clients: reg, Verifier: v, Logger: discard})(next)
}

// chains are the two ways to build the standard chain, which must answer
// alike.
var chains = []struct {
	name  string
	build func(store.ClientRegistry, middleware.TokenVerifier, http.Handler) http.Handler
}{{"separate", chain}, {"Chain", fused}}

// The first failing check answers, in the order device -> client empty ->
// client registered -> token empty -> token valid, whatever else is wrong.
func TestChainOrder(t *testing.T) {
	t.Parallel()
	v := tokens{}
	good := "Bearer " + testUser + "@" + testClient
	expired := "Bearer expired"

	type faults struct {
		noDevice bool
		clientID string
		auth     string
	}
	tests := []struct {
		name     string
		faults   faults
		status   int
		code     string
		en, zh   string
		lookups  int
		reaching bool // the request reaches the handler
	}{
		{"every fault: device first", faults{true, "", ""}, 400, handlertest.CodeDevice, handlertest.MsgDevice, handlertest.MsgDeviceZH, 0, false},
		{"device, unknown client and bad token: device", faults{true, "nope", expired}, 400, handlertest.CodeDevice, handlertest.MsgDevice, handlertest.MsgDeviceZH, 0, false},
		{"device only", faults{true, testClient, good}, 400, handlertest.CodeDevice, handlertest.MsgDevice, handlertest.MsgDeviceZH, 0, false},
		{"empty client and no token: client empty", faults{false, "", ""}, 400, handlertest.CodeClientEmpty, handlertest.MsgClientEmpty, handlertest.MsgClientEmptyZH, 0, false},
		{"empty client and bad token: client empty", faults{false, "", expired}, 400, handlertest.CodeClientEmpty, handlertest.MsgClientEmpty, handlertest.MsgClientEmptyZH, 0, false},
		{"unknown client and no token: client registered", faults{false, "nope", ""}, 400, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown, handlertest.MsgClientUnknownZH, 1, false},
		{"unknown client and bad token: client registered", faults{false, "nope", expired}, 400, handlertest.CodeClientUnknown, handlertest.MsgClientUnknown, handlertest.MsgClientUnknownZH, 1, false},
		{"no token", faults{false, testClient, ""}, 400, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty, handlertest.MsgTokenEmptyZH, 1, false},
		{"Basic instead of Bearer", faults{false, testClient, "Basic dXNlcjpwYXNz"}, 400, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty, handlertest.MsgTokenEmptyZH, 1, false},
		{"expired token", faults{false, testClient, expired}, 400, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid, handlertest.MsgTokenInvalidZH, 1, false},
		{"no fault", faults{false, testClient, good}, 200, "", "", "", 1, true},
	}
	for _, tt := range tests {
		for _, lang := range []struct {
			xl  string
			tag language.Tag
			msg string
		}{{"en", language.English, tt.en}, {"zh", language.Chinese, tt.zh}} {
			for _, impl := range chains {
				t.Run(impl.name+"/"+tt.name+"/"+lang.xl, func(t *testing.T) {
					t.Parallel()
					reg := &handlertest.CountingRegistry{ClientRegistry: memstore.NewClientRegistry(store.Client{ID: testClient, Name: "App One"})}
					next := &handlertest.Recorder{}
					h := handlertest.DeviceHeaders()
					if tt.faults.noDevice {
						h = http.Header{}
					}
					h.Set("X-L", lang.xl)
					h.Set("X-Client-Id", tt.faults.clientID)
					h.Set("Authorization", tt.faults.auth)

					w := handlertest.Serve(impl.build(reg, v, next), handlertest.NewRequest(h))
					if got := w.Header().Get("Content-Language"); got != lang.tag.String() {
						t.Errorf("Content-Language = %q, want %q", got, lang.tag)
					}
					if got := reg.Calls(); got != tt.lookups {
						t.Errorf("registry called %d times, want %d", got, tt.lookups)
					}
					if !tt.reaching {
						handlertest.AssertError(t, w, next, tt.status, tt.code, lang.msg)
						return
					}
					handlertest.AssertPassed(t, w, next)
					ctx := next.Context(t)
					if loc := middleware.LocaleFromContext(ctx); loc == nil || loc.Tag() != lang.tag {
						t.Errorf("LocaleFromContext = %v, want %v", loc, lang.tag)
					}
					if d, ok := middleware.DeviceFromContext(ctx); !ok || d.OSVersion != "windows10.1.1" {
						t.Errorf("DeviceFromContext = %+v, %v", d, ok)
					}
					if c, ok := middleware.ClientFromContext(ctx); !ok || c.Name != "App One" {
						t.Errorf("ClientFromContext = %+v, %v", c, ok)
					}
					if sub := subjectOf(ctx); sub != testUser {
						t.Errorf("IdentityFromContext: subject %q, want %q", sub, testUser)
					}
				})
			}
		}
	}
}

// A registry that is down answers before the token is looked at.
func TestChainRegistryDown(t *testing.T) {
	t.Parallel()
	v := tokens{}
	next := &handlertest.Recorder{}
	h := handlertest.DeviceHeaders()
	h.Set("X-Client-Id", testClient)
	for _, impl := range chains {
		w := handlertest.Serve(impl.build(handlertest.FailingRegistry{Err: errors.New("registry down")}, v, next), handlertest.NewRequest(h))
		handlertest.AssertError(t, w, next, http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal)
	}
}
