// Package testenv tells integration tests where their services are.
//
// Each service's address comes from an environment variable. When it is
// unset the test is skipped with a message naming the variable, so that
// `go test ./...` passes anywhere; when SELFSERVICE_REQUIRE_SERVICES=1 (as
// .ci/run sets it) a missing variable fails the test instead, so a CI run
// cannot pass by skipping.
package testenv

import (
	"os"
	"testing"
)

// The variables, documented in the README.
const (
	Postgres    = "SELFSERVICE_TEST_POSTGRES"     // postgres://user@host:port/db?sslmode=disable
	Redis       = "SELFSERVICE_TEST_REDIS"        // redis://host:port/db
	MailpitSMTP = "SELFSERVICE_TEST_MAILPIT_SMTP" // Mailpit's SMTP listener, host:port
	MailpitAPI  = "SELFSERVICE_TEST_MAILPIT_API"  // base URL of Mailpit's HTTP API, http://host:port
	Require     = "SELFSERVICE_REQUIRE_SERVICES"
)

// Lookup returns the value of env, or skips t (fails it when services are
// required) when env is unset.
func Lookup(t testing.TB, env string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv(Require) == "1" {
		t.Fatalf("%s is not set and %s=1: this integration test must run", env, Require)
	}
	t.Skipf("%s is not set; skipping this integration test (see the README's Testing section)", env)
	return ""
}
