package selfservice

// RequestHeaders returns the request headers the endpoints read that a
// browser sends only with the server's leave: the list to allow in a CORS
// layer (Access-Control-Allow-Headers) when a single-page app on another
// origin calls the API. Each call returns a new slice.
//
// Two headers the package reads are left out on purpose. Accept-Language is
// CORS-safelisted: a browser sends it without asking. X-Forwarded-For is
// believed only from a proxy that Config.ClientIP trusts (TrustProxies),
// never from a browser.
//
// With github.com/rs/cors in front of the mux the endpoints are mounted on:
//
//	c := cors.New(cors.Options{
//		AllowedOrigins: []string{"https://app.example.com"}, // the app's origins, not "*"
//		AllowedMethods: []string{http.MethodPost},
//		AllowedHeaders: selfservice.RequestHeaders(),
//		ExposedHeaders: []string{"Retry-After", "WWW-Authenticate"},
//		MaxAge:         600, // seconds a browser may reuse a preflight
//	})
//	svc, err := selfservice.New(cfg)
//	if err != nil {
//		return err
//	}
//	mux := http.NewServeMux()
//	svc.Mount(mux, "")
//	srv := &http.Server{Addr: addr, Handler: c.Handler(mux)}
//
// The CORS layer answers the preflight (OPTIONS) itself; the endpoints see
// only the POST that follows, and a browser on an origin not listed never
// sends it. Name the app's origins rather than "*": send-code needs no
// token, so with "*" any web site could have its visitors' browsers ask for
// codes. AllowCredentials stays false: the id_token
// travels in Authorization, set by the script, not in a cookie. Exposing
// Retry-After lets the script read the wait of a 429, and WWW-Authenticate
// the step-up challenge of Config.MaxAuthAge.
func RequestHeaders() []string {
	return []string{
		"Content-Type",
		"Authorization",
		"X-operating-sys-version",
		"X-device-fingerprint",
		"X-device-ip",
		"X-agent",
		"X-L",
		"X-client-id",
	}
}
