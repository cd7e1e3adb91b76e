package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/store"
)

var (
	_ store.UserStore   = (*UserStore)(nil)
	_ store.ChangeStore = (*UserStore)(nil)
)

// UserStore is a store.ChangeStore over the selfservice_users table, whose
// changes of address record their alarm through Changes.
// Uniqueness of canonical addresses is the table's UNIQUE constraint, so the
// database decides races between processes as well as goroutines.
type UserStore struct {
	db      *sql.DB
	dialect Dialect
	changes *Changes

	selectUser, lockUser, updateEmail, insertUser string
}

// NewUserStore returns a store over db, a database the application opened
// for dialect d and brought up to date with Migrate.
//
// Panics if db is nil or d is neither Postgres nor SQLite.
func NewUserStore(db *sql.DB, d Dialect) *UserStore {
	mustOpen("NewUserStore", db, d)
	selectUser := `SELECT email, COALESCE(canonical_email, ''), language
		FROM selfservice_users WHERE id = $1`
	lockUser := selectUser
	if d == Postgres {
		// SQLite needs no row lock: inTx holds its write lock.
		lockUser += ` FOR UPDATE`
	}
	return &UserStore{
		db:         db,
		dialect:    d,
		changes:    NewChanges(db, d),
		selectUser: d.query(selectUser),
		lockUser:   d.query(lockUser),
		// One statement: the row changes whole or not at all, and the
		// unique constraint refuses it if another row holds the address.
		updateEmail: d.query(`UPDATE selfservice_users
			SET email = $2, canonical_email = NULLIF($3, '') WHERE id = $1`),
		// ON CONFLICT (id) turns a taken id into zero rows, so that only a
		// taken address raises a unique violation.
		insertUser: d.query(`INSERT INTO selfservice_users (id, email, canonical_email, language)
			VALUES ($1, $2, NULLIF($3, ''), $4) ON CONFLICT (id) DO NOTHING`),
	}
}

// User implements store.UserStore.
func (s *UserStore) User(ctx context.Context, id string) (store.User, error) {
	u, err := s.user(ctx, s.db, s.selectUser, id)
	if err != nil {
		return store.User{}, fmt.Errorf("sqlstore: user %q: %w", id, err)
	}
	return u, nil
}

// user reads user id with query (selectUser or lockUser) in q.
func (s *UserStore) user(ctx context.Context, q execQuerier, query, id string) (store.User, error) {
	u := store.User{ID: id}
	err := q.QueryRowContext(ctx, query, id).Scan(&u.Email, &u.CanonicalEmail, &u.Language)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// UpdateEmail implements store.UserStore. An empty canonical is stored as
// NULL, so any number of users may have no address.
//
// It records no notice nor undo and ignores an undo's cool-off: it is the
// plain UserStore method, for an application's own tools. The Service
// changes addresses with ChangeEmail.
func (s *UserStore) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	if err := s.setEmail(ctx, s.db, id, email, canonical); err != nil {
		return fmt.Errorf("sqlstore: update email of user %q: %w", id, err)
	}
	return nil
}

// setEmail sets user id's address in q, the one statement that changes it.
func (s *UserStore) setEmail(ctx context.Context, q execQuerier, id, email, canonical string) error {
	res, err := q.ExecContext(ctx, s.updateEmail, id, email, canonical)
	if s.dialect.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", store.ErrEmailExists, err)
	}
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ChangeEmail implements store.ChangeStore: in one transaction it locks
// the user's row, records the alarm (Changes.RecordTx) and updates the
// row, so that a change, its notice and its undo record commit together or
// not at all. A locked user gets store.ErrChangeLocked before a taken
// address is judged.
func (s *UserStore) ChangeEmail(ctx context.Context, c store.EmailChange) error {
	err := s.dialect.inTx(ctx, s.db, func(q execQuerier) error {
		prev, err := s.user(ctx, q, s.lockUser, c.UserID)
		if err != nil {
			return err
		}
		if err := s.changes.record(ctx, q, prev, c); err != nil {
			return err
		}
		return s.setEmail(ctx, q, c.UserID, c.Email, c.Canonical)
	})
	if err != nil {
		return fmt.Errorf("sqlstore: change email of user %q: %w", c.UserID, err)
	}
	return nil
}

// RevertEmail implements store.ChangeStore: in one transaction it spends
// the undo record (Changes.RevertTx), locking the user's row first, and
// restores the row's address. A restored address another user holds now
// rolls the whole transaction back, so the record stays live.
func (s *UserStore) RevertEmail(ctx context.Context, r store.EmailRevert) (store.Reverted, error) {
	var rev store.Reverted
	err := s.dialect.inTx(ctx, s.db, func(q execQuerier) error {
		var err error
		rev, err = s.changes.revert(ctx, q, r, func(id string) (store.User, error) {
			return s.user(ctx, q, s.lockUser, id)
		})
		if err != nil {
			return err
		}
		return s.setEmail(ctx, q, rev.UserID, rev.Email, rev.Canonical)
	})
	if err != nil {
		return store.Reverted{}, fmt.Errorf("sqlstore: undo email change: %w", err)
	}
	return rev, nil
}

// LeaseNotices implements store.Outbox (see Changes.LeaseNotices).
func (s *UserStore) LeaseNotices(ctx context.Context, max int, now time.Time, lease time.Duration) ([]store.Notice, error) {
	return s.changes.LeaseNotices(ctx, max, now, lease)
}

// RetryNotice implements store.Outbox.
func (s *UserStore) RetryNotice(ctx context.Context, id string, at time.Time) error {
	return s.changes.RetryNotice(ctx, id, at)
}

// DeleteNotice implements store.Outbox.
func (s *UserStore) DeleteNotice(ctx context.Context, id string) error {
	return s.changes.DeleteNotice(ctx, id)
}

// NoticeBacklog implements store.Outbox.
func (s *UserStore) NoticeBacklog(ctx context.Context) (int, time.Time, error) {
	return s.changes.NoticeBacklog(ctx)
}

// CreateUser adds u, for seeding and for applications that keep their users
// here, with its Language as given and its address in the form the handlers write it: Email trimmed
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
	res, err := s.db.ExecContext(ctx, s.insertUser, u.ID, u.Email, u.CanonicalEmail, u.Language)
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
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
