package selfservice_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/pgtest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/mail"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// BenchmarkCourierDelivery is the courier's delivery rate (issue 19): b.N
// notices recorded as changes record them, then a Service started on the
// store, timed until its Outbox is empty. Every notice is leased, sealed
// token opened, mailed and deleted, with the default four workers. The
// "direct" rows are the floor: the same mails sent straight through the
// mailer by four goroutines, no store. Mailers: discard (the courier's own
// cost) and Mailpit over SMTP (SELFSERVICE_TEST_MAILPIT_SMTP).
//
//	go test -run '^$' -bench CourierDelivery -benchtime 2000x -count 6 . | tee courier.txt
//	benchstat -col /via courier.txt
func BenchmarkCourierDelivery(b *testing.B) {
	mailers := []struct {
		name string
		new  func(b *testing.B) selfservice.Mailer
	}{
		{"discard", func(*testing.B) selfservice.Mailer {
			return selfservice.MailerFunc(func(context.Context, selfservice.Message) error { return nil })
		}},
		{"smtp", func(b *testing.B) selfservice.Mailer {
			host, port, err := net.SplitHostPort(testenv.Lookup(b, testenv.MailpitSMTP))
			if err != nil {
				b.Fatal(err)
			}
			p, _ := strconv.Atoi(port)
			m, err := mail.New(mail.Options{
				Host: host, Port: p, TLS: mail.TLSNone, From: "no-reply@example.com",
				RevertURL: "https://app.example.com/undo",
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close(context.Background()) })
			return m
		}},
	}
	stores := []struct {
		name string
		open func(b *testing.B) seedableUsers
	}{
		{"memory", func(*testing.B) seedableUsers { return memstore.NewUserStore() }},
		{"postgres", func(b *testing.B) seedableUsers {
			db := pgtest.Open(b, "")
			// Sized as sqlstore's documentation says: database/sql keeps
			// two idle connections unless told, and the courier's four
			// workers would open a new one for most statements.
			db.SetMaxOpenConns(8)
			db.SetMaxIdleConns(8)
			if err := sqlstore.Migrate(b.Context(), db, sqlstore.Postgres); err != nil {
				b.Fatal(err)
			}
			return sqlstore.NewUserStore(db, sqlstore.Postgres)
		}},
	}
	for _, m := range mailers {
		b.Run("mailer="+m.name+"/via=direct", func(b *testing.B) {
			benchDirectMail(b, m.new(b))
		})
		for _, s := range stores {
			b.Run("mailer="+m.name+"/via=courier-"+s.name, func(b *testing.B) {
				benchCourier(b, s.open(b), m.new(b))
			})
		}
	}
}

// seedableUsers is a ChangeStore the benchmark can add users to.
type seedableUsers interface {
	store.ChangeStore
	CreateUser(context.Context, store.User) error
}

// benchNotice is the mail of the i-th notice, as the courier builds it.
func benchNotice(i int) selfservice.Message {
	return selfservice.Message{
		Kind: selfservice.MailEmailChanged, To: fmt.Sprintf("old%d@example.com", i),
		Language: language.English, NewEmail: "n***@example.com",
		ChangedAt: time.Now(), RevertToken: selfservice.NewRevertToken(),
	}
}

func benchDirectMail(b *testing.B, m selfservice.Mailer) {
	const workers = 4 // Config.NoticeWorkers' default
	msgs := make(chan selfservice.Message, b.N)
	for i := range b.N {
		msgs <- benchNotice(i)
	}
	close(msgs)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for msg := range msgs {
				if err := m.Send(b.Context(), msg); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "notices/s")
}

func benchCourier(b *testing.B, users seedableUsers, m selfservice.Mailer) {
	ctx := b.Context()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	now := time.Now()
	for i := range b.N {
		id := "u" + strconv.Itoa(i)
		old := fmt.Sprintf("old%d@example.com", i)
		if err := users.CreateUser(ctx, store.User{ID: id, Email: old, CanonicalEmail: old, Language: "en"}); err != nil {
			b.Fatal(err)
		}
		sealed, err := selfservice.SealRevertToken(secret, selfservice.NewRevertToken(), id)
		if err != nil {
			b.Fatal(err)
		}
		hash := make([]byte, 32)
		_, _ = rand.Read(hash)
		to := fmt.Sprintf("new%d@example.com", i)
		err = users.ChangeEmail(ctx, store.EmailChange{
			UserID: id, Email: to, Canonical: to, Now: now,
			Notice:     store.Notice{UserID: id, NewEmail: selfservice.MaskEmail(to), ChangedAt: now, Sealed: sealed},
			RevertHash: hash, RevertExpiresAt: now.Add(time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// A failed send is retried after a second or more: the benchmark
	// stops at the first instead of timing the backoff.
	failed := make(chan error, 1)
	counted := selfservice.MailerFunc(func(ctx context.Context, msg selfservice.Message) error {
		err := m.Send(ctx, msg)
		if err != nil {
			select {
			case failed <- err:
			default:
			}
		}
		return err
	})
	b.ResetTimer()
	start := time.Now()
	// The courier starts with the Service and runs a round at once.
	svc, err := selfservice.New(selfservice.Config{
		Users: users, Codes: memstore.NewCodeStore(), Limiter: memstore.NewLimiter(),
		Clients: memstore.NewClientRegistry(), Mailer: counted, Captcha: selfservice.AllowAllCaptcha{},
		Identify: func(*http.Request) (selfservice.Identity, error) {
			return selfservice.Identity{}, errors.New("not served")
		},
		CodeSecret: secret,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	for {
		n, _, err := users.NoticeBacklog(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case err := <-failed:
			b.Fatalf("a notice failed: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "notices/s")
}
