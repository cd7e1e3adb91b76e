package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/testenv"
)

// TestStoreFlagsHideSecrets: a -store or -codes value that does not open
// is never repeated in the error, which goes to stderr and logs: it may
// hold a password. Schemes compare case-insensitively, so POSTGRES:// and
// REDIS:// URLs are taken for what they are.
func TestStoreFlagsHideSecrets(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	for _, c := range []struct {
		name, store, codes string
		known              bool // the scheme is one the example opens
	}{
		{"upper-case postgres", "POSTGRES://app:" + secret + "@127.0.0.1:1/x?connect_timeout=5", "memory", true},
		{"mixed-case postgresql", "PostgreSQL://app:" + secret + "@127.0.0.1:1/x?connect_timeout=5", "memory", true},
		{"postgres URL that does not parse", "POSTGRES://app:" + secret + "@127.0.0.1:x/db", "memory", true},
		{"password in the query", "postgres://127.0.0.1:1/db?connect_timeout=5&password=" + secret, "memory", true},
		{"another database", "mysql://app:" + secret + "@db/x", "memory", false},
		{"no scheme", "app:" + secret + "@db/x", "memory", false},
		{"postgres without //", "postgres:app:" + secret + "@db/x", "memory", false},
		{"keyword DSN", "host=db user=app password=" + secret, "memory", false},
		{"upper-case redis", "memory", "REDIS://:" + secret + "@127.0.0.1:1/0", true},
		{"mixed-case rediss", "memory", "Rediss://app:" + secret + "@127.0.0.1:1/0", true},
		{"redis URL that does not parse", "memory", "REDIS://:" + secret + "@127.0.0.1:x/0", true},
		{"another code store", "memory", "memcache://:" + secret + "@127.0.0.1:1", false},
		{"codes without a scheme", "memory", ":" + secret + "@127.0.0.1:1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := openStores(ctx, c.store, c.codes, 1)
			if err == nil {
				st.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			if strings.Contains(msg, secret) {
				t.Errorf("the error repeats the password: %s", msg)
			}
			if refused := strings.Contains(msg, "want memory"); refused == c.known {
				t.Errorf("scheme known: %v, but the error is %s", c.known, msg)
			}
		})
	}
}

// TestStoreSchemesAnyCase opens stores whose flags spell the scheme in
// upper case: schemes are case-insensitive.
func TestStoreSchemesAnyCase(t *testing.T) {
	t.Parallel()
	upper := func(v string) string {
		scheme, rest, _ := strings.Cut(v, ":")
		return strings.ToUpper(scheme) + ":" + rest
	}
	open := func(t *testing.T, store, codes string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := openStores(ctx, store, codes, 1)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		open(t, "SQLite:"+filepath.Join(t.TempDir(), "upper.db"), "memory")
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		open(t, upper(testenv.Lookup(t, testenv.Postgres)), "memory")
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		open(t, "memory", upper(testenv.Lookup(t, testenv.Redis)))
	})
}
