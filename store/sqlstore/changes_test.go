package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestChangeStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		storetest.TestChangeStore(t, func(t *testing.T, seed []store.User) store.ChangeStore {
			return newSeededStore(t, openMigrated(t, e), e, seed)
		})
	})
}

// newSeededStore returns a UserStore on db holding seed.
func newSeededStore(t *testing.T, db *sql.DB, e engine, seed []store.User) *sqlstore.UserStore {
	t.Helper()
	s := sqlstore.NewUserStore(db, e.dialect)
	for _, u := range seed {
		if err := s.CreateUser(t.Context(), u); err != nil {
			t.Fatalf("seed CreateUser(%+v): %v", u, err)
		}
	}
	return s
}

// base is the virtual clock of these tests, in whole milliseconds and far
// from the wall clock, as in storetest.
var base = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// change returns the change of user id's address to typed (ASCII) at now,
// whose undo token is token.
func change(id, typed string, now time.Time, token string) store.EmailChange {
	return store.EmailChange{
		UserID:          id,
		Email:           typed,
		Canonical:       strings.ToLower(typed),
		Notice:          store.Notice{NewEmail: typed[:1] + "***", ChangedAt: now, Sealed: []byte("sealed " + token)},
		RevertHash:      []byte("hash " + token),
		RevertExpiresAt: now.Add(24 * time.Hour),
		Now:             now,
	}
}

// openShared opens a fresh, migrated database of engine e and returns a
// pool on it with a func that opens another pool on the same database (the
// same SQLite file, the same PostgreSQL schema), as another process or
// replica would. Every pool is closed when t ends; the database goes after
// the last.
func openShared(t *testing.T, e engine) (*sql.DB, func() *sql.DB) {
	t.Helper()
	if e.dialect == sqlstore.SQLite {
		path := filepath.Join(t.TempDir(), "shared.db")
		db := openSQLiteFile(t, path, "")
		if err := sqlstore.Migrate(t.Context(), db, e.dialect); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return db, func() *sql.DB { return openSQLiteFile(t, path, "") }
	}
	db := openMigrated(t, e)
	var schema string
	if err := db.QueryRowContext(t.Context(), `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatalf("current_schema: %v", err)
	}
	return db, func() *sql.DB {
		c, err := pgx.ParseConfig(testenv.Lookup(t, testenv.Postgres))
		if err != nil {
			t.Fatalf("%s: %v", testenv.Postgres, err)
		}
		c.RuntimeParams["search_path"] = schema
		other := stdlib.OpenDB(*c)
		t.Cleanup(func() { other.Close() })
		return other
	}
}

// warm opens n connections of db and leaves them idle in its pool (n is at
// most the pool's idle limit, 2 by default).
func warm(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatalf("open a connection: %v", err)
		}
		if err := c.PingContext(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Close()
	}
}

// Notices and undo records are rows in the database, not memory: a
// process that stops (here: its pool closed) leaves them for the next.
func TestNoticesOutliveTheProcess(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		db, reopen := openShared(t, e)
		alice := store.User{ID: "u-alice", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com", Language: "fr"}
		bob := store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "bob@example.com"}
		s := newSeededStore(t, db, e, []store.User{alice, bob})
		ca := change(alice.ID, "Alice.New@Example.org", base, "a")
		cb := change(bob.ID, "Bob.New@Example.org", base.Add(time.Second), "b")
		for _, c := range []store.EmailChange{ca, cb} {
			if err := s.ChangeEmail(t.Context(), c); err != nil {
				t.Fatalf("ChangeEmail(%s): %v", c.UserID, err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}

		s = sqlstore.NewUserStore(reopen(), e.dialect)
		ctx := t.Context()
		n, oldest, err := s.NoticeBacklog(ctx)
		if err != nil || n != 2 || !oldest.Equal(base) {
			t.Errorf("NoticeBacklog after reopening = %d, %v, %v; want 2, %v", n, oldest, err, base)
		}
		got, err := s.LeaseNotices(ctx, 10, base.Add(time.Minute), time.Minute)
		if err != nil {
			t.Fatalf("LeaseNotices after reopening: %v", err)
		}
		want := []store.Notice{
			{UserID: alice.ID, To: alice.Email, NewEmail: ca.Notice.NewEmail, Language: "fr", ChangedAt: base, Sealed: ca.Notice.Sealed, Attempts: 1},
			{UserID: bob.ID, To: bob.Email, NewEmail: cb.Notice.NewEmail, ChangedAt: cb.Now, Sealed: cb.Notice.Sealed, Attempts: 1},
		}
		for i := range got {
			got[i].ID = ""
		}
		if !slices.EqualFunc(got, want, equalNotice) {
			t.Errorf("LeaseNotices after reopening = %+v, want %+v", got, want)
		}
		rev, err := s.RevertEmail(ctx, store.EmailRevert{TokenHash: ca.RevertHash, Now: base.Add(time.Minute), LockUntil: base.Add(time.Hour)})
		if wantRev := (store.Reverted{UserID: alice.ID, Email: alice.Email, Canonical: alice.CanonicalEmail, From: ca.Email}); err != nil || rev != wantRev {
			t.Errorf("RevertEmail after reopening = %+v, %v; want %+v", rev, err, wantRev)
		}
	})
}

func equalNotice(a, b store.Notice) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.To == b.To && a.NewEmail == b.NewEmail &&
		a.Language == b.Language && a.ChangedAt.Equal(b.ChangedAt) && string(a.Sealed) == string(b.Sealed) &&
		a.Attempts == b.Attempts
}

// Replicas share one database through pools of their own: every notice
// goes to exactly one of them, and a replica that leased a notice and
// died gives it up when its lease ends.
func TestOutboxAcrossReplicas(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Run("concurrent leases are disjoint and cover every notice", func(t *testing.T) {
			db, another := openShared(t, e)
			const notices = 60
			users := make([]store.User, notices)
			for i := range users {
				addr := fmt.Sprintf("user-%02d@example.com", i)
				users[i] = store.User{ID: fmt.Sprintf("u-%02d", i), Email: addr, CanonicalEmail: addr}
			}
			s := newSeededStore(t, db, e, users)
			for i, u := range users {
				c := change(u.ID, fmt.Sprintf("New-%02d@example.com", i), base.Add(time.Duration(i)*time.Millisecond), u.ID)
				if err := s.ChangeEmail(t.Context(), c); err != nil {
					t.Fatalf("ChangeEmail(%s): %v", u.ID, err)
				}
			}
			// Two replicas, two couriers each, their connections open
			// before the race (a new PostgreSQL connection takes longer
			// than the whole race otherwise).
			other := another()
			for _, db := range []*sql.DB{db, other} {
				warm(t, db, 2)
			}
			outboxes := []store.Outbox{s, s, sqlstore.NewChanges(other, e.dialect)}
			outboxes = append(outboxes, outboxes[2])
			leased := make([][]string, len(outboxes))
			errs := make([]error, len(outboxes))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, o := range outboxes {
				wg.Go(func() {
					<-start
					for range notices + 1 {
						ns, err := o.LeaseNotices(t.Context(), 3, base.Add(time.Second), time.Hour)
						if err != nil || len(ns) == 0 {
							errs[i] = err
							return
						}
						for _, n := range ns {
							leased[i] = append(leased[i], n.UserID)
						}
					}
					errs[i] = errors.New("LeaseNotices went on returning notices")
				})
			}
			close(start)
			wg.Wait()
			seen := map[string]int{}
			for i, ids := range leased {
				if errs[i] != nil {
					t.Errorf("courier %d: %v", i, errs[i])
				}
				for _, id := range ids {
					seen[id]++
				}
			}
			for _, u := range users {
				if seen[u.ID] != 1 {
					t.Errorf("the notice of %s was leased %d times, want once", u.ID, seen[u.ID])
				}
			}
			t.Logf("notices per courier: %d %d %d %d", len(leased[0]), len(leased[1]), len(leased[2]), len(leased[3]))
		})

		t.Run("a crashed replica's lease is taken over when it ends", func(t *testing.T) {
			db, another := openShared(t, e)
			alice := store.User{ID: "u-alice", Email: "alice@example.com", CanonicalEmail: "alice@example.com"}
			s := newSeededStore(t, db, e, []store.User{alice})
			if err := s.ChangeEmail(t.Context(), change(alice.ID, "alice@example.org", base, "a")); err != nil {
				t.Fatal(err)
			}
			survivor := sqlstore.NewChanges(another(), e.dialect)
			ctx, lease := t.Context(), time.Minute

			first, err := s.LeaseNotices(ctx, 10, base, lease)
			if err != nil || len(first) != 1 {
				t.Fatalf("LeaseNotices by the replica that will crash = %+v, %v; want one notice", first, err)
			}
			if err := db.Close(); err != nil { // crashed: never delivered, deleted nor retried
				t.Fatal(err)
			}
			for _, now := range []time.Time{base, base.Add(lease - time.Millisecond)} {
				if ns, err := survivor.LeaseNotices(ctx, 10, now, lease); err != nil || len(ns) != 0 {
					t.Errorf("LeaseNotices by the survivor during the lease (%v) = %+v, %v; want none", now.Sub(base), ns, err)
				}
			}
			again, err := survivor.LeaseNotices(ctx, 10, base.Add(lease), lease)
			if err != nil || len(again) != 1 || again[0].ID != first[0].ID || again[0].Attempts != 2 {
				t.Fatalf("LeaseNotices by the survivor at the lease's end = %+v, %v; want notice %s, attempt 2", again, err, first[0].ID)
			}
			if err := survivor.DeleteNotice(ctx, again[0].ID); err != nil {
				t.Errorf("DeleteNotice: %v", err)
			}
			if n, _, err := survivor.NoticeBacklog(ctx); err != nil || n != 0 {
				t.Errorf("NoticeBacklog after delivery = %d, %v; want 0", n, err)
			}
		})
	})
}

// alarmState is what a change or an undo may write: the rows of the alarm
// tables, and the users.
type alarmState struct {
	notices, live, used, void, locks int
	users                            string
}

func readAlarmState(t *testing.T, db *sql.DB, usersQuery string) alarmState {
	t.Helper()
	var st alarmState
	ctx := t.Context()
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM selfservice_notices),
		(SELECT COUNT(*) FROM selfservice_undo_records WHERE state = 'live'),
		(SELECT COUNT(*) FROM selfservice_undo_records WHERE state = 'used'),
		(SELECT COUNT(*) FROM selfservice_undo_records WHERE state = 'void'),
		(SELECT COUNT(*) FROM selfservice_change_locks)`).Scan(&st.notices, &st.live, &st.used, &st.void, &st.locks)
	if err != nil {
		t.Fatalf("read the alarm tables: %v", err)
	}
	rows, err := db.QueryContext(ctx, usersQuery)
	if err != nil {
		t.Fatalf("read the users: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, email string
		var canonical sql.NullString
		if err := rows.Scan(&id, &email, &canonical); err != nil {
			t.Fatal(err)
		}
		st.users += fmt.Sprintf("%s=%s/%s ", id, email, canonical.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return st
}

// A change or an undo that fails writes nothing: neither the address nor
// part of its alarm. Several fail after the notice was written in the
// transaction; the rollback takes it back.
func TestFailedChangeWritesNothing(t *testing.T) {
	alice := store.User{ID: "u-alice", Email: "alice@example.com", CanonicalEmail: "alice@example.com"}
	bob := store.User{ID: "u-bob", Email: "bob@example.com", CanonicalEmail: "bob@example.com"}
	carol := store.User{ID: "u-carol", Email: "carol@example.com", CanonicalEmail: "carol@example.com"}
	later := base.Add(time.Hour)
	cancelled := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx
	}
	type stores struct {
		db *sql.DB
		s  store.ChangeStore
		// users lists the users' rows in the store's own table.
		users string
		// own is the accountStore, nil for the UserStore.
		own *accountStore
	}
	tests := []struct {
		name string
		// do fails; want is the sentinel it wraps, nil for none.
		do   func(t *testing.T, st stores) error
		want error
		// ownOnly: do drives RecordTx or RevertTx itself, so it runs
		// with the own table only.
		ownOnly bool
	}{
		{"address taken, after the notice was written", func(t *testing.T, st stores) error {
			return st.s.ChangeEmail(t.Context(), change(bob.ID, "ALICE@example.org", later, "b"))
		}, store.ErrEmailExists, false},
		{"cool-off", func(t *testing.T, st stores) error {
			return st.s.ChangeEmail(t.Context(), change(carol.ID, "carol@example.net", later, "c2"))
		}, store.ErrChangeLocked, false},
		{"unknown user", func(t *testing.T, st stores) error {
			return st.s.ChangeEmail(t.Context(), change("u-nobody", "nobody@example.org", later, "n"))
		}, store.ErrNotFound, false},
		{"undo token hash already recorded, after the notice was written", func(t *testing.T, st stores) error {
			c := change(bob.ID, "bob@example.org", later, "b")
			c.RevertHash = []byte("hash a")
			return st.s.ChangeEmail(t.Context(), c)
		}, nil, false},
		{"cancelled context", func(t *testing.T, st stores) error {
			return st.s.ChangeEmail(cancelled(t.Context()), change(bob.ID, "bob@example.org", later, "b"))
		}, nil, false},
		{"cancelled between RecordTx and the UPDATE", func(t *testing.T, st stores) error {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tx, err := st.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			prev, err := st.own.lockAccount(ctx, tx, bob.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.own.RecordTx(ctx, tx, prev, change(bob.ID, "bob@example.org", later, "b")); err != nil {
				t.Fatalf("RecordTx: %v", err)
			}
			cancel()
			if err := st.own.setMail(ctx, tx, bob.ID, "bob@example.org", "bob@example.org"); err != nil {
				return err
			}
			return tx.Commit()
		}, nil, true},
		{"undo to an address taken since", func(t *testing.T, st stores) error {
			_, err := st.s.RevertEmail(t.Context(), store.EmailRevert{TokenHash: []byte("hash a"), Now: later, LockUntil: later.Add(time.Hour)})
			return err
		}, store.ErrEmailExists, false},
		{"undo cancelled while it locks the user", func(t *testing.T, st stores) error {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tx, err := st.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			r := store.EmailRevert{TokenHash: []byte("hash d"), Now: later, LockUntil: later.Add(time.Hour)}
			_, err = st.own.RevertTx(ctx, tx, r, func(id string) (store.User, error) {
				u, err := st.own.lockAccount(ctx, tx, id)
				cancel()
				return u, err
			})
			if err != nil {
				return err
			}
			return tx.Commit()
		}, nil, true},
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, kind := range []string{"UserStore", "own table"} {
			for _, tt := range tests {
				if tt.ownOnly && kind == "UserStore" {
					continue
				}
				t.Run(kind+"/"+tt.name, func(t *testing.T) {
					t.Parallel()
					seed := []store.User{alice, bob, carol}
					var st stores
					if kind == "UserStore" {
						st.db = openMigrated(t, e)
						st.s = newSeededStore(t, st.db, e, seed)
						st.users = `SELECT id, email, canonical_email FROM selfservice_users ORDER BY id`
					} else {
						st.own = openAccounts(t, e, seed)
						st.db, st.s = st.own.db, st.own
						st.users = `SELECT id, mail, mail_canonical FROM accounts ORDER BY id`
					}
					ctx := t.Context()
					// alice -> alice@example.org, then bob takes her old
					// address: undo "a" is live, its address taken; carol
					// changed twice, undid the second change and is in a
					// cool-off, undo "d" live.
					for _, c := range []store.EmailChange{
						change(alice.ID, "Alice@example.org", base, "a"),
						change(bob.ID, "ALICE@example.com", base.Add(time.Second), "b0"),
						change(carol.ID, "carol@example.org", base.Add(2*time.Second), "d"),
						change(carol.ID, "carol@example.edu", base.Add(3*time.Second), "c"),
					} {
						if err := st.s.ChangeEmail(ctx, c); err != nil {
							t.Fatalf("setup ChangeEmail(%s to %s): %v", c.UserID, c.Email, err)
						}
					}
					_, err := st.s.RevertEmail(ctx, store.EmailRevert{TokenHash: []byte("hash c"), Now: base.Add(4 * time.Second), LockUntil: later.Add(time.Hour)})
					if err != nil {
						t.Fatalf("setup RevertEmail: %v", err)
					}
					before := readAlarmState(t, st.db, st.users)

					err = tt.do(t, st)
					switch {
					case err == nil:
						t.Fatal("succeeded, want an error")
					case tt.want != nil && !errors.Is(err, tt.want):
						t.Errorf("error %v, want one wrapping %v", err, tt.want)
					case tt.want == nil:
						for _, s := range []error{store.ErrEmailExists, store.ErrNotFound, store.ErrChangeLocked, store.ErrRevertInvalid} {
							if errors.Is(err, s) {
								t.Errorf("error %v wraps %v, want no sentinel", err, s)
							}
						}
					}
					if after := readAlarmState(t, st.db, st.users); after != before {
						t.Errorf("the failure wrote:\nbefore %+v\nafter  %+v", before, after)
					}
				})
			}
		}
	})
}

// A database of schema version 1, with users, takes version 2: the users
// keep their addresses and have no language.
func TestMigrateFromVersion1(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		db := e.open(t)
		ctx := t.Context()
		v1 := schemaFiles(t, e.dialect)[0]
		if !strings.HasPrefix(filepath.Base(v1), "0001_") {
			t.Fatalf("first schema file %s", v1)
		}
		b, err := os.ReadFile(v1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("apply %s: %v", v1, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO selfservice_users (id, email, canonical_email)
			VALUES ('u-1', 'Alice@Example.com', 'alice@example.com')`); err != nil {
			t.Fatal(err)
		}
		if err := sqlstore.Migrate(ctx, db, e.dialect); err != nil {
			t.Fatalf("Migrate from version 1: %v", err)
		}
		if err := sqlstore.Migrate(ctx, db, e.dialect); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		s := sqlstore.NewUserStore(db, e.dialect)
		want := store.User{ID: "u-1", Email: "Alice@Example.com", CanonicalEmail: "alice@example.com"}
		if got, err := s.User(ctx, "u-1"); err != nil || got != want {
			t.Errorf("User after the upgrade = %+v, %v; want %+v", got, err, want)
		}
		if err := s.ChangeEmail(ctx, change("u-1", "alice@example.org", base, "a")); err != nil {
			t.Errorf("ChangeEmail after the upgrade: %v", err)
		}
		if n, _, err := s.NoticeBacklog(ctx); err != nil || n != 1 {
			t.Errorf("NoticeBacklog after the upgrade = %d, %v; want 1", n, err)
		}
	})
}

// TestStricterDefaultIsolation: on a PostgreSQL whose default isolation is
// SERIALIZABLE, racing operations on one account still end as the
// contract says, never in a serialization failure: of concurrent undos of
// one token one wins and the others find it spent; of two users taking
// one address one wins and the other gets ErrEmailExists.
func TestStricterDefaultIsolation(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, "", "default_transaction_isolation", "serializable")
	if err := sqlstore.Migrate(t.Context(), db, sqlstore.Postgres); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	var seed []store.User
	for _, id := range []string{"a", "b", "c"} {
		seed = append(seed, store.User{ID: id, Email: id + "@example.com", CanonicalEmail: id + "@example.com"})
	}
	s := newSeededStore(t, db, engine{dialect: sqlstore.Postgres}, seed)
	ca := change("a", "A.New@Example.org", base, "a")
	if err := s.ChangeEmail(t.Context(), ca); err != nil {
		t.Fatalf("ChangeEmail: %v", err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, err := s.RevertEmail(context.Background(), store.EmailRevert{TokenHash: ca.RevertHash, Now: base.Add(time.Minute), LockUntil: base.Add(time.Hour)})
			errs <- err
		})
	}
	for _, id := range []string{"b", "c"} {
		wg.Go(func() {
			<-start
			errs <- s.ChangeEmail(context.Background(), change(id, "Taken@Example.org", base.Add(time.Second), id))
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	counts := map[string]int{}
	for err := range errs {
		switch {
		case err == nil:
			counts["ok"]++
		case errors.Is(err, store.ErrRevertInvalid):
			counts["spent"]++
		case errors.Is(err, store.ErrEmailExists):
			counts["taken"]++
		default:
			t.Errorf("an operation failed: %v", err)
		}
	}
	if counts["ok"] != 2 || counts["spent"] != n-1 || counts["taken"] != 1 {
		t.Errorf("outcomes %v, want 2 ok (one undo, one change), %d spent, 1 taken", counts, n-1)
	}
}
