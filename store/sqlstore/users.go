package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/store"
)

var _ store.UserStore = (*UserStore)(nil)

// UserStore is a store.UserStore over the selfservice_users table.
// Uniqueness of canonical addresses is the table's UNIQUE constraint, so the
// database decides races between processes as well as goroutines.
type UserStore struct {
	db                                  *sql.DB
	dialect                             Dialect
	selectUser, updateEmail, insertUser string
}

// NewUserStore returns a store over db, a database the application opened
// for dialect d and brought up to date with Migrate.
//
// Panics if db is nil or d is neither Postgres nor SQLite.
func NewUserStore(db *sql.DB, d Dialect) *UserStore {
	mustOpen("NewUserStore", db, d)
	return &UserStore{
		db:      db,
		dialect: d,
		selectUser: d.query(`SELECT email, COALESCE(canonical_email, '')
			FROM selfservice_users WHERE id = $1`),
		// One statement: the row changes whole or not at all, and the
		// unique constraint refuses it if another row holds the address.
		updateEmail: d.query(`UPDATE selfservice_users
			SET email = $2, canonical_email = NULLIF($3, '') WHERE id = $1`),
		// ON CONFLICT (id) turns a taken id into zero rows, so that only a
		// taken address raises a unique violation.
		insertUser: d.query(`INSERT INTO selfservice_users (id, email, canonical_email)
			VALUES ($1, $2, NULLIF($3, '')) ON CONFLICT (id) DO NOTHING`),
	}
}

// User implements store.UserStore.
func (s *UserStore) User(ctx context.Context, id string) (store.User, error) {
	u := store.User{ID: id}
	err := s.db.QueryRowContext(ctx, s.selectUser, id).Scan(&u.Email, &u.CanonicalEmail)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, fmt.Errorf("sqlstore: user %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlstore: user %q: %w", id, err)
	}
	return u, nil
}

// UpdateEmail implements store.UserStore. An empty canonical is stored as
// NULL, so any number of users may have no address.
func (s *UserStore) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	res, err := s.db.ExecContext(ctx, s.updateEmail, id, email, canonical)
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("sqlstore: update email of user %q: %w: %w", id, store.ErrEmailExists, err)
		}
		return fmt.Errorf("sqlstore: update email of user %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: update email of user %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: update email of user %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// CreateUser adds u, for seeding and for applications that keep their users
// here, with its address in the form the handlers write it: Email trimmed
// and NFC-normalised, and CanonicalEmail computed from it when empty (see
// the root package's CanonicalEmail). It returns an error wrapping
// store.ErrAlreadyExists if the id is taken and store.ErrEmailExists if the
// canonical address is; store.ErrInvalidUser if Email is not a valid
// address, or CanonicalEmail is given without Email or is not Email's
// canonical form, since the unique index holds only as long as every row
// has that form. On any error it adds nothing.
func (s *UserStore) CreateUser(ctx context.Context, u store.User) error {
	email, canonical, err := emailaddr.Reconcile(u.Email, u.CanonicalEmail)
	if err != nil {
		return fmt.Errorf("sqlstore: create user %q: %w: %w", u.ID, store.ErrInvalidUser, err)
	}
	u.Email, u.CanonicalEmail = email, canonical
	res, err := s.db.ExecContext(ctx, s.insertUser, u.ID, u.Email, u.CanonicalEmail)
	if err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("sqlstore: create user %q: %w: %w", u.ID, store.ErrEmailExists, err)
		}
		return fmt.Errorf("sqlstore: create user %q: %w", u.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: create user %q: %w", u.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: create user %q: %w", u.ID, store.ErrAlreadyExists)
	}
	return nil
}
