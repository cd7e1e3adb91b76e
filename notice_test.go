package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// noticeMailer passes codes on to next and handles notices as its fields
// say: it fails the first failures of them, then holds each until the gate
// opens (when gate is set) and keeps it. entered receives once per notice
// that reached Send, when set.
type noticeMailer struct {
	next    selfservice.Mailer
	gate    chan struct{}
	entered chan struct{}

	mu       sync.Mutex
	failures int // notices still to fail
	attempts int
	sent     []selfservice.Message
}

func (m *noticeMailer) Send(ctx context.Context, msg selfservice.Message) error {
	if msg.Kind != selfservice.MailEmailChanged {
		return m.next.Send(ctx, msg)
	}
	m.mu.Lock()
	m.attempts++
	if m.failures > 0 {
		m.failures--
		m.mu.Unlock()
		return errors.New("smtp: 421 try again later")
	}
	m.mu.Unlock()
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, msg)
	return nil
}

func (m *noticeMailer) delivered() []selfservice.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]selfservice.Message(nil), m.sent...)
}

// waitFor polls cond every few milliseconds for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// change moves user ui to a new address through the API.
func (f *fixture) change(t *testing.T, i int, to string) {
	t.Helper()
	code := f.sendCode(t, to)
	if r := f.update(t, token(t, fmt.Sprintf("u%d", i), nil), "en", to, code); r.Status != http.StatusOK {
		t.Fatalf("change u%d to %s: %s", i, to, r.Raw)
	}
}

// TestNoticeToTheOldAddress: the notice goes to the old address, with the
// new one masked, an undo token, and the user's stored language, never
// the language of the request that made the change; a user without one
// gets every language (language.Und).
func TestNoticeToTheOldAddress(t *testing.T) {
	t.Parallel()
	zh := mustUser(t, "u0", "Old.Zero@example.com")
	zh.Language = "zh-CN"
	f := newFixture(t, zh, mustUser(t, "u1", "old1@example.com"))
	for i, to := range []string{"new0@example.com", "new1@example.com"} {
		code := f.sendCode(t, to)
		// The request asks for English: the attacker's choice, not the owner's.
		if r := f.update(t, token(t, fmt.Sprintf("u%d", i), nil), "en", to, code); r.Status != http.StatusOK {
			t.Fatalf("change u%d: %s", i, r.Raw)
		}
	}
	byTo := map[string]selfservice.Message{}
	for _, n := range f.waitNotices(t, 2) {
		byTo[n.To] = n
	}
	for _, tt := range []struct {
		to, masked string
		lang       language.Tag
	}{
		{"Old.Zero@example.com", "n***@example.com", language.MustParse("zh-CN")},
		{"old1@example.com", "n***@example.com", language.Und},
	} {
		n, ok := byTo[tt.to]
		if !ok {
			t.Errorf("no notice to %s; got %v", tt.to, byTo)
			continue
		}
		if n.NewEmail != tt.masked || n.Language != tt.lang || n.ChangedAt.IsZero() || len(n.RevertToken) != 43 {
			t.Errorf("notice to %s = %+v; want NewEmail %s, Language %v, a ChangedAt and a 43-character undo token", tt.to, n, tt.masked, tt.lang)
		}
	}
}

// TestNoticeRetriedUntilDelivered: a mail server that refuses notices for
// a while delays them; they are retried with backoff and delivered once
// it accepts, and nothing is reported as given up.
func TestNoticeRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	mailer := &noticeMailer{failures: 3}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer = mailer
		c.OnEvent = events.add
	}, mustUser(t, "u0", "old@example.com"))
	mailer.next = f.mail
	f.change(t, 0, "new@example.com")
	waitFor(t, "the notice is delivered", func() bool { return len(mailer.delivered()) == 1 })
	if n, _, _ := f.users.NoticeBacklog(t.Context()); n != 0 {
		t.Errorf("outbox holds %d notices after delivery, want 0", n)
	}
	mailer.mu.Lock()
	attempts := mailer.attempts
	mailer.mu.Unlock()
	if attempts != 4 {
		t.Errorf("%d attempts, want 3 failed and 1 delivered", attempts)
	}
	for _, k := range events.kinds() {
		if k == selfservice.EventNoticeFailed {
			t.Errorf("a notice reported failed although it was delivered: %v", events.kinds())
		}
	}
}

// TestNoticeGivenUp: a notice that cannot be delivered within NoticeMaxAge
// is given up: logged as an error, reported once as EventNoticeFailed,
// and removed from the outbox.
func TestNoticeGivenUp(t *testing.T) {
	t.Parallel()
	logs, events := &testkit.SyncBuffer{}, &eventLog{}
	mailer := &noticeMailer{failures: 1 << 30}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer = mailer
		c.NoticeMaxAge = 150 * time.Millisecond
		c.OnEvent = events.add
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	}, mustUser(t, "u0", "old@example.com"))
	mailer.next = f.mail
	f.change(t, 0, "new@example.com")
	waitFor(t, "the notice is given up", func() bool { return events.count(selfservice.EventNoticeFailed) == 1 })
	if n, _, _ := f.users.NoticeBacklog(t.Context()); n != 0 {
		t.Errorf("outbox holds %d notices after giving up, want 0", n)
	}
	if !strings.Contains(logs.String(), "given up") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the give-up was not logged as an error:\n%s", logs.String())
	}
	time.Sleep(100 * time.Millisecond)
	if got := events.count(selfservice.EventNoticeFailed); got != 1 {
		t.Errorf("EventNoticeFailed reported %d times, want once", got)
	}
}

// TestNoticeOutlivesAnOutage: a notice whose outbox could not be read for
// longer than NoticeMaxAge is tried when it comes back, and delivered: it
// is given up only after a send was tried and failed past that age.
func TestNoticeOutlivesAnOutage(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.NoticeMaxAge = 50 * time.Millisecond
		c.OnEvent = events.add
	}, mustUser(t, "u0", "old@example.com"))
	f.fusers.failLeases(errors.New("database unreachable"))
	f.change(t, 0, "new@example.com")
	time.Sleep(150 * time.Millisecond)
	f.fusers.failLeases(nil)
	if got := f.waitNotices(t, 1); got[0].To != "old@example.com" {
		t.Errorf("notice to %q, want the old address", got[0].To)
	}
	if n := events.count(selfservice.EventNoticeFailed); n != 0 {
		t.Errorf("EventNoticeFailed reported %d times for a notice that was delivered", n)
	}
}

// TestShutdownWithAHungStore: Shutdown returns soon after its context
// ends even when the outbox hangs: the courier's lease ends with it, and
// the backlog it logs gets a second.
func TestShutdownWithAHungStore(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, nil, mustUser(t, "u0", "old@example.com"))
	f.fusers.hangOutbox(true)
	defer f.fusers.hangOutbox(false)
	time.Sleep(50 * time.Millisecond) // the courier is in a lease by now
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := f.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Its context, a second for the backlog, and room for a loaded machine.
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Shutdown took %v with a hung store, its context 100ms", took)
	}
}

// TestNoticeWorkers: at most NoticeWorkers notices are in the mailer at
// once, and a backlog is drained as fast as they finish, not one poll
// interval at a time.
func TestNoticeWorkers(t *testing.T) {
	t.Parallel()
	mailer := &noticeMailer{gate: make(chan struct{}), entered: make(chan struct{}, 16)}
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
		case <-time.After(10 * time.Second):
			t.Fatalf("%d notices in the mailer at once, want 3 (NoticeWorkers)", n)
		}
	}
	select {
	case <-mailer.entered:
		t.Fatal("a fourth notice in the mailer at once; NoticeWorkers is 3")
	case <-time.After(50 * time.Millisecond):
	}
	close(mailer.gate)
	waitFor(t, "8 notices delivered", func() bool { return len(mailer.delivered()) == 8 })
}

// TestShutdownKeepsNotices: Shutdown with a hung mail server returns by
// its deadline, without error, and loses nothing: the notice stays in the
// outbox, due at once, and the next Service on the store delivers it.
func TestShutdownKeepsNotices(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	hung := &noticeMailer{gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	defer close(hung.gate)
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer = hung
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}, mustUser(t, "u0", "old@example.com"))
	hung.next = f.mail
	f.change(t, 0, "new@example.com")
	<-hung.entered

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := f.svc.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil: the notice is kept", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown took %v with a 100 ms deadline", took)
	}
	if n, _, _ := f.users.NoticeBacklog(t.Context()); n != 1 {
		t.Fatalf("outbox holds %d notices after Shutdown, want the 1 not delivered", n)
	}
	if !strings.Contains(logs.String(), "notices=1") {
		t.Errorf("Shutdown did not log the notice it left:\n%s", logs.String())
	}

	// The next start, on the same store, delivers it.
	next := &noticeMailer{next: f.mail}
	cfg := f.cfg
	cfg.Mailer = next
	svc, err := selfservice.NewWithFastCourier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	waitFor(t, "the next Service delivers the notice", func() bool { return len(next.delivered()) == 1 })
	if got := next.delivered()[0]; got.To != "old@example.com" || got.RevertToken == "" {
		t.Errorf("delivered %+v", got)
	}
}

// TestRetriedChangeKeepsItsNotice: a client that lost the answer to a
// change retries it; the retry succeeds as already done and the notice of
// the first attempt is delivered, once.
func TestRetriedChangeKeepsItsNotice(t *testing.T) {
	t.Parallel()
	f := newFixture(t, mustUser(t, "u0", "old@example.com"))
	code := f.sendCode(t, "new@example.com")
	tok := token(t, "u0", nil)
	for range 2 {
		if r := f.update(t, tok, "en", "new@example.com", code); r.Status != http.StatusOK {
			t.Fatalf("change: %s", r.Raw)
		}
	}
	f.waitNotices(t, 1)
	time.Sleep(50 * time.Millisecond)
	if got := len(f.notices()); got != 1 {
		t.Errorf("%d notices, want 1", got)
	}
}

// TestChangeFloodCannotSilenceTheAlarm replays the attack: an
// account with codes for many addresses of its own changes its email over
// and over to bury the notices, then takes the victim's account. The
// change budget refuses the flood (429, Retry-After, the right code not
// spent) and the victim's notice is delivered.
func TestChangeFloodCannotSilenceTheAlarm(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(c *selfservice.Config) {
		b := testkit.LooseBudgets()
		b.ChangesPerUser = nil // the default
		c.Budgets = b
	}, mustUser(t, "attacker", "a0@attacker.example"), mustUser(t, "victim", "victim@example.com"))
	attacker := token(t, "attacker", nil)
	refused := 0
	for i := 1; i <= 50; i++ {
		to := fmt.Sprintf("a%d@attacker.example", i)
		code := f.sendCode(t, to)
		r := f.update(t, attacker, "en", to, code)
		switch {
		case r.Status == http.StatusOK:
		case r.Status == http.StatusTooManyRequests && r.Code == string(i18n.CodeChangesLimited):
			refused++
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", r.Raw)
			}
			if i == 50 {
				// The refused right code is not spent: it works once the
				// budget allows (here: at once, with the budget loosened).
				continue
			}
		default:
			t.Fatalf("change %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if refused != 45 {
		t.Errorf("%d of 50 changes refused, want 45 (5 a day)", refused)
	}
	code := f.sendCode(t, "taken@attacker.example")
	if r := f.update(t, token(t, "victim", nil), "en", "taken@attacker.example", code); r.Status != http.StatusOK {
		t.Fatalf("takeover: %s", r.Raw)
	}
	waitFor(t, "the victim's notice is delivered", func() bool {
		for _, n := range f.notices() {
			if n.To == "victim@example.com" {
				return true
			}
		}
		return false
	})
}

// TestCourierStopsWithTheService: a Service dropped without Shutdown is
// collected and its courier stops. Not parallel: it counts the process's
// couriers.
func TestCourierStopsWithTheService(t *testing.T) {
	before := couriers()
	func() {
		svc, err := selfservice.New(selfservice.Config{
			Users: memstore.NewUserStore(), Codes: memstore.NewCodeStore(), Limiter: memstore.NewLimiter(),
			Clients: memstore.NewClientRegistry(), Mailer: &recordingMailer{}, Captcha: selfservice.AllowAllCaptcha{},
			CodeSecret: make([]byte, selfservice.MinCodeSecretLen),
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = svc
	}()
	deadline := time.Now().Add(10 * time.Second)
	for couriers() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d couriers run after the Service was dropped, %d before", couriers(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// couriers counts the goroutines of the process that run a courier.
func couriers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "selfservice.(*courier).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
