package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
)

// Dialect names the SQL engine behind a *sql.DB: the placeholders its
// queries use, how its errors are read and how Migrate serialises.
type Dialect int

const (
	// Postgres is PostgreSQL through a driver whose errors have a
	// SQLState() string method, such as github.com/jackc/pgx/v5/stdlib
	// (driver name "pgx").
	Postgres Dialect = iota + 1
	// SQLite is SQLite through modernc.org/sqlite (driver name "sqlite"),
	// or another driver whose errors have a Code() int method returning the
	// extended result code.
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

func (d Dialect) valid() bool { return d == Postgres || d == SQLite }

// Error codes of a unique-constraint violation. They are read through
// interfaces rather than the drivers' error types so that this package
// compiles neither driver: the application imports the one it opens.
const (
	pgUniqueViolation      = "23505"
	sqliteConstraintUnique = 2067 // SQLITE_CONSTRAINT_UNIQUE
)

// IsUniqueViolation reports whether err is the engine refusing a write that
// breaks a unique constraint, read from the error's code (SQLSTATE 23505,
// SQLITE_CONSTRAINT_UNIQUE), never from its text. Anything else, a busy or
// locked database included, is not. An application that implements
// store.ChangeStore around its own users table with Changes uses it to turn
// its UPDATE's refusal into store.ErrEmailExists.
func (d Dialect) IsUniqueViolation(err error) bool {
	switch d {
	case Postgres:
		var e interface{ SQLState() string }
		return errors.As(err, &e) && e.SQLState() == pgUniqueViolation
	case SQLite:
		var e interface{ Code() int }
		return errors.As(err, &e) && e.Code() == sqliteConstraintUnique
	}
	return false
}

// query turns q, written with PostgreSQL's $n placeholders, into the
// dialect's: SQLite reads ?n as the same numbered parameter.
func (d Dialect) query(q string) string {
	if d == SQLite {
		return strings.ReplaceAll(q, "$", "?")
	}
	return q
}

// mustOpen panics unless db and d can back a store; fn names the
// constructor for the message.
func mustOpen(fn string, db *sql.DB, d Dialect) {
	if db == nil {
		panic("sqlstore: " + fn + ": nil *sql.DB")
	}
	if !d.valid() {
		panic(fmt.Sprintf("sqlstore: %s: unknown %v", fn, d))
	}
}

// execQuerier is what the stores need of a *sql.DB, *sql.Tx or *sql.Conn.
type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs f in one transaction on db and commits it when f returns nil;
// otherwise, or if f panics, it rolls it back.
//
// On PostgreSQL it is a READ COMMITTED transaction, whatever the server's
// default_transaction_isolation: f serialises with its rivals by the rows
// it locks, and under REPEATABLE READ or SERIALIZABLE a rival that waited
// for those locks would fail with a serialization error (SQLSTATE 40001,
// answered as an internal failure) instead of seeing the winner's commit
// (two undos of one token: REVERT.9302 for the second; two users taking
// one address: USER.0036 for the loser).
// On SQLite it is BEGIN IMMEDIATE on a connection of its own. database/sql
// begins SQLite transactions DEFERRED (unless the DSN says _txlock), and a
// deferred transaction that reads and then writes fails with SQLITE_BUSY at
// once, without waiting, when another writer committed in between;
// IMMEDIATE takes the write lock first and waits for it under the busy
// timeout, so f runs alone among writers.
func (d Dialect) inTx(ctx context.Context, db *sql.DB, f func(q execQuerier) error) error {
	if d == SQLite {
		return inImmediateTx(ctx, db, f)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// inImmediateTx is inTx for SQLite. It drives the transaction with SQL
// statements on a *sql.Conn because database/sql has no way to ask for
// IMMEDIATE; a DSN with _txlock=immediate does not need it, and is not
// hurt by it.
func inImmediateTx(ctx context.Context, db *sql.DB, f func(q execQuerier) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		// Rolled back even when ctx is done: the transaction is open.
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); err != nil {
			// A connection still inside the transaction must not go back
			// to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if err := f(conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return err
	}
	committed = true
	return nil
}
