// Package sqlstore implements store.UserStore and store.ClientRegistry over
// database/sql, for PostgreSQL and SQLite.
//
// The stores take a *sql.DB the application opened and never read the
// environment. This package imports no driver: the application imports the
// one it opens, github.com/jackc/pgx/v5/stdlib (driver name "pgx") for
// PostgreSQL or modernc.org/sqlite (driver name "sqlite") for SQLite, and
// names the engine with a Dialect. Errors are recognised by their codes
// (SQLSTATE 23505, SQLITE_CONSTRAINT_UNIQUE), never by their text.
//
// # Quick start
//
//	import _ "github.com/jackc/pgx/v5/stdlib"
//
//	db, err := sql.Open("pgx", "postgres://app@db.internal/app")
//	if err != nil { ... }
//	if err := sqlstore.Migrate(ctx, db, sqlstore.Postgres); err != nil { ... }
//	users := sqlstore.NewUserStore(db, sqlstore.Postgres)
//	clients := sqlstore.NewClientRegistry(db, sqlstore.Postgres)
//
// # Schema
//
// Three tables, created in the first schema of the search_path on
// PostgreSQL:
//
//   - selfservice_users (id, email, canonical_email): email is the address
//     as typed, empty when the user has none; canonical_email is the form
//     the application computed, NULL when the user has none, under a UNIQUE
//     constraint compared byte for byte. That constraint decides which of
//     two concurrent UpdateEmail calls wins, across processes too; the other
//     gets store.ErrEmailExists.
//   - selfservice_clients (id, name): the registered applications.
//   - selfservice_schema_version (version, applied_at): the schema files
//     applied.
//
// The schema ships as versioned SQL files embedded in the package,
// schema/postgres/NNNN_name.sql and schema/sqlite/NNNN_name.sql. Apply it in
// either of two ways:
//
//   - Call Migrate at start-up. It applies the files not yet recorded, in one
//     transaction, and is safe when several processes start at once (an
//     advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
//   - Or run the plain files in order with your own tooling, e.g.
//     psql --single-transaction -f schema/postgres/0001_init.sql. Each file
//     is idempotent and records its version, so Migrate agrees afterwards.
//
// # Connection pool
//
// Size the *sql.DB for the load you expect; database/sql's defaults keep
// only two idle connections, so at 16 concurrent requests most of them
// open a new connection, which on PostgreSQL is a new backend process, a
// login and fresh statement preparation: measured on loopback, 2,514 new
// sessions in 20 s at 16 concurrent clients, 971 requests a second, p99
// 220 ms; with 16 idle connections the same load ran at 3,056 requests a
// second, p99 20 ms. Keep as many idle connections as you allow open ones,
// and let idle ones go after a few minutes:
//
//	db.SetMaxOpenConns(16)          // at most the server's share of max_connections
//	db.SetMaxIdleConns(16)          // = MaxOpenConns: no churn under steady load
//	db.SetConnMaxIdleTime(5 * time.Minute)
//
// A change of email makes two statements here (User, then UpdateEmail, a
// single statement) and a send none; the Service caches Client lookups
// (see the root package's Config.ClientCache).
//
// # SQLite
//
// Open SQLite with a busy timeout and the WAL journal, so that concurrent
// writers wait for one another instead of failing with SQLITE_BUSY:
//
//	db, err := sql.Open("sqlite", "file:app.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
//
// WAL is a property of the file, set by the first connection to a new one;
// connections opened while that switch happens fail with SQLITE_BUSY, so
// ping a new database (or call Migrate) before using it concurrently.
//
// Every write is a single statement, which SQLite runs under the busy
// timeout. Should a write still time out, the error is reported as it is
// (an internal failure), never as store.ErrEmailExists. An application that
// prefers to queue writers in Go may also call db.SetMaxOpenConns(1), at the
// cost of serialising reads too; the stores do not need it.
package sqlstore
