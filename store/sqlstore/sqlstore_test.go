package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"

	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

// The stores read error codes through these methods; a driver release that
// dropped them would turn every unique violation into an internal error.
var (
	_ interface{ SQLState() string } = (*pgconn.PgError)(nil)
	_ interface{ Code() int }        = (*sqlite.Error)(nil)
)

// engine is one database the tests run against.
type engine struct {
	name    string
	dialect sqlstore.Dialect
	// open returns a fresh, empty database that no other call shares,
	// closed and removed when t ends.
	open func(t *testing.T) *sql.DB
}

var engines = []engine{
	{name: "SQLite", dialect: sqlstore.SQLite, open: openSQLite},
	{name: "Postgres", dialect: sqlstore.Postgres, open: openPostgres},
}

// forEachEngine runs f as a parallel subtest per engine, skipping the
// engines whose service is not configured.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			if e.dialect == sqlstore.Postgres {
				testenv.Lookup(t, testenv.Postgres)
			}
			t.Parallel()
			f(t, e)
		})
	}
}

// openSQLite opens a database file in t's temporary directory, with the
// pragmas the package doc asks for.
func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	return openSQLiteFile(t, filepath.Join(t.TempDir(), "test.db"), "")
}

// openSQLiteFile opens a pool on the database file at path, with the
// pragmas the package doc asks for and the DSN parameters params
// ("&_txlock=immediate"), closed when t ends.
func openSQLiteFile(t *testing.T, path, params string) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)" + params
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatalf("open SQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	// The first connection switches the new file to WAL; connections that
	// open concurrently with that switch fail with SQLITE_BUSY.
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("open SQLite: %v", err)
	}
	return db
}

// openPostgres returns a pool on a schema of its own in the database
// SELFSERVICE_TEST_POSTGRES names, dropped when t ends.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	return pgtest.Open(t, "")
}

// openMigrated opens a fresh database of engine e with the schema applied.
func openMigrated(t *testing.T, e engine) *sql.DB {
	t.Helper()
	db := e.open(t)
	if err := sqlstore.Migrate(t.Context(), db, e.dialect); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

func TestUserStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
			s := sqlstore.NewUserStore(openMigrated(t, e), e.dialect)
			for _, u := range seed {
				if err := s.CreateUser(t.Context(), u); err != nil {
					t.Fatalf("seed CreateUser(%+v): %v", u, err)
				}
			}
			return s
		})
	})
}

func TestClientRegistry(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		storetest.TestClientRegistry(t, func(t *testing.T, seed []store.Client) store.ClientRegistry {
			r := sqlstore.NewClientRegistry(openMigrated(t, e), e.dialect)
			for _, c := range seed {
				if err := r.CreateClient(t.Context(), c); err != nil {
					t.Fatalf("seed CreateClient(%+v): %v", c, err)
				}
			}
			return r
		})
	})
}

func TestCreateUser(t *testing.T) {
	alice := store.User{ID: "u-alice", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com"}
	tests := []struct {
		name   string
		user   store.User
		want   error
		stored store.User // when added; zero: the user as given
	}{
		{"new user", store.User{ID: "u-bob", Email: "Bob@Example.com", CanonicalEmail: "bob@example.com"}, nil, store.User{}},
		{"new user without an address", store.User{ID: "u-nomail"}, nil, store.User{}},
		{"new user with a language", store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "bob@example.com", Language: "zh-Hant"}, nil, store.User{}},
		{"taken id", store.User{ID: alice.ID, Email: "other@example.com", CanonicalEmail: "other@example.com"}, store.ErrAlreadyExists, store.User{}},
		{"taken id and address", alice, store.ErrAlreadyExists, store.User{}},
		{"taken address", store.User{ID: "u-bob", Email: "ALICE@example.com", CanonicalEmail: alice.CanonicalEmail}, store.ErrEmailExists, store.User{}},

		// Seeding checks (issue 10, 5): the canonical form is computed
		// or checked, so that two users never hold one address.
		{"canonical form computed", store.User{ID: "u-bob", Email: " Bob@Bücher.example "}, nil,
			store.User{ID: "u-bob", Email: "Bob@Bücher.example", CanonicalEmail: "bob@xn--bcher-kva.example"}},
		{"taken address, canonical form not given", store.User{ID: "u-bob", Email: "ALICE@example.com"}, store.ErrEmailExists, store.User{}},
		{"canonical form of another address", store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "carol@example.com"}, emailaddr.ErrMismatch, store.User{}},
		{"canonical form not lower-cased", store.User{ID: "u-bob", Email: "Bob@example.com", CanonicalEmail: "Bob@example.com"}, emailaddr.ErrMismatch, store.User{}},
		{"canonical form without an address", store.User{ID: "u-bob", CanonicalEmail: "bob@example.com"}, emailaddr.ErrMismatch, store.User{}},
		{"invalid address", store.User{ID: "u-bob", Email: "Bob <bob@example.com>"}, emailaddr.ErrCharacter, store.User{}},
		{"look-alike of a taken address", store.User{ID: "u-bob", Email: "alice\u034f@example.com", CanonicalEmail: "alice@example.com"}, emailaddr.ErrCharacter, store.User{}},
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		db := openMigrated(t, e)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := sqlstore.NewUserStore(db, e.dialect)
				if _, err := db.ExecContext(t.Context(), "DELETE FROM selfservice_users"); err != nil {
					t.Fatal(err)
				}
				ctx := t.Context()
				if err := s.CreateUser(ctx, alice); err != nil {
					t.Fatalf("CreateUser(alice): %v", err)
				}
				err := s.CreateUser(ctx, tt.user)
				if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
					t.Fatalf("CreateUser(%+v) = %v, want %v", tt.user, err, tt.want)
				}
				if invalid := tt.want != nil && !errors.Is(tt.want, store.ErrEmailExists) && !errors.Is(tt.want, store.ErrAlreadyExists); invalid != errors.Is(err, store.ErrInvalidUser) {
					t.Errorf("CreateUser(%+v) = %v: wraps store.ErrInvalidUser %v, want %v", tt.user, err, !invalid, invalid)
				}
				if tt.want != nil {
					if errors.Is(err, store.ErrNotFound) {
						t.Errorf("CreateUser(%+v) = %v, which wraps ErrNotFound", tt.user, err)
					}
					if got, err := s.User(ctx, alice.ID); err != nil || got != alice {
						t.Errorf("User(%q) = %+v, %v; want %+v", alice.ID, got, err, alice)
					}
					if tt.user.ID != alice.ID {
						if _, err := s.User(ctx, tt.user.ID); !errors.Is(err, store.ErrNotFound) {
							t.Errorf("refused user %q was added: %v", tt.user.ID, err)
						}
					}
					return
				}
				want := tt.user
				if tt.stored != (store.User{}) {
					want = tt.stored
				}
				if got, err := s.User(ctx, want.ID); err != nil || got != want {
					t.Errorf("User(%q) = %+v, %v; want %+v", want.ID, got, err, want)
				}
			})
		}
	})
}

func TestCreateClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		r := sqlstore.NewClientRegistry(openMigrated(t, e), e.dialect)
		ctx := t.Context()
		web := store.Client{ID: "app-web", Name: "Web shop"}
		if err := r.CreateClient(ctx, web); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		err := r.CreateClient(ctx, store.Client{ID: web.ID, Name: "Impostor"})
		if !errors.Is(err, store.ErrAlreadyExists) {
			t.Errorf("CreateClient(taken id) = %v, want %v", err, store.ErrAlreadyExists)
		}
		if got, err := r.Client(ctx, web.ID); err != nil || got != web {
			t.Errorf("Client(%q) = %+v, %v; want %+v", web.ID, got, err, web)
		}
	})
}

// A failure that is not a constraint's (here a cancelled context) must
// surface as itself, never as one of the sentinels the handlers answer
// with a client error.
func TestUpdateEmailFailureIsNotASentinel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := sqlstore.NewUserStore(openMigrated(t, e), e.dialect)
		if err := s.CreateUser(t.Context(), store.User{ID: "u-1"}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.UpdateEmail(ctx, "u-1", "a@example.com", "a@example.com")
		if err == nil || errors.Is(err, store.ErrEmailExists) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateEmail(cancelled) = %v, want an error that is neither sentinel", err)
		}
	})
}

func TestMigrate(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		db := e.open(t)
		// Processes starting together all migrate; none may fail.
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = sqlstore.Migrate(t.Context(), db, e.dialect) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent Migrate #%d: %v", i, err)
			}
		}
		if err := sqlstore.Migrate(t.Context(), db, e.dialect); err != nil {
			t.Errorf("Migrate again: %v", err)
		}

		var version, rows int
		err := db.QueryRowContext(t.Context(),
			`SELECT MAX(version), COUNT(*) FROM selfservice_schema_version`).Scan(&version, &rows)
		if err != nil {
			t.Fatalf("read schema version: %v", err)
		}
		files := schemaFiles(t, e.dialect)
		if want := latestVersion(t, files); version != want || rows != len(files) {
			t.Errorf("schema version %d in %d rows, want %d in %d (does each file record its version?)",
				version, rows, want, len(files))
		}
	})
}

func TestMigrateRejectsBadInput(t *testing.T) {
	if err := sqlstore.Migrate(t.Context(), nil, sqlstore.SQLite); err == nil {
		t.Error("Migrate(nil db) succeeded")
	}
	if err := sqlstore.Migrate(t.Context(), openSQLite(t), sqlstore.Dialect(0)); err == nil {
		t.Error("Migrate(zero Dialect) succeeded")
	}
}

func TestConstructorsPanic(t *testing.T) {
	db := openSQLite(t)
	tests := []struct {
		name string
		f    func()
	}{
		{"NewUserStore(nil db)", func() { sqlstore.NewUserStore(nil, sqlstore.SQLite) }},
		{"NewUserStore(zero Dialect)", func() { sqlstore.NewUserStore(db, 0) }},
		{"NewClientRegistry(nil db)", func() { sqlstore.NewClientRegistry(nil, sqlstore.Postgres) }},
		{"NewClientRegistry(zero Dialect)", func() { sqlstore.NewClientRegistry(db, 0) }},
		{"NewChanges(nil db)", func() { sqlstore.NewChanges(nil, sqlstore.Postgres) }},
		{"NewChanges(zero Dialect)", func() { sqlstore.NewChanges(db, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.f()
		})
	}
}

// schemaFiles returns the names of the dialect's schema files.
func schemaFiles(t *testing.T, d sqlstore.Dialect) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("schema", d.String(), "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files for %v: %v", d, err)
	}
	return files
}

// latestVersion returns the highest NNNN among files named NNNN_name.sql.
func latestVersion(t *testing.T, files []string) int {
	t.Helper()
	latest := 0
	for _, f := range files {
		prefix, _, _ := strings.Cut(filepath.Base(f), "_")
		v, err := strconv.Atoi(prefix)
		if err != nil {
			t.Fatalf("schema file %s: %v", f, err)
		}
		latest = max(latest, v)
	}
	return latest
}

func ExampleDialect() {
	fmt.Println(sqlstore.Postgres, sqlstore.SQLite)
	// Output: postgres sqlite
}
