package main

import (
	"net/http"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demotest"
	"github.com/ciamkit/selfservice/i18n"
)

func build(svc *selfservice.Service, _ selfservice.Config) http.Handler { return newRouter(svc) }

func TestAPI(t *testing.T) {
	t.Parallel()
	demotest.Run(t, build, nil)
}

// TestRouter: the application's routes and chi's middlewares live beside
// the API: chi's RequestID runs in front of the package's 405, and a method
// chi does not know is answered by chi before any route is looked at.
func TestRouter(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, build, nil)

	if r := s.Do(t, http.MethodGet, "/healthz", nil, ""); r.Status != http.StatusNoContent {
		t.Errorf("GET /healthz: %d, want 204", r.Status)
	}

	r := s.Do(t, http.MethodGet, selfservice.UpdateEmailPath, nil, "")
	demotest.ExpectError(t, r, i18n.CodeMethodNotAllowed, "")

	// chi answers a method outside its method table (chi.RegisterMethod
	// adds one, process-wide) with its own empty 405.
	r = s.DoFramework(t, "PURGE", selfservice.SendCodePath, nil, "")
	if r.Status != http.StatusMethodNotAllowed || r.Body != "" {
		t.Errorf("PURGE: %d %q, want chi's empty 405", r.Status, r.Body)
	}
}
