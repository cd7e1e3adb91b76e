package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	_ "modernc.org/sqlite"             // the "sqlite" driver

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// openExampleSQLite opens a new SQLite file in a temporary directory, the
// way an application opens its own, and returns a func that removes it.
func openExampleSQLite() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	dsn := "file:" + filepath.Join(dir, "app.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleNewUserStore() {
	db, done := openExampleSQLite()
	defer done()
	ctx := context.Background()
	if err := sqlstore.Migrate(ctx, db, sqlstore.SQLite); err != nil {
		log.Fatal(err)
	}

	users := sqlstore.NewUserStore(db, sqlstore.SQLite)
	for _, u := range []store.User{
		{ID: "u-1", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com"},
		{ID: "u-2", Email: "bob@example.com", CanonicalEmail: "bob@example.com"},
	} {
		if err := users.CreateUser(ctx, u); err != nil {
			log.Fatal(err)
		}
	}

	err := users.UpdateEmail(ctx, "u-2", "ALICE@example.com", "alice@example.com")
	fmt.Println("taken:", errors.Is(err, store.ErrEmailExists))

	err = users.UpdateEmail(ctx, "u-1", "Alice@Example.org", "alice@example.org")
	fmt.Println("changed:", err == nil)
	u, err := users.User(ctx, "u-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Email, u.CanonicalEmail)
	// Output:
	// taken: true
	// changed: true
	// Alice@Example.org alice@example.org
}

func ExampleNewUserStore_postgres() {
	db, err := sql.Open("pgx", "postgres://app@db.internal:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := sqlstore.Migrate(context.Background(), db, sqlstore.Postgres); err != nil {
		log.Fatal(err)
	}
	users := sqlstore.NewUserStore(db, sqlstore.Postgres)
	u, err := users.User(context.Background(), "u-1")
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Println("no such user")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(u.Email)
	}
}

func ExampleNewClientRegistry() {
	db, done := openExampleSQLite()
	defer done()
	ctx := context.Background()
	if err := sqlstore.Migrate(ctx, db, sqlstore.SQLite); err != nil {
		log.Fatal(err)
	}

	clients := sqlstore.NewClientRegistry(db, sqlstore.SQLite)
	if err := clients.CreateClient(ctx, store.Client{ID: "app-web", Name: "Web shop"}); err != nil {
		log.Fatal(err)
	}
	c, err := clients.Client(ctx, "app-web")
	fmt.Println(c.Name, err)
	_, err = clients.Client(ctx, "app-unknown")
	fmt.Println(errors.Is(err, store.ErrNotFound))
	// Output:
	// Web shop <nil>
	// true
}

func ExampleMigrate() {
	db, err := sql.Open("pgx", "postgres://app@db.internal:5432/app?search_path=selfservice")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// Safe at every start, in every process: it applies only what is
	// missing, under an advisory lock.
	if err := sqlstore.Migrate(context.Background(), db, sqlstore.Postgres); err != nil {
		log.Fatal(err)
	}
}
