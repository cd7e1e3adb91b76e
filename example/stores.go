package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// stores is what the example runs on, chosen by -store and -codes.
type stores struct {
	users interface {
		store.ChangeStore
		userCreator
	}
	clients interface {
		store.ClientRegistry
		clientCreator
	}
	codes   store.CodeStore
	limiter store.Limiter
	closers []io.Closer
}

func (s *stores) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openStores opens the stores that -store (memory, sqlite:PATH or a
// postgres:// URL) and -codes (memory or a redis:// URL) name. SQL schemas
// are migrated at once.
func openStores(ctx context.Context, userFlag, codeFlag string, dbConns int) (*stores, error) {
	s := &stores{}
	if err := s.openUsers(ctx, userFlag, dbConns); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.openCodes(ctx, codeFlag); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openUsers opens the user store and client registry; a SQL pool keeps up
// to dbConns connections, open and idle alike, so that steady load reuses
// them instead of opening one per request (see sqlstore's package doc).
func (s *stores) openUsers(ctx context.Context, flag string, dbConns int) error {
	var (
		driver, dsn string
		dialect     sqlstore.Dialect
	)
	scheme := schemeOf(flag)
	switch {
	case flag == "" || flag == "memory":
		s.users, s.clients = memstore.NewUserStore(), memstore.NewClientRegistry()
		return nil
	case scheme == "sqlite":
		path := flag[len("sqlite:"):]
		if path == "" {
			return errors.New("-store sqlite:PATH needs a path")
		}
		if !slices.Contains(sql.Drivers(), "sqlite") {
			// Kept out of the default build: it doubles the first build.
			return errors.New("-store sqlite:PATH needs the SQLite driver: build with -tags sqlite (go run -tags sqlite ./example)")
		}
		if err := createPrivate(path); err != nil {
			return fmt.Errorf("-store: %w", err)
		}
		driver, dialect = "sqlite", sqlstore.SQLite
		// No journal_mode(WAL) here: see switchToWAL.
		dsn = fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)", path, sqliteBusyTimeout.Milliseconds())
	case (scheme == "postgres" || scheme == "postgresql") && isURL(flag):
		if _, err := url.Parse(flag); err != nil {
			return errors.New("-store: the postgres:// URL does not parse") // url's error quotes it
		}
		// pgx reads a connection string as a URL only when its scheme is lower-case.
		driver, dsn, dialect = "pgx", scheme+flag[len(scheme):], sqlstore.Postgres
	default:
		return fmt.Errorf("-store: want memory, sqlite:PATH or a postgres:// URL%s", notQuoted(flag))
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return fmt.Errorf("-store: %w", err)
	}
	s.closers = append(s.closers, db)
	db.SetMaxOpenConns(dbConns)
	db.SetMaxIdleConns(dbConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if dialect == sqlstore.SQLite {
		if err := switchToWAL(ctx, db); err != nil {
			return fmt.Errorf("-store: %w", err)
		}
	}
	if err := sqlstore.Migrate(ctx, db, dialect); err != nil {
		return fmt.Errorf("-store: %w", err)
	}
	s.users, s.clients = sqlstore.NewUserStore(db, dialect), sqlstore.NewClientRegistry(db, dialect)
	return nil
}

// sqliteBusyTimeout is how long a statement waits for another process's
// lock on the SQLite file, and how long switchToWAL keeps trying.
const sqliteBusyTimeout = 5 * time.Second

// sqliteBusy is SQLITE_BUSY, the primary result code (the low byte of an
// extended one), spelled out so that this file need not import the driver.
const sqliteBusy = 5

// switchToWAL puts the SQLite file in WAL mode, which the file keeps: every
// connection opened afterwards, in any process, uses it. On a new file the
// switch writes the file's header from within a read transaction, and
// SQLite answers SQLITE_BUSY at once, ignoring busy_timeout (waiting there
// could deadlock two such upgrades), when another process is writing.
// Replicas that start together on a new file all switch at once: with
// journal_mode in the DSN, run by every new connection, about one process
// in 25 of 20 started together failed. A switch that finds the file in WAL
// mode writes nothing and cannot meet that, so retrying ends as soon as
// one replica has switched.
func switchToWAL(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, sqliteBusyTimeout)
	defer cancel()
	for {
		_, err := db.ExecContext(ctx, "PRAGMA journal_mode=WAL")
		var e interface{ Code() int } // the driver's *sqlite.Error
		if err == nil || !errors.As(err, &e) || e.Code()&0xff != sqliteBusy {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switching to WAL: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// createPrivate creates the SQLite file readable by its owner only, before
// SQLite would create it with the umask's usual 0644: it holds addresses.
// SQLite gives its -wal and -shm files the database file's permissions. An
// existing file is left as its owner set it.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// openRedis opens -codes redis://...: package redisopen's Open when the
// example is built with -tags redis (redis.go), nil otherwise.
var openRedis func(ctx context.Context, url string) (store.CodeStore, store.Limiter, io.Closer, error)

func (s *stores) openCodes(ctx context.Context, flag string) error {
	switch scheme := schemeOf(flag); {
	case flag == "" || flag == "memory":
		s.codes, s.limiter = memstore.NewCodeStore(), memstore.NewLimiter()
		return nil
	case (scheme == "redis" || scheme == "rediss") && isURL(flag):
		if _, err := url.Parse(flag); err != nil {
			return errors.New("-codes: the redis:// URL does not parse") // url's error quotes it
		}
		flag = scheme + flag[len(scheme):]
	default:
		return fmt.Errorf("-codes: want memory or a redis:// URL%s", notQuoted(flag))
	}
	if openRedis == nil {
		return errors.New("-codes redis://... needs the Redis client: build with -tags redis (go run -tags redis ./example)")
	}
	codes, limiter, closer, err := openRedis(ctx, flag)
	if err != nil {
		return fmt.Errorf("-codes: %w", err)
	}
	s.closers = append(s.closers, closer)
	s.codes, s.limiter = codes, limiter
	return nil
}

// schemeOf returns the scheme v starts with, such as postgres in
// postgres://... or sqlite in sqlite:PATH, lower-cased since schemes are
// case-insensitive (RFC 3986, 3.1; url.Parse lower-cases them too), or ""
// when v has none.
func schemeOf(v string) string {
	i := strings.IndexByte(v, ':')
	if i < 1 {
		return ""
	}
	for j, c := range v[:i] {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return ""
		}
	}
	return strings.ToLower(v[:i])
}

// isURL reports whether v is scheme://..., with an authority.
func isURL(v string) bool {
	s := schemeOf(v)
	return s != "" && strings.HasPrefix(v[len(s)+1:], "//")
}

// notQuoted describes a store flag's value that the example does not open
// without repeating it, since it may hold a password
// (postgres://app:PASSWORD@..., ?password=, host=db password=...): by its
// scheme at most.
func notQuoted(v string) string {
	const why = " (the value is not repeated here: it may hold a password)"
	if isURL(v) {
		return ", not a " + schemeOf(v) + ":// one" + why
	}
	return why
}
