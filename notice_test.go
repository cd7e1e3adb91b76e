package selfservice_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
)

// gatedMailer passes codes on to next and holds every notice until the gate
// opens; entered receives once per notice that reached Send.
type gatedMailer struct {
	next    selfservice.Mailer
	gate    chan struct{}
	entered chan struct{}

	mu   sync.Mutex
	sent int
}

func (m *gatedMailer) Send(ctx context.Context, msg selfservice.Message) error {
	if msg.Kind != selfservice.MailEmailChanged {
		return m.next.Send(ctx, msg)
	}
	m.entered <- struct{}{}
	select {
	case <-m.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent++
	return nil
}

func (m *gatedMailer) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent
}

// change moves user ui to a new address through the API.
func (f *fixture) change(t *testing.T, i int, to string) {
	t.Helper()
	code := f.sendCode(t, to)
	if r := f.update(t, token(t, fmt.Sprintf("u%d", i), nil), "en", to, code); r.Status != http.StatusOK {
		t.Fatalf("change u%d to %s: %s", i, to, r.Raw)
	}
}

// TestNoticeQueue: notices wait in a bounded queue for a fixed number of
// workers; a full queue drops a notice (logged, reported, the change
// stands); Shutdown waits for the queued ones; after it, notices are mailed
// before the response.
func TestNoticeQueue(t *testing.T) {
	t.Parallel()
	logs, events := &testkit.SyncBuffer{}, &eventLog{}
	mailer := &gatedMailer{gate: make(chan struct{}), entered: make(chan struct{}, 16)}
	var users []store.User
	for i := range 5 {
		users = append(users, mustUser(t, fmt.Sprintf("u%d", i), fmt.Sprintf("old%d@example.com", i)))
	}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer = mailer
		c.NoticeWorkers, c.NoticeQueue = 1, 2
		c.Budgets = testkit.LooseBudgets()
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
		c.OnEvent = events.add
	}, users...)
	mailer.next = f.mail

	// The only worker takes the first notice and waits at the gate; two
	// more fill the queue; the fourth finds it full.
	f.change(t, 0, "new0@example.com")
	<-mailer.entered
	for i := 1; i < 4; i++ {
		f.change(t, i, fmt.Sprintf("new%d@example.com", i))
	}
	if got := strings.Count(fmt.Sprint(events.kinds()), string(selfservice.EventNoticeFailed)); got != 1 {
		t.Fatalf("%d notices reported failed, want 1 dropped; events %v", got, events.kinds())
	}
	if !strings.Contains(logs.String(), "notice queue full") {
		t.Errorf("the drop was not logged:\n%s", logs.String())
	}
	for i := range 4 {
		if u, _ := f.users.User(t.Context(), fmt.Sprintf("u%d", i)); u.Email != fmt.Sprintf("new%d@example.com", i) {
			t.Errorf("u%d: email %q, the change must stand", i, u.Email)
		}
	}

	// Shutdown waits for the notices taken and queued.
	shutdown := make(chan error, 1)
	go func() { shutdown <- f.svc.Shutdown(context.Background()) }()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with notices waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(mailer.gate)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := mailer.count(); got != 3 {
		t.Errorf("%d notices mailed when Shutdown returned, want 3", got)
	}

	// After Shutdown a notice goes out before the response.
	f.change(t, 4, "late@example.com")
	if got := mailer.count(); got != 4 {
		t.Errorf("%d notices after a change past Shutdown, want 4, mailed before the answer", got)
	}
}

// A slow mailer: notices that wait start more workers, up to
// NoticeWorkers, so that they are mailed in parallel.
func TestNoticeWorkersGrowWithBacklog(t *testing.T) {
	t.Parallel()
	mailer := &gatedMailer{gate: make(chan struct{}), entered: make(chan struct{}, 16)}
	var users []store.User
	for i := range 8 {
		users = append(users, mustUser(t, fmt.Sprintf("u%d", i), fmt.Sprintf("old%d@example.com", i)))
	}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer = mailer
		c.NoticeWorkers = 3
		c.Budgets = testkit.LooseBudgets()
	}, users...)
	mailer.next = f.mail
	for i := range 8 {
		f.change(t, i, fmt.Sprintf("new%d@example.com", i))
	}
	for n := range 3 {
		select {
		case <-mailer.entered:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d notices in the mailer at once, want 3 (NoticeWorkers)", n)
		}
	}
	select {
	case <-mailer.entered:
		t.Fatal("a fourth notice in the mailer at once; NoticeWorkers is 3")
	case <-time.After(50 * time.Millisecond):
	}
	close(mailer.gate)
	if err := f.svc.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := mailer.count(); got != 8 {
		t.Errorf("%d notices mailed, want 8", got)
	}
}

// TestShutdownHonoursItsContext: notices that cannot be mailed in time do
// not hold Shutdown past its deadline.
func TestShutdownHonoursItsContext(t *testing.T) {
	t.Parallel()
	mailer := &gatedMailer{gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	f := newFixtureWith(t, func(c *selfservice.Config) { c.Mailer = mailer }, mustUser(t, "u0", "old@example.com"))
	mailer.next = f.mail
	f.change(t, 0, "new@example.com")
	<-mailer.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.svc.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown = %v, want the context's deadline", err)
	}
	close(mailer.gate)
	if err := f.svc.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// Workers stop when the queue stays empty: a Service dropped without
// Shutdown leaves no goroutine behind, and one that is idle holds none. Not
// parallel: it counts the process's notice workers.
func TestNoticeWorkersStopWhenIdle(t *testing.T) {
	f := newFixtureWith(t, func(c *selfservice.Config) { c.NoticeWorkers = 3 },
		store.User{ID: "u1", Email: "old@example.com"})
	for i := range 3 {
		email := fmt.Sprintf("new%d@example.com", i)
		code := f.sendCode(t, email)
		if r := f.update(t, token(t, "u1", nil), "en", email, code); r.Status != http.StatusOK {
			t.Fatalf("change %d: %d %s", i, r.Status, r.Raw)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.notices() < 3 || noticeWorkers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %d notices mailed, %d notice workers running", f.notices(), noticeWorkers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// notices counts the notices f's mailer took.
func (f *fixture) notices() int {
	f.mail.mu.Lock()
	defer f.mail.mu.Unlock()
	n := 0
	for _, m := range f.mail.msgs {
		if m.Kind == selfservice.MailEmailChanged {
			n++
		}
	}
	return n
}

// noticeWorkers counts the goroutines of the process that run a notice
// worker.
func noticeWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "selfservice.(*Service).noticeWorker(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
