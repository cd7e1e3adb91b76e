package main

import (
	"net/http"
	"os"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demotest"
	"github.com/ciamkit/selfservice/i18n"
)

// TestMain sets gin's mode, a process-wide variable, once, before any test
// runs.
func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

func build(svc *selfservice.Service, _ selfservice.Config) http.Handler { return newRouter(svc) }

func TestAPI(t *testing.T) {
	t.Parallel()
	demotest.Run(t, build, nil)
}

// TestRouter: the application's routes live beside the API, and a method
// outside gin's Any list never reaches the package: gin answers it 404.
func TestRouter(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, build, nil)

	if r := s.Do(t, http.MethodGet, "/healthz", nil, ""); r.Status != http.StatusNoContent {
		t.Errorf("GET /healthz: %d, want 204", r.Status)
	}

	r := s.Do(t, http.MethodTrace, selfservice.UpdateEmailPath, http.Header{"X-L": {"zh"}}, "")
	demotest.ExpectError(t, r, i18n.CodeMethodNotAllowed, "zh")

	r = s.DoFramework(t, "PURGE", selfservice.SendCodePath, nil, "")
	if r.Status != http.StatusNotFound || r.Body != "404 page not found" {
		t.Errorf("PURGE: %d %q, want gin's 404", r.Status, r.Body)
	}
}
