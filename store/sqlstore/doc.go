// Package sqlstore implements store.ChangeStore (a store.UserStore whose
// changes of address record the owner's alarm, and the store.Outbox of its
// notices) and store.ClientRegistry over database/sql, for PostgreSQL and
// SQLite. Changes records the alarm inside the transaction of an
// application that keeps its users in a table of its own.
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
//	users := sqlstore.NewUserStore(db, sqlstore.Postgres) // also the Outbox
//	clients := sqlstore.NewClientRegistry(db, sqlstore.Postgres)
//
// # Schema
//
// These tables, created in the first schema of the search_path on
// PostgreSQL:
//
//   - selfservice_users (id, email, canonical_email, language): email is
//     the address as typed, empty when the user has none; canonical_email
//     is the form the application computed, NULL when the user has none,
//     under a UNIQUE constraint compared byte for byte. That constraint
//     decides which of two concurrent changes to one address wins, across
//     processes too; the other gets store.ErrEmailExists. language is the
//     user's BCP 47 tag, set by the application (empty for none), in which
//     the notice of a change is written.
//   - selfservice_notices: the notices to previous addresses, kept until
//     the courier delivers or gives them up; due is when one may next be
//     leased.
//   - selfservice_undo_records: the keyed hash of each change's undo token
//     (UNIQUE, never the token), its user, the address it restores, its
//     expiry, and its state (live, used, void); seq orders a user's
//     records, so that an undo voids those made after it.
//   - selfservice_change_locks (user_id, locked_until): the cool-off an
//     undo sets on a user's changes.
//   - selfservice_clients (id, name, issuer, jwks_url): the registered
//     applications; issuer and jwks_url name the OpenID provider of a
//     client that signs in through one of its own (both or neither, a
//     CHECK), empty for the Service's one Verifier.
//   - selfservice_schema_version (version, applied_at): the schema files
//     applied.
//
// The alarm tables name users by id only, without a foreign key, so that
// they serve an application's own users table as well. Their times are
// bigint Unix milliseconds from the now every method receives; the
// database's clock is never read, so that one query text serves both
// engines and every replica judges expiry as the Service does.
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
//     records its version, so Migrate agrees afterwards. The PostgreSQL
//     files are idempotent; on SQLite, 0002_owner_alarm.sql and
//     0003_client_issuers.sql add columns, which SQLite cannot do
//     idempotently, so run each exactly once.
//
// # The owner's alarm
//
// UserStore.ChangeEmail changes an address, records the notice to the
// previous address and records the undo of the change in one transaction,
// so that no change commits without its alarm; UserStore.RevertEmail spends
// an undo token in one transaction. The courier of every replica leases
// notices from the same table (UserStore.LeaseNotices): on PostgreSQL with
// FOR UPDATE SKIP LOCKED, so that replicas pass over each other's notices
// instead of waiting; a notice whose holder crashed is due again when its
// lease ends. Delivery is at least once.
//
// An application that keeps its users in its own table implements
// store.ChangeStore around its own SELECT and UPDATE with Changes, whose
// RecordTx and RevertTx write the alarm inside the application's
// transaction, and whose Outbox methods serve the courier. Each
// transaction follows one order, so that a change and an undo of one user
// run one after the other, on the user's row:
//
//   - a change: SELECT the user's row FOR UPDATE; RecordTx; UPDATE the row
//     (a unique violation is store.ErrEmailExists, see
//     Dialect.IsUniqueViolation); commit;
//   - an undo: RevertTx, passing a func that does the SELECT ... FOR UPDATE
//     of the user it names; UPDATE the row to the restored address;
//     commit.
//
// On any error, roll back: the failed change leaves nothing, and the undo
// record stays live. On SQLite, open the database with _txlock=immediate,
// which makes database/sql's transactions take the write lock at BEGIN:
//
//	db, err := sql.Open("sqlite", "file:app.db?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
//
// A deferred transaction (the default) that reads the row and then writes
// fails with SQLITE_BUSY, without waiting, whenever another writer
// committed in between. UserStore needs no such DSN: it begins its own
// transactions IMMEDIATE.
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
// A change of email reads the user (User) and then runs ChangeEmail, one
// transaction of six statements (lock the row, check the cool-off, forget
// dead undo records, insert the notice and the undo record, update the
// row); a send makes none; the Service caches Client lookups (see the root
// package's Config.ClientCache). Every courier's lease is one statement on
// PostgreSQL.
//
// # SQLite
//
// Open SQLite with a busy timeout and the WAL journal, so that concurrent
// writers wait for one another instead of failing with SQLITE_BUSY:
//
//	db, err := sql.Open("sqlite", "file:app.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
//
// WAL is a property of the file, set by the first connection to a new one.
// The switch writes the file's header from within a read transaction, and
// SQLite answers SQLITE_BUSY at once, without calling the busy handler, when
// another connection is switching or writing at the same moment:
// connections opened while that switch happens fail. In one process, ping a
// new database (or call Migrate) before using it concurrently; when several
// processes may open a new file at once (replicas starting together), open
// it without journal_mode in the DSN and run PRAGMA journal_mode=WAL once,
// retrying on SQLITE_BUSY: once the file is in WAL mode the switch writes
// nothing and succeeds (see the example's switchToWAL).
//
// UpdateEmail, CreateUser and the notices' RetryNotice and DeleteNotice are
// single statements; ChangeEmail, RevertEmail and LeaseNotices are
// transactions that UserStore and Changes begin IMMEDIATE, on a connection
// of their own, whatever the DSN says. SQLite runs all of them under the
// busy timeout, one writer at a time. Should a write still time out, the
// error is reported as it is (an internal failure), never as
// store.ErrEmailExists. An application that prefers to queue writers in Go
// may also call db.SetMaxOpenConns(1), at the cost of serialising reads
// too; the stores do not need it. The transactions an application runs
// itself around RecordTx and RevertTx need _txlock=immediate (see above).
package sqlstore
