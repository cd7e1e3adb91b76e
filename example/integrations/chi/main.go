// Command chi serves the self-service API on a chi v5 router, next to the
// application's own routes and chi's middlewares.
//
//	go run ./chi [-addr 127.0.0.1:8081]
//
// chi's router has a Handle(pattern, http.Handler) method, so Service.Mount
// registers both endpoints on it directly, for every method: the package's
// own guard answers any method but POST with its 405 (IDAAS.SDK.REQ.9101,
// Allow: POST) in the request's language.
//
// r.Post would route POST alone, and it takes an http.HandlerFunc, not the
// http.Handler the Service returns: r.Post(path, svc.SendCodeHandler().ServeHTTP)
// or r.Method(http.MethodPost, path, svc.SendCodeHandler()) compile, but chi
// then answers every other method with its own empty 405. Use Mount, or
// r.Handle(path, svc.SendCodeHandler()) for one endpoint.
package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demo"
)

func main() {
	demo.Main("chi", "127.0.0.1:8081", func(svc *selfservice.Service, _ selfservice.Config) http.Handler {
		return newRouter(svc)
	})
}

// newRouter returns the application's router with the API mounted at the
// standard paths. chi's middleware package is imported as chimw: its name,
// middleware, is also the name of the self-service package's.
func newRouter(svc *selfservice.Service) *chi.Mux {
	r := chi.NewRouter()
	r.Use(chimw.RequestID, chimw.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// Each endpoint carries the package's middleware chain (language, POST
	// only, device headers, client id, bearer token), in that order.
	svc.Mount(r, "")
	return r
}
