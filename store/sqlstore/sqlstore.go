package sqlstore

import (
	"database/sql"
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

// isUniqueViolation reports whether err is the engine refusing a write that
// breaks a unique constraint. Anything else, a busy or locked database
// included, is not, and surfaces as an internal error.
func (d Dialect) isUniqueViolation(err error) bool {
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
