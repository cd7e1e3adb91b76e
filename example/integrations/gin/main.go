// Command gin serves the self-service API on a gin engine, next to the
// application's own routes.
//
//	go run ./gin [-addr 127.0.0.1:8082]
//
// gin routes by itself, so each endpoint's complete handler (the package's
// middleware chain included) is wrapped with gin.WrapH and routed with
// router.Any: every method gin routes reaches the package's own guard,
// which answers any but POST with its 405 (IDAAS.SDK.REQ.9101, Allow: POST)
// in the request's language. router.POST would leave the other methods to
// gin, which answers them 404 "404 page not found" (405 with its own text
// when HandleMethodNotAllowed is set).
//
// gin's Any covers GET, POST, PUT, PATCH, HEAD, OPTIONS, DELETE, CONNECT and
// TRACE; any other method (PROPFIND, PURGE, ...) is answered by gin's
// NoRoute, 404.
package main

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demo"
)

func main() {
	gin.SetMode(gin.ReleaseMode)
	demo.Main("gin", "127.0.0.1:8082", func(svc *selfservice.Service, _ selfservice.Config) http.Handler {
		return newRouter(svc)
	})
}

// newRouter returns the application's engine with the API at the standard
// paths.
func newRouter(svc *selfservice.Service) *gin.Engine {
	router := gin.New()
	router.Use(gin.Recovery())
	router.GET("/healthz", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	router.Any(selfservice.SendCodePath, gin.WrapH(svc.SendCodeHandler()))
	router.Any(selfservice.UpdateEmailPath, gin.WrapH(svc.UpdateEmailHandler()))
	return router
}
