// Command echo serves the self-service API on an echo v4 server, with a
// middleware of the application's own in front of it.
//
//	go run ./echo [-addr 127.0.0.1:8083]
//
// echo routes by itself, so each endpoint's complete handler (the package's
// middleware chain included) is wrapped with echo.WrapHandler and routed
// for every method: Any covers the methods echo knows, and RouteNotFound on
// the same path catches any other (echo would answer those with its own
// JSON 405). Every method thus reaches the package's own guard, which
// answers any but POST with its 405 (IDAAS.SDK.REQ.9101, Allow: POST) in
// the request's language.
//
// echo runs a group's middlewares before the route's handler whatever the
// method, and Group.Use routes the group's unmatched paths and methods to
// them too. A group middleware that answers by itself therefore answers
// before any of the package's checks: one that checks device headers
// answers a GET with PARAM.0001 instead of the 405. So the package's checks
// stay inside its handlers, never group middleware, and the application's
// middlewares for the API are route middlewares that pass requests on
// (RequestID here). In a group they would keep the order too, but the
// catch-all 404 that Group.Use registers under the prefix would answer the
// methods echo does not know before RouteNotFound could (see TestGroup).
package main

import (
	"net/http"

	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demo"
)

func main() {
	demo.Main("echo", "127.0.0.1:8083", func(svc *selfservice.Service, _ selfservice.Config) http.Handler {
		return newServer(svc)
	})
}

// newServer returns the application's echo with the API at the standard
// paths. echo's middleware package is imported as echomw: its name,
// middleware, is also the name of the self-service package's.
func newServer(svc *selfservice.Service) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(echomw.Recover())
	e.GET("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	requestID := echomw.RequestID()
	mount(e, selfservice.SendCodePath, svc.SendCodeHandler(), requestID)
	mount(e, selfservice.UpdateEmailPath, svc.UpdateEmailHandler(), requestID)
	return e
}

// mount routes every method at path to h, behind the route middlewares m.
func mount(e *echo.Echo, path string, h http.Handler, m ...echo.MiddlewareFunc) {
	eh := echo.WrapHandler(h)
	e.Any(path, eh, m...)
	e.RouteNotFound(path, eh, m...)
}
