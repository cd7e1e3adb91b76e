package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// schemaFS holds schema/<dialect>/NNNN_name.sql. Each file is idempotent and
// records its own version, so running it by hand and running Migrate agree.
//
//go:embed schema
var schemaFS embed.FS

// pgLockKey is the PostgreSQL advisory lock Migrate holds while it applies
// the schema ("selfserv" in ASCII). It is taken per database, so migrations
// of different schemas in one database wait for one another, briefly.
const pgLockKey int64 = 0x73656c6673657276

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the dialect's schema files in version order.
func migrations(d Dialect) ([]migration, error) {
	dir := path.Join("schema", d.String())
	entries, err := fs.ReadDir(schemaFS, dir) // sorted by name, so by version
	if err != nil {
		return nil, err
	}
	ms := make([]migration, 0, len(entries))
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("schema file %s: name is not NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(schemaFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms, nil
}

// Migrate brings the schema in db up to date for dialect d: it applies, in
// one transaction, every embedded schema file newer than the version
// recorded in selfservice_schema_version. Running it again changes nothing,
// so an application may call it at every start.
//
// On PostgreSQL the tables go to the first schema of the connection's
// search_path, and a transaction-scoped advisory lock makes processes that
// migrate at once wait for one another. On SQLite the transaction is BEGIN
// IMMEDIATE, which does the same given a busy_timeout.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	if db == nil {
		return errors.New("sqlstore: Migrate: nil *sql.DB")
	}
	if !d.valid() {
		return fmt.Errorf("sqlstore: Migrate: unknown %v", d)
	}
	ms, err := migrations(d)
	if err != nil {
		return fmt.Errorf("sqlstore: Migrate: %w", err)
	}
	if d == Postgres {
		err = migratePostgres(ctx, db, ms)
	} else {
		err = migrateSQLite(ctx, db, ms)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: Migrate %v: %w", d, err)
	}
	return nil
}

func migratePostgres(ctx context.Context, db *sql.DB, ms []migration) error {
	return Postgres.inTx(ctx, db, func(q execQuerier) error {
		if _, err := q.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, pgLockKey); err != nil {
			return err
		}
		exists := `SELECT to_regclass('selfservice_schema_version') IS NOT NULL`
		return apply(ctx, q, exists, ms)
	})
}

// migrateSQLite applies ms in a BEGIN IMMEDIATE transaction (see inTx): two
// deferred ones that both read the schema and then write would fail with
// SQLITE_BUSY at once, without waiting.
func migrateSQLite(ctx context.Context, db *sql.DB, ms []migration) error {
	return SQLite.inTx(ctx, db, func(q execQuerier) error {
		exists := `SELECT EXISTS (SELECT 1 FROM sqlite_master
			WHERE type = 'table' AND name = 'selfservice_schema_version')`
		return apply(ctx, q, exists, ms)
	})
}

// apply runs the files of ms newer than the recorded version; exists is the
// dialect's query for whether the version table is there yet.
func apply(ctx context.Context, q execQuerier, exists string, ms []migration) error {
	var ok bool
	if err := q.QueryRowContext(ctx, exists).Scan(&ok); err != nil {
		return err
	}
	current := 0
	if ok {
		err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM selfservice_schema_version`).Scan(&current)
		if err != nil {
			return err
		}
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if _, err := q.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}
