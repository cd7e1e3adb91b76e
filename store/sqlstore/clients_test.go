package sqlstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// Half a registration (an issuer without its JWKS URL, or the other way
// round) is refused by CreateClient and, for rows written by other tools,
// by the table's CHECK.
func TestClientIssuerBothOrNeither(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		db := openMigrated(t, e)
		r := sqlstore.NewClientRegistry(db, e.dialect)
		ctx := t.Context()
		for _, c := range []store.Client{
			{ID: "app-issuer-only", Issuer: "https://id.partner.example"},
			{ID: "app-keys-only", JWKSURL: "https://id.partner.example/keys"},
		} {
			if err := r.CreateClient(ctx, c); err == nil {
				t.Errorf("CreateClient(%+v) succeeded", c)
			}
			insert := `INSERT INTO selfservice_clients (id, issuer, jwks_url) VALUES ($1, $2, $3)`
			if e.dialect == sqlstore.SQLite {
				insert = `INSERT INTO selfservice_clients (id, issuer, jwks_url) VALUES (?, ?, ?)`
			}
			if _, err := db.ExecContext(ctx, insert, c.ID, c.Issuer, c.JWKSURL); err == nil {
				t.Errorf("INSERT of %+v passed the CHECK", c)
			}
			if _, err := r.Client(ctx, c.ID); err == nil {
				t.Errorf("Client(%q) found half a registration", c.ID)
			}
		}
	})
}

// A database at schema version 2 keeps its clients through Migrate, each
// with no issuer of its own; on PostgreSQL the version 3 file may run again.
func TestMigrateAddsClientIssuers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		db := e.open(t)
		ctx := t.Context()
		for _, name := range []string{"0001_init.sql", "0002_owner_alarm.sql"} {
			b, err := os.ReadFile(filepath.Join("schema", e.dialect.String(), name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, string(b)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO selfservice_clients (id, name) VALUES ('app-old', 'Old app')`); err != nil {
			t.Fatalf("insert at version 2: %v", err)
		}
		if err := sqlstore.Migrate(ctx, db, e.dialect); err != nil {
			t.Fatalf("Migrate from version 2: %v", err)
		}
		if e.dialect == sqlstore.Postgres {
			b, err := os.ReadFile(filepath.Join("schema", "postgres", "0003_client_issuers.sql"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, string(b)); err != nil {
				t.Errorf("0003_client_issuers.sql again: %v", err)
			}
		}
		r := sqlstore.NewClientRegistry(db, e.dialect)
		want := store.Client{ID: "app-old", Name: "Old app"}
		if got, err := r.Client(ctx, want.ID); err != nil || got != want {
			t.Errorf("Client(%q) = %+v, %v; want %+v", want.ID, got, err, want)
		}
		partner := store.Client{ID: "app-partner", Issuer: "https://id.partner.example", JWKSURL: "https://id.partner.example/keys"}
		if err := r.CreateClient(ctx, partner); err != nil {
			t.Fatalf("CreateClient(%+v): %v", partner, err)
		}
		if got, err := r.Client(ctx, partner.ID); err != nil || got != partner {
			t.Errorf("Client(%q) = %+v, %v; want %+v", partner.ID, got, err, partner)
		}
	})
}
