package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"path/filepath"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

// accountsTable is the users table of an application that keeps its own:
// its names, not selfservice_users'. The query texts below serve
// PostgreSQL and SQLite alike (modernc.org/sqlite reads $n).
const accountsTable = `CREATE TABLE accounts (
	id             text PRIMARY KEY,
	mail           text NOT NULL DEFAULT '',
	mail_canonical text UNIQUE,
	lang           text NOT NULL DEFAULT ''
)`

// accountStore is the store.ChangeStore such an application hands the
// Service: its own SELECT and UPDATE around sqlstore.Changes, which records
// each change's notice and undo record in the application's transaction
// and is the Outbox of the notices. On SQLite the *sql.DB is opened with
// _txlock=immediate.
type accountStore struct {
	*sqlstore.Changes // LeaseNotices, RetryNotice, DeleteNotice, NoticeBacklog
	db                *sql.DB
	dialect           sqlstore.Dialect
}

func (a *accountStore) User(ctx context.Context, id string) (store.User, error) {
	return scanAccount(a.db.QueryRowContext(ctx, `SELECT mail, mail_canonical, lang FROM accounts WHERE id = $1`, id), id)
}

// lockAccount reads account id in tx and holds it until tx ends: FOR
// UPDATE on PostgreSQL; on SQLite the write lock taken at BEGIN.
func (a *accountStore) lockAccount(ctx context.Context, tx *sql.Tx, id string) (store.User, error) {
	q := `SELECT mail, mail_canonical, lang FROM accounts WHERE id = $1`
	if a.dialect == sqlstore.Postgres {
		q += ` FOR UPDATE`
	}
	return scanAccount(tx.QueryRowContext(ctx, q, id), id)
}

func scanAccount(row *sql.Row, id string) (store.User, error) {
	u, canonical := store.User{ID: id}, sql.NullString{}
	err := row.Scan(&u.Email, &canonical, &u.Language)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	u.CanonicalEmail = canonical.String
	return u, err
}

func (a *accountStore) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	return a.setMail(ctx, a.db, id, email, canonical)
}

// ChangeEmail locks the row, records the alarm, then updates the row: the
// order sqlstore.Changes asks for, so that a change and an undo of one
// user run one after the other.
func (a *accountStore) ChangeEmail(ctx context.Context, c store.EmailChange) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	prev, err := a.lockAccount(ctx, tx, c.UserID)
	if err != nil {
		return err
	}
	if err := a.RecordTx(ctx, tx, prev, c); err != nil {
		return err
	}
	if err := a.setMail(ctx, tx, c.UserID, c.Email, c.Canonical); err != nil {
		return err
	}
	return tx.Commit()
}

// RevertEmail spends the undo record, RevertTx locking the row through
// lockAccount, then restores the row.
func (a *accountStore) RevertEmail(ctx context.Context, r store.EmailRevert) (store.Reverted, error) {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Reverted{}, err
	}
	defer tx.Rollback()
	rev, err := a.RevertTx(ctx, tx, r, func(id string) (store.User, error) { return a.lockAccount(ctx, tx, id) })
	if err != nil {
		return store.Reverted{}, err
	}
	if err := a.setMail(ctx, tx, rev.UserID, rev.Email, rev.Canonical); err != nil {
		return store.Reverted{}, err // rolled back: the record stays live
	}
	if err := tx.Commit(); err != nil {
		return store.Reverted{}, err
	}
	return rev, nil
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (a *accountStore) setMail(ctx context.Context, q execer, id, email, canonical string) error {
	res, err := q.ExecContext(ctx, `UPDATE accounts SET mail = $2, mail_canonical = NULLIF($3, '') WHERE id = $1`, id, email, canonical)
	if a.dialect.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", store.ErrEmailExists, err)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// openAccounts returns an accountStore on a fresh database of engine e,
// holding seed, with the selfservice schema migrated beside accounts.
func openAccounts(t *testing.T, e engine, seed []store.User) *accountStore {
	t.Helper()
	var db *sql.DB
	if e.dialect == sqlstore.SQLite {
		db = openSQLiteFile(t, filepath.Join(t.TempDir(), "app.db"), "&_txlock=immediate")
	} else {
		db = e.open(t)
	}
	ctx := t.Context()
	if err := sqlstore.Migrate(ctx, db, e.dialect); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := db.ExecContext(ctx, accountsTable); err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for _, u := range seed {
		_, err := db.ExecContext(ctx, `INSERT INTO accounts (id, mail, mail_canonical, lang)
			VALUES ($1, $2, NULLIF($3, ''), $4)`, u.ID, u.Email, u.CanonicalEmail, u.Language)
		if err != nil {
			t.Fatalf("seed %+v: %v", u, err)
		}
	}
	return &accountStore{Changes: sqlstore.NewChanges(db, e.dialect), db: db, dialect: e.dialect}
}

// An application that keeps its users in its own table, accounts here,
// records the alarm of each change in its own transaction (see
// accountStore, its store.ChangeStore).
func ExampleChanges() {
	// _txlock=immediate: the application's SQLite transactions take the
	// write lock at BEGIN.
	db, done := openExampleSQLite("&_txlock=immediate")
	defer done()
	ctx := context.Background()
	if err := sqlstore.Migrate(ctx, db, sqlstore.SQLite); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, accountsTable); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO accounts VALUES ('u-1', 'Alice@Example.com', 'alice@example.com', 'en-GB')`); err != nil {
		log.Fatal(err)
	}
	users := &accountStore{Changes: sqlstore.NewChanges(db, sqlstore.SQLite), db: db, dialect: sqlstore.SQLite}

	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	err := users.ChangeEmail(ctx, store.EmailChange{
		UserID: "u-1", Email: "alice@example.org", Canonical: "alice@example.org",
		Notice:     store.Notice{NewEmail: "a***@example.org", ChangedAt: now},
		RevertHash: []byte("keyed hash of the undo token"), RevertExpiresAt: now.Add(72 * time.Hour),
		Now: now,
	})
	if err != nil {
		log.Fatal(err)
	}
	notices, err := users.LeaseNotices(ctx, 10, now, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range notices {
		fmt.Println(n.To, n.Language, n.NewEmail)
	}
	rev, err := users.RevertEmail(ctx, store.EmailRevert{
		TokenHash: []byte("keyed hash of the undo token"), Now: now.Add(time.Hour), LockUntil: now.Add(25 * time.Hour),
	})
	fmt.Println(rev.Email, "replaces", rev.From, err)
	// Output:
	// Alice@Example.com en-GB a***@example.org
	// Alice@Example.com replaces alice@example.org <nil>
}

// An application's own users table passes the same suites as
// selfservice_users, through Changes.
func TestOwnUsersTable(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Run("ChangeStore", func(t *testing.T) {
			storetest.TestChangeStore(t, func(t *testing.T, seed []store.User) store.ChangeStore {
				return openAccounts(t, e, seed)
			})
		})
		t.Run("UserStore", func(t *testing.T) {
			storetest.TestUserStore(t, func(t *testing.T, seed []store.User) store.UserStore {
				return openAccounts(t, e, seed)
			})
		})
	})
}
