package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	_ "modernc.org/sqlite"             // the "sqlite" driver

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// openExampleSQLite opens a new SQLite file in a temporary directory, the
// way an application opens its own, with the DSN parameters params added
// ("&_txlock=immediate"), and returns a func that removes it.
func openExampleSQLite(params string) (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	dsn := "file:" + filepath.Join(dir, "app.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)" + params
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleNewUserStore() {
	db, done := openExampleSQLite("")
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

func ExampleUserStore_ChangeEmail() {
	db, done := openExampleSQLite("")
	defer done()
	ctx := context.Background()
	if err := sqlstore.Migrate(ctx, db, sqlstore.SQLite); err != nil {
		log.Fatal(err)
	}
	users := sqlstore.NewUserStore(db, sqlstore.SQLite)
	err := users.CreateUser(ctx, store.User{ID: "u-1", Email: "Alice@Example.com", Language: "zh"})
	if err != nil {
		log.Fatal(err)
	}

	// The Service makes the change: the new address, the notice to the
	// old one, and the keyed hash of the undo token it mails there.
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	err = users.ChangeEmail(ctx, store.EmailChange{
		UserID: "u-1", Email: "alice@example.org", Canonical: "alice@example.org",
		Notice:     store.Notice{NewEmail: "a***@example.org", ChangedAt: now},
		RevertHash: []byte("keyed hash of the undo token"), RevertExpiresAt: now.Add(72 * time.Hour),
		Now: now,
	})
	if err != nil {
		log.Fatal(err)
	}

	// Its courier, in any replica, leases the notice.
	notices, err := users.LeaseNotices(ctx, 10, now, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range notices {
		fmt.Println(n.To, n.Language, n.NewEmail, n.Attempts)
	}

	// The owner follows the link in it.
	rev, err := users.RevertEmail(ctx, store.EmailRevert{
		TokenHash: []byte("keyed hash of the undo token"), Now: now.Add(time.Hour), LockUntil: now.Add(25 * time.Hour),
	})
	fmt.Println(rev.Email, "replaces", rev.From, err)
	err = users.ChangeEmail(ctx, store.EmailChange{UserID: "u-1", Email: "x@example.net", Canonical: "x@example.net", Now: now.Add(2 * time.Hour)})
	fmt.Println(errors.Is(err, store.ErrChangeLocked))
	// Output:
	// Alice@Example.com zh a***@example.org 1
	// Alice@Example.com replaces alice@example.org <nil>
	// true
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
	db, done := openExampleSQLite("")
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
