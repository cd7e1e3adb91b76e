package sqlstore_test

import (
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// BenchmarkOutboxPrice is what the owner's alarm costs a change of email
// on a real database: the floor is the change alone (UpdateEmail, one
// statement); the implementation is the change with its notice and undo
// record in one transaction (ChangeEmail) and the courier's share of the
// notice, a lease and a delete. Each worker flips its own user between two
// addresses; workers run on every core, as requests do.
//
//	go test -run '^$' -bench OutboxPrice -benchtime 100x -count 10 ./store/sqlstore | tee outbox.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' outbox.txt
func BenchmarkOutboxPrice(b *testing.B) {
	for _, e := range []struct {
		name    string
		dialect sqlstore.Dialect
		open    func(b *testing.B) *sql.DB
	}{
		{"sqlite", sqlstore.SQLite, func(b *testing.B) *sql.DB {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "bench.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		}},
		{"postgres", sqlstore.Postgres, func(b *testing.B) *sql.DB { return pgtest.Open(b, "") }},
	} {
		b.Run(e.name, func(b *testing.B) {
			db := e.open(b)
			workers := runtime.GOMAXPROCS(0) * 2
			db.SetMaxOpenConns(workers)
			db.SetMaxIdleConns(workers)
			if err := sqlstore.Migrate(b.Context(), db, e.dialect); err != nil {
				b.Fatal(err)
			}
			s := sqlstore.NewUserStore(db, e.dialect)
			addr := func(w, n int) (string, string) {
				a := fmt.Sprintf("w%d-%d@example.com", w, n)
				return a, a
			}
			// Each worker's user flips between two addresses; the floor and
			// the implementation keep their own users, so that each side's
			// next address is always free.
			type user struct {
				id   string
				flip int
			}
			users := [2][]*user{}
			for side := range 2 {
				for w := range workers {
					u := &user{id: fmt.Sprintf("s%d-w%d", side, w)}
					email, canonical := addr(side*1000+w, 0)
					if err := s.CreateUser(b.Context(), store.User{ID: u.id, Email: email, CanonicalEmail: canonical}); err != nil {
						b.Fatal(err)
					}
					users[side] = append(users[side], u)
				}
			}
			var seq atomic.Int64
			now := time.Now()
			paired.Run(b, paired.Pair{
				Workers: workers,
				Floor: func(w int) error {
					u := users[0][w]
					u.flip ^= 1
					email, canonical := addr(w, u.flip)
					return s.UpdateEmail(b.Context(), u.id, email, canonical)
				},
				Impl: func(w int) error {
					u := users[1][w]
					u.flip ^= 1
					email, canonical := addr(1000+w, u.flip)
					hash := make([]byte, 32)
					_, _ = rand.Read(hash)
					at := now.Add(time.Duration(seq.Add(1)))
					err := s.ChangeEmail(b.Context(), store.EmailChange{
						UserID: u.id, Email: email, Canonical: canonical, Now: at,
						Notice:          store.Notice{UserID: u.id, NewEmail: "n***@example.com", ChangedAt: at, Sealed: hash},
						RevertHash:      hash,
						RevertExpiresAt: at.Add(7 * 24 * time.Hour),
					})
					if err != nil {
						return err
					}
					// The courier's share: lease one notice, delete it.
					ns, err := s.LeaseNotices(b.Context(), 1, at, time.Minute)
					if err != nil {
						return err
					}
					for _, n := range ns {
						if err := s.DeleteNotice(b.Context(), n.ID); err != nil {
							return err
						}
					}
					return nil
				},
			})
		})
	}
}
