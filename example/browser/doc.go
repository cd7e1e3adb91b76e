// Package browser holds the tests that need a real browser: the example's
// demo page driven through the whole flow in headless Chromium, and the
// CORS pattern for a single-page app on another origin (github.com/rs/cors
// in front of the API, allowing exactly selfservice.RequestHeaders()).
//
// It is a module of its own so that chromedp and rs/cors never become
// dependencies of the library. Run it with
//
//	cd example/browser && go test ./...
//
// The Chromium tests use $SELFSERVICE_TEST_CHROMIUM, else chromium on PATH
// (Debian: apt-get install chromium); without one they skip, unless
// SELFSERVICE_REQUIRE_SERVICES=1, when they fail.
package browser
