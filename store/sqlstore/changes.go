package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ciamkit/selfservice/store"
)

var _ store.Outbox = (*Changes)(nil)

// errRevertHashTaken refuses a change whose undo token hash another record
// already has: the tokens are random, so it is a caller's mistake, and it
// must not read as store.ErrEmailExists.
var errRevertHashTaken = errors.New("undo token hash already recorded")

// Changes records the owner's alarm of email changes, the notice to the
// previous address and the undo record, in the transaction of the change,
// and is the store.Outbox of the notices. It works over the tables of
// schema version 2 (selfservice_notices, selfservice_undo_records,
// selfservice_change_locks), which name users by id only, so an application
// that keeps its users in a table of its own implements store.ChangeStore
// around its own UPDATE with RecordTx and RevertTx, the way River's
// InsertTx enqueues a job in the caller's transaction. UserStore uses it
// for selfservice_users.
//
// The transactions must follow one order, so that a change and an undo of
// one user serialise on the user's row (every user row lock is taken
// before anything in these tables is written):
//
//   - ChangeEmail: begin; SELECT the user's row FOR UPDATE (ErrNotFound
//     when there is none); RecordTx with the row as read; UPDATE the row to
//     the new address, a unique violation being store.ErrEmailExists;
//     commit. Any error: roll back.
//   - RevertEmail: begin; RevertTx, whose lockUser does the SELECT ... FOR
//     UPDATE of the record's user; UPDATE the row to the restored address,
//     a unique violation being store.ErrEmailExists; commit. Any error:
//     roll back, and the undo record stays live.
//
// On PostgreSQL a READ COMMITTED transaction does: begin it with
// &sql.TxOptions{Isolation: sql.LevelReadCommitted} (or BEGIN ISOLATION
// LEVEL READ COMMITTED) when the server's default may be stricter, since
// under REPEATABLE READ or SERIALIZABLE the loser of a race fails with a
// serialization error instead of seeing the winner's row. On SQLite,
// which has no row locks, the transaction must take the write lock at
// BEGIN: open the database with _txlock=immediate (modernc.org/sqlite),
// e.g. "file:app.db?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)".
// A deferred transaction that reads (the SELECT) and then writes fails
// with SQLITE_BUSY, without waiting, whenever another writer committed in
// between.
//
// A Changes is safe for concurrent use. Every method takes its now from the
// caller; the database's clock is never read.
type Changes struct {
	db      *sql.DB
	dialect Dialect

	selectLock, deleteLock, forgetUndos, insertNotice, insertUndo string
	findUndo, spendUndo, voidLater, upsertLock                    string
	lease, leaseSelect, retryNotice, deleteNotice, backlog        string
	// PostgreSQL only: the statements above that a change runs one after
	// the other, grouped so that a change makes fewer round trips.
	pgClearLocked, pgInsertNoticeUndo string
}

// NewChanges returns the Changes over db, a database the application opened
// for dialect d and brought up to date with Migrate. Its Outbox methods use
// db; RecordTx and RevertTx use the caller's transaction.
//
// Panics if db is nil or d is neither Postgres nor SQLite.
func NewChanges(db *sql.DB, d Dialect) *Changes {
	mustOpen("NewChanges", db, d)
	c := &Changes{
		db:      db,
		dialect: d,
		selectLock: d.query(`SELECT locked_until FROM selfservice_change_locks
			WHERE user_id = $1`),
		deleteLock: d.query(`DELETE FROM selfservice_change_locks
			WHERE user_id = $1 AND locked_until <= $2`),
		forgetUndos: d.query(`DELETE FROM selfservice_undo_records
			WHERE user_id = $1 AND (state <> 'live' OR expires_at <= $2)`),
		insertNotice: d.query(`INSERT INTO selfservice_notices
			(user_id, recipient, new_email, language, changed_at, sealed, attempts, due)
			VALUES ($1, $2, $3, $4, $5, $6, 0, $7)`),
		insertUndo: d.query(`INSERT INTO selfservice_undo_records
			(token_hash, user_id, prev_email, prev_canonical, new_canonical, created_at, expires_at, state)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'live')`),
		findUndo: d.query(`SELECT user_id FROM selfservice_undo_records
			WHERE token_hash = $1 AND state = 'live' AND expires_at > $2`),
		// The state check and the change are one statement, so that of two
		// undos with one hash only one spends the record.
		spendUndo: d.query(`UPDATE selfservice_undo_records SET state = 'used'
			WHERE token_hash = $1 AND user_id = $2 AND state = 'live' AND expires_at > $3
			RETURNING seq, prev_email, prev_canonical`),
		voidLater: d.query(`UPDATE selfservice_undo_records SET state = 'void'
			WHERE user_id = $1 AND seq > $2 AND state = 'live'`),
		upsertLock: d.query(`INSERT INTO selfservice_change_locks (user_id, locked_until)
			VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET locked_until = excluded.locked_until
			WHERE excluded.locked_until > selfservice_change_locks.locked_until`),
		retryNotice:  d.query(`UPDATE selfservice_notices SET due = $2 WHERE id = $1`),
		deleteNotice: d.query(`DELETE FROM selfservice_notices WHERE id = $1`),
		backlog:      `SELECT COUNT(*), MIN(changed_at) FROM selfservice_notices`,
	}
	if d == Postgres {
		// A change's housekeeping in one round trip: the cool-off still
		// running, if any, is returned, and then nothing is deleted; else
		// an ended cool-off and the user's spent or expired undo records
		// go. The statement's parts share one snapshot, so the guard reads
		// the lock as it was before the statement.
		c.pgClearLocked = `WITH running AS (
				SELECT locked_until FROM selfservice_change_locks
				WHERE user_id = $1 AND locked_until > $2),
			ended AS (
				DELETE FROM selfservice_change_locks
				WHERE user_id = $1 AND locked_until <= $2),
			forgotten AS (
				DELETE FROM selfservice_undo_records
				WHERE user_id = $1 AND (state <> 'live' OR expires_at <= $2)
					AND NOT EXISTS (SELECT 1 FROM running))
			SELECT locked_until FROM running`
		// The notice and the undo record in one round trip. Only the undo
		// record has a unique key besides its own id (the token hash).
		c.pgInsertNoticeUndo = `WITH notice AS (
				INSERT INTO selfservice_notices
				(user_id, recipient, new_email, language, changed_at, sealed, attempts, due)
				VALUES ($1, $2, $3, $4, $5, $6, 0, $7))
			INSERT INTO selfservice_undo_records
			(token_hash, user_id, prev_email, prev_canonical, new_canonical, created_at, expires_at, state)
			VALUES ($8, $1, $2, $9, $10, $7, $11, 'live')`
		// One statement: SKIP LOCKED passes over the rows another replica
		// is leasing at this moment instead of waiting for them, and the
		// lease is taken in the statement that picks the rows. picked.due
		// is the due before the lease, by which the batch is ordered.
		c.lease = `WITH picked AS (
				SELECT id, due FROM selfservice_notices
				WHERE due <= $1 ORDER BY due, id LIMIT $3
				FOR UPDATE SKIP LOCKED)
			UPDATE selfservice_notices AS n SET attempts = n.attempts + 1, due = $2
			FROM picked WHERE n.id = picked.id
			RETURNING n.id, n.user_id, n.recipient, n.new_email, n.language,
				n.changed_at, n.sealed, n.attempts, picked.due`
	} else {
		// SQLite's RETURNING sees only the updated row, not the due it
		// replaced, so the batch is read in order and then leased by the
		// same subquery, in one write transaction: SQLite runs one writer
		// at a time, so the two statements see the same rows.
		c.leaseSelect = `SELECT id, user_id, recipient, new_email, language, changed_at, sealed, attempts
			FROM selfservice_notices WHERE due <= ?1 ORDER BY due, id LIMIT ?3`
		c.lease = `UPDATE selfservice_notices SET attempts = attempts + 1, due = ?2
			WHERE id IN (SELECT id FROM selfservice_notices
				WHERE due <= ?1 ORDER BY due, id LIMIT ?3)`
	}
	return c
}

// RecordTx records, in tx, the alarm of the change ch of the user prev, the
// user's row as tx read it under a lock (SELECT ... FOR UPDATE on
// PostgreSQL) before the change: see Changes for the order. Call it before
// the UPDATE of the row, in the same transaction: a locked user then gets
// store.ErrChangeLocked rather than store.ErrEmailExists, and so learns
// nothing of which addresses are taken (store/memstore judges in the same
// order).
//
// It returns an error wrapping store.ErrChangeLocked, having written
// nothing, when an undo's cool-off for the user has not ended at ch.Now.
// Otherwise, when prev held an address that differs canonically from
// ch.Canonical, it records ch.Notice, due at ch.Now, to prev.Email in
// prev.Language, and the undo record of ch.RevertHash (none when it is
// empty), live until ch.RevertExpiresAt; when prev held no address, or
// ch.Canonical already, it records nothing. Either way it forgets the
// user's undo records that are used, voided or expired at ch.Now, and an
// ended cool-off.
//
// On any error the caller must roll tx back: on PostgreSQL a failed
// statement aborts the transaction, and RecordTx may have written part of
// the alarm.
func (c *Changes) RecordTx(ctx context.Context, tx *sql.Tx, prev store.User, ch store.EmailChange) error {
	if err := c.record(ctx, tx, prev, ch); err != nil {
		return fmt.Errorf("sqlstore: record change of user %q: %w", ch.UserID, err)
	}
	return nil
}

// record is RecordTx in q, a transaction.
func (c *Changes) record(ctx context.Context, q execQuerier, prev store.User, ch store.EmailChange) error {
	if prev.ID != ch.UserID {
		return fmt.Errorf("the user read is %q, not the user changed", prev.ID)
	}
	now := ch.Now.UnixMilli()
	if err := c.clearLocked(ctx, q, ch.UserID, now); err != nil {
		return err
	}
	if prev.CanonicalEmail == "" || prev.CanonicalEmail == ch.Canonical {
		return nil
	}
	n := ch.Notice
	if c.dialect == Postgres && len(ch.RevertHash) > 0 {
		_, err := q.ExecContext(ctx, c.pgInsertNoticeUndo, ch.UserID, prev.Email, n.NewEmail, prev.Language,
			n.ChangedAt.UnixMilli(), nullBytes(n.Sealed), now,
			ch.RevertHash, prev.CanonicalEmail, ch.Canonical, ch.RevertExpiresAt.UnixMilli())
		if c.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("%w: %w", errRevertHashTaken, err)
		}
		if err != nil {
			return fmt.Errorf("notice and undo record: %w", err)
		}
		return nil
	}
	_, err := q.ExecContext(ctx, c.insertNotice, ch.UserID, prev.Email, n.NewEmail, prev.Language,
		n.ChangedAt.UnixMilli(), nullBytes(n.Sealed), now)
	if err != nil {
		return fmt.Errorf("notice: %w", err)
	}
	if len(ch.RevertHash) == 0 {
		return nil
	}
	_, err = q.ExecContext(ctx, c.insertUndo, ch.RevertHash, ch.UserID, prev.Email, prev.CanonicalEmail,
		ch.Canonical, now, ch.RevertExpiresAt.UnixMilli())
	if c.dialect.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", errRevertHashTaken, err)
	}
	if err != nil {
		return fmt.Errorf("undo record: %w", err)
	}
	return nil
}

// clearLocked returns store.ErrChangeLocked, having written nothing, when
// a cool-off of user id runs at now (Unix milliseconds); otherwise it
// deletes an ended cool-off and the user's undo records that are spent or
// expired. On PostgreSQL it is one round trip.
func (c *Changes) clearLocked(ctx context.Context, q execQuerier, id string, now int64) error {
	if c.dialect == Postgres {
		var until int64
		switch err := q.QueryRowContext(ctx, c.pgClearLocked, id, now).Scan(&until); {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		return store.ErrChangeLocked
	}
	var until int64
	switch err := q.QueryRowContext(ctx, c.selectLock, id).Scan(&until); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case now < until:
		return store.ErrChangeLocked
	default:
		if _, err := q.ExecContext(ctx, c.deleteLock, id, now); err != nil {
			return err
		}
	}
	_, err := q.ExecContext(ctx, c.forgetUndos, id, now)
	return err
}

// RevertTx spends, in tx, the undo record whose token hash is r.TokenHash
// when it is live at r.Now: see Changes for the order. It calls lockUser
// with the record's user id, in the middle; lockUser must read that user's
// row in tx under a lock (SELECT ... FOR UPDATE on PostgreSQL) and return
// it, or an error wrapping store.ErrNotFound (or sql.ErrNoRows) when it is
// gone. Then it marks the record used, voids the user's records made after
// it, and locks the user's changes until r.LockUntil (a later lock already
// set stays).
//
// It returns the restored change, which the caller then writes to the
// user's row (Email and Canonical) in tx before committing; From is the
// address lockUser read. It returns an error wrapping
// store.ErrRevertInvalid when no record is live for the hash, or its user
// is gone. On any error the caller must roll tx back, which leaves the
// record as it was.
//
// Locking the user's row before anything is written is what makes an undo
// and a change of the same user run one after the other on PostgreSQL's
// READ COMMITTED: an undo that locked the record first and the row last
// could void the user's later records before a concurrent change committed
// its own, which would then stay live.
func (c *Changes) RevertTx(ctx context.Context, tx *sql.Tx, r store.EmailRevert, lockUser func(userID string) (store.User, error)) (store.Reverted, error) {
	rev, err := c.revert(ctx, tx, r, lockUser)
	if err != nil {
		return store.Reverted{}, fmt.Errorf("sqlstore: undo email change: %w", err)
	}
	return rev, nil
}

// revert is RevertTx in q, a transaction.
func (c *Changes) revert(ctx context.Context, q execQuerier, r store.EmailRevert, lockUser func(userID string) (store.User, error)) (store.Reverted, error) {
	if len(r.TokenHash) == 0 {
		return store.Reverted{}, store.ErrRevertInvalid
	}
	now := r.Now.UnixMilli()
	var userID string
	err := q.QueryRowContext(ctx, c.findUndo, r.TokenHash, now).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Reverted{}, store.ErrRevertInvalid
	}
	if err != nil {
		return store.Reverted{}, err
	}
	cur, err := lockUser(userID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		return store.Reverted{}, fmt.Errorf("%w: user %q is gone", store.ErrRevertInvalid, userID)
	}
	if err != nil {
		return store.Reverted{}, fmt.Errorf("lock user %q: %w", userID, err)
	}
	// Checked again under the user's lock: an undo of the same record that
	// held it first has spent it.
	rev := store.Reverted{UserID: userID, From: cur.Email}
	var seq int64
	err = q.QueryRowContext(ctx, c.spendUndo, r.TokenHash, userID, now).Scan(&seq, &rev.Email, &rev.Canonical)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Reverted{}, store.ErrRevertInvalid
	}
	if err != nil {
		return store.Reverted{}, err
	}
	if _, err := q.ExecContext(ctx, c.voidLater, userID, seq); err != nil {
		return store.Reverted{}, err
	}
	if _, err := q.ExecContext(ctx, c.upsertLock, userID, r.LockUntil.UnixMilli()); err != nil {
		return store.Reverted{}, err
	}
	return rev, nil
}

// LeaseNotices implements store.Outbox. Several processes may lease from
// one database at once: on PostgreSQL each skips the rows the others are
// leasing (FOR UPDATE SKIP LOCKED); SQLite runs one writer at a time.
func (c *Changes) LeaseNotices(ctx context.Context, max int, now time.Time, lease time.Duration) ([]store.Notice, error) {
	if max <= 0 {
		return nil, nil
	}
	nowMs, dueMs := now.UnixMilli(), now.Add(lease).UnixMilli()
	var ns []store.Notice
	var err error
	if c.dialect == Postgres {
		ns, err = c.leasePostgres(ctx, max, nowMs, dueMs)
	} else {
		err = c.dialect.inTx(ctx, c.db, func(q execQuerier) error {
			ns, err = c.leaseSQLite(ctx, q, max, nowMs, dueMs)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: lease notices: %w", err)
	}
	return ns, nil
}

func (c *Changes) leasePostgres(ctx context.Context, max int, now, due int64) ([]store.Notice, error) {
	rows, err := c.db.QueryContext(ctx, c.lease, now, due, max)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type leased struct {
		n       store.Notice
		id, due int64
	}
	var ls []leased
	for rows.Next() {
		var l leased
		if err := scanNotice(rows, &l.n, &l.id, &l.due); err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// RETURNING has no order; the contract's is soonest due first.
	slices.SortFunc(ls, func(a, b leased) int { return cmp.Or(cmp.Compare(a.due, b.due), cmp.Compare(a.id, b.id)) })
	ns := make([]store.Notice, len(ls))
	for i, l := range ls {
		ns[i] = l.n
	}
	return ns, nil
}

func (c *Changes) leaseSQLite(ctx context.Context, q execQuerier, max int, now, due int64) ([]store.Notice, error) {
	rows, err := q.QueryContext(ctx, c.leaseSelect, now, due, max)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ns []store.Notice
	for rows.Next() {
		var n store.Notice
		if err := scanNotice(rows, &n, nil, nil); err != nil {
			return nil, err
		}
		n.Attempts++ // as the UPDATE below counts it
		ns = append(ns, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return nil, nil
	}
	res, err := q.ExecContext(ctx, c.lease, now, due, max)
	if err != nil {
		return nil, err
	}
	k, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	if k != int64(len(ns)) {
		return nil, fmt.Errorf("leased %d notices of the %d read", k, len(ns))
	}
	return ns, nil
}

// scanNotice reads a notice's columns (id, user_id, recipient, new_email,
// language, changed_at, sealed, attempts) and, when due is not nil, one more
// into due. It sets *id to the numeric id when id is not nil.
func scanNotice(rows *sql.Rows, n *store.Notice, id, due *int64) error {
	var num, changed int64
	dest := []any{&num, &n.UserID, &n.To, &n.NewEmail, &n.Language, &changed, &n.Sealed, &n.Attempts}
	if due != nil {
		dest = append(dest, due)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if len(n.Sealed) == 0 {
		n.Sealed = nil
	}
	n.ID = strconv.FormatInt(num, 10)
	n.ChangedAt = time.UnixMilli(changed).UTC()
	if id != nil {
		*id = num
	}
	return nil
}

// RetryNotice implements store.Outbox.
func (c *Changes) RetryNotice(ctx context.Context, id string, at time.Time) error {
	num, ok := noticeID(id)
	if !ok {
		return nil
	}
	if _, err := c.db.ExecContext(ctx, c.retryNotice, num, at.UnixMilli()); err != nil {
		return fmt.Errorf("sqlstore: retry notice %s: %w", id, err)
	}
	return nil
}

// DeleteNotice implements store.Outbox.
func (c *Changes) DeleteNotice(ctx context.Context, id string) error {
	num, ok := noticeID(id)
	if !ok {
		return nil
	}
	if _, err := c.db.ExecContext(ctx, c.deleteNotice, num); err != nil {
		return fmt.Errorf("sqlstore: delete notice %s: %w", id, err)
	}
	return nil
}

// NoticeBacklog implements store.Outbox.
func (c *Changes) NoticeBacklog(ctx context.Context) (n int, oldest time.Time, err error) {
	var first sql.NullInt64
	if err := c.db.QueryRowContext(ctx, c.backlog).Scan(&n, &first); err != nil {
		return 0, time.Time{}, fmt.Errorf("sqlstore: notice backlog: %w", err)
	}
	if first.Valid {
		oldest = time.UnixMilli(first.Int64).UTC()
	}
	return n, oldest, nil
}

// noticeID reads id, a notice's ID: the row id in decimal, as the store
// writes it. Any other spelling ("05", "+5") names no notice, so that one
// notice has one ID.
func noticeID(id string) (int64, bool) {
	n, err := strconv.ParseInt(id, 10, 64)
	return n, err == nil && strconv.FormatInt(n, 10) == id
}

// nullBytes is b, or NULL when b is empty: a notice without a sealed token
// reads back as nil on every engine.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
