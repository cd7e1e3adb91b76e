// Package pgtest gives a test a PostgreSQL schema of its own, so that
// parallel tests and runs never collide.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ciamkit/selfservice/internal/testenv"
)

// Open creates a schema in the database SELFSERVICE_TEST_POSTGRES names
// (skipping t when it is unset), returns a pool whose search_path is that
// schema, and drops the schema when t ends. With via set (host:port, e.g. a
// proxy in front of the server), the pool connects there instead; the
// schema is managed over a direct connection. params are run-time
// parameters every connection of the pool sets, as name, value pairs
// (e.g. "default_transaction_isolation", "serializable").
func Open(t testing.TB, via string, params ...string) *sql.DB {
	t.Helper()
	url := testenv.Lookup(t, testenv.Postgres)
	config := func() *pgx.ConnConfig {
		t.Helper()
		c, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatalf("%s: %v", testenv.Postgres, err)
		}
		return c
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	schema := "selfservice_test_" + hex.EncodeToString(suffix)

	admin := stdlib.OpenDB(*config())
	if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	c := config()
	c.RuntimeParams["search_path"] = schema
	for i := 0; i+1 < len(params); i += 2 {
		c.RuntimeParams[params[i]] = params[i+1]
	}
	if via != "" {
		host, port, err := net.SplitHostPort(via)
		p, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || perr != nil {
			t.Fatalf("pgtest: bad address %q", via)
		}
		c.Host, c.Port = host, uint16(p)
	}
	db := stdlib.OpenDB(*c)
	t.Cleanup(func() {
		db.Close()
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return db
}

// Addr returns host:port of the server SELFSERVICE_TEST_POSTGRES names,
// skipping t when it is unset.
func Addr(t testing.TB) string {
	t.Helper()
	c, err := pgx.ParseConfig(testenv.Lookup(t, testenv.Postgres))
	if err != nil {
		t.Fatalf("%s: %v", testenv.Postgres, err)
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}
