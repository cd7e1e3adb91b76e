package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demotest"
	"github.com/ciamkit/selfservice/i18n"
)

func build(svc *selfservice.Service, _ selfservice.Config) http.Handler { return newServer(svc) }

func TestAPI(t *testing.T) {
	t.Parallel()
	demotest.Run(t, build, nil)
}

// TestRoutes: the route middleware runs in front of the API without
// breaking the package's order (a GET without any header gets the 405, not
// PARAM.0001), a method echo does not know reaches the package's guard too,
// and the rest of the application is left alone.
func TestRoutes(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, build, nil)

	r := s.Do(t, http.MethodGet, selfservice.SendCodePath, nil, "")
	demotest.ExpectError(t, r, i18n.CodeMethodNotAllowed, "")
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id: the route middleware did not run")
	}

	r = s.Do(t, "PURGE", selfservice.UpdateEmailPath, http.Header{"X-L": {"zh"}}, "")
	demotest.ExpectError(t, r, i18n.CodeMethodNotAllowed, "zh")
	if got := r.Header.Get("Allow"); got != http.MethodPost {
		t.Errorf("Allow: %q, want POST", got)
	}

	r = s.Do(t, http.MethodGet, "/healthz", nil, "")
	if r.Status != http.StatusNoContent || r.Header.Get("X-Request-Id") != "" {
		t.Errorf("GET /healthz: %d, X-Request-Id %q; want 204 without the API's middleware", r.Status, r.Header.Get("X-Request-Id"))
	}
}

// TestGroup is the same routes in a group with a middleware, as an
// application that groups its API would write them: the group's middleware
// passes requests on, so every method echo knows still gets the package's
// 405; a method it does not know is taken by the group's catch-all 404.
func TestGroup(t *testing.T) {
	t.Parallel()
	const prefix = "/api/v2/sdk"
	s := demotest.Start(t, func(svc *selfservice.Service, _ selfservice.Config) http.Handler {
		e := echo.New()
		g := e.Group(prefix, echomw.RequestID())
		for path, h := range map[string]http.Handler{
			selfservice.SendCodePath:    svc.SendCodeHandler(),
			selfservice.UpdateEmailPath: svc.UpdateEmailHandler(),
		} {
			eh := echo.WrapHandler(h)
			g.Any(strings.TrimPrefix(path, prefix), eh)
			g.RouteNotFound(strings.TrimPrefix(path, prefix), eh)
		}
		return e
	}, nil)

	c := s.Client("")
	demotest.ExpectOK(t, c.SendCode(t, "alice.new@example.com"))

	r := s.Do(t, http.MethodGet, selfservice.SendCodePath, nil, "")
	demotest.ExpectError(t, r, i18n.CodeMethodNotAllowed, "")
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id: the group's middleware did not run")
	}

	r = s.DoFramework(t, "PURGE", selfservice.SendCodePath, nil, "")
	if r.Status != http.StatusNotFound || r.Code != "" {
		t.Errorf("PURGE: %d %q, want the group's 404", r.Status, r.Body)
	}
}
