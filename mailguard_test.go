package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/testkit"
)

// guardMailer passes mails to next, or, while hung, holds each until its
// context ends or release is closed, or, while failing, fails at once. It
// counts the sends that reached it; entered receives once per held send.
type guardMailer struct {
	hung, failing atomic.Bool
	calls         atomic.Int64
	entered       chan struct{}
	release       chan struct{}
	next          selfservice.Mailer
}

func (m *guardMailer) Send(ctx context.Context, msg selfservice.Message) error {
	m.calls.Add(1)
	switch {
	case m.hung.Load():
		m.entered <- struct{}{}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.release:
			return errors.New("smtp: connection reset")
		}
	case m.failing.Load():
		return errors.New("smtp: 421 service not available")
	}
	return m.next.Send(ctx, msg)
}

// TestHungMailServer: a mail server that hangs costs send-code its own
// requests only. At most MailConcurrency sends are in the mailer, the
// others wait for a slot; each waits at most MailTimeout in all; after 5
// failures in a row the circuit opens and sends are answered without
// trying; a refused send costs no budget; once the server answers, the
// circuit closes by itself. Update-email does not wait for the mail server.
func TestHungMailServer(t *testing.T) {
	t.Parallel()
	mailer := &guardMailer{entered: make(chan struct{}, 8), release: make(chan struct{})}
	const coolDown = 200 * time.Millisecond
	f := newFixtureWith(t, func(c *selfservice.Config) {
		mailer.next = c.Mailer
		c.Mailer = mailer
		c.MailTimeout, c.MailConcurrency, c.MailCoolDown = time.Minute, 3, coolDown
		b := testkit.LooseBudgets()
		b.SendsPerEmail = nil // the default: 1 a minute
		c.Budgets = b
	}, mustUser(t, "u", "old@example.com"))
	failed := func(what string, r reply) {
		t.Helper()
		if r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeSendFailed) {
			t.Errorf("%s: %d %s, want 500 %s", what, r.Status, r.Raw, i18n.CodeSendFailed)
		}
	}
	code := f.sendCode(t, "new@example.com")
	mailer.hung.Store(true)

	// Three sends hold every mail slot; three more wait for a slot and do
	// not reach the mailer while the three hold them.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { failed("a held send", f.send(t, fmt.Sprintf("held%d@example.com", i))) })
	}
	for range 3 {
		<-mailer.entered
	}
	for i := range 3 {
		wg.Go(func() { failed("a send that waited for a slot", f.send(t, fmt.Sprintf("busy%d@example.com", i))) })
	}
	time.Sleep(50 * time.Millisecond) // time for a wrong send to reach the mailer
	if got := mailer.calls.Load(); got != 4 {
		t.Errorf("the mailer saw %d sends, want 4: the first code and 3 (MailConcurrency)", got)
	}
	// Update-email does not wait for the mail server (its notice is the
	// courier's, which the hung server holds too).
	if r := f.update(t, token(t, "u", nil), "en", "new@example.com", code); r.Status != http.StatusOK {
		t.Errorf("change while the mail server hangs: %d %s", r.Status, r.Raw)
	}
	// The held sends fail; the waiting ones take their slots and fail
	// too, until five failures in a row open the circuit.
	close(mailer.release)
	wg.Wait()

	// The circuit is open: a send is refused without trying the mailer.
	mailer.hung.Store(false)
	mailer.failing.Store(true)
	before := mailer.calls.Load()
	failed("a send with the circuit open", f.send(t, "again@example.com"))
	if got := mailer.calls.Load(); got != before {
		t.Errorf("the mailer was tried with the circuit open")
	}

	// The server comes back: after the cool-down one probe closes the
	// circuit. The address refused while it was open takes a code at
	// once: a refused send cost no budget (one a minute per address).
	mailer.failing.Store(false)
	waitFor(t, "the circuit closes after the server is back", func() bool {
		time.Sleep(coolDown / 4)
		r := f.send(t, "again@example.com")
		if r.Status == http.StatusTooManyRequests {
			t.Fatalf("a send refused with the circuit open was charged: %s", r.Raw)
		}
		return r.Status == http.StatusOK
	})
}

// TestMailSlotsQueue: a burst of sends four times MailConcurrency to a
// healthy mail server is served, not refused: sends wait for a slot, and
// the mailer never holds more than MailConcurrency at once.
func TestMailSlotsQueue(t *testing.T) {
	t.Parallel()
	var inFlight, most atomic.Int64
	slow := selfservice.MailerFunc(func(ctx context.Context, msg selfservice.Message) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		return nil
	})
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer, c.MailConcurrency = slow, 2
		c.Budgets = testkit.LooseBudgets()
	})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
				fmt.Sprintf(`{"email":"burst%d@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`, i))
			if r.Status != http.StatusOK {
				t.Errorf("send %d of a burst: %d %s", i, r.Status, r.Raw)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 2 {
		t.Errorf("the mailer held %d mails at once, MailConcurrency is 2", m)
	}
}

// TestMailWaitersBounded: with a hung mail server, four sends a slot wait
// for one; a send beyond them is answered at once, without waiting and
// without a budget charge.
func TestMailWaitersBounded(t *testing.T) {
	t.Parallel()
	mailer := &guardMailer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	mailer.hung.Store(true)
	f := newFixtureWith(t, func(c *selfservice.Config) {
		mailer.next = c.Mailer
		c.Mailer, c.MailTimeout, c.MailConcurrency = mailer, time.Minute, 1
		c.Budgets = testkit.LooseBudgets()
	})
	var wg sync.WaitGroup
	wg.Go(func() { f.send(t, "held@example.com") })
	<-mailer.entered
	for i := range 4 {
		wg.Go(func() { f.send(t, fmt.Sprintf("waiting%d@example.com", i)) })
	}
	waitFor(t, "four sends wait for the slot", func() bool { return f.svc.MailWaiting() == 4 })
	start := time.Now()
	r := f.send(t, "beyond@example.com")
	if r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeSendFailed) {
		t.Errorf("a send beyond the waiters: %d %s, want 500 %s", r.Status, r.Raw, i18n.CodeSendFailed)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("a send beyond the waiters took %v: it waited", took)
	}
	mailer.hung.Store(false)
	close(mailer.release)
	wg.Wait()
}

// TestMailWaitIsNotTheSendsTime: a send that waited for a slot still gives
// the mailer the whole MailTimeout, so that queueing behind a healthy but
// busy mail server never looks like a failing one to the circuit.
func TestMailWaitIsNotTheSendsTime(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	entered := make(chan struct{}, 1)
	left := make(chan time.Duration, 2) // what each send had left at the mailer
	mailer := selfservice.MailerFunc(func(ctx context.Context, msg selfservice.Message) error {
		d, _ := ctx.Deadline()
		left <- time.Until(d)
		if msg.To == "first@example.com" {
			entered <- struct{}{}
			time.Sleep(timeout * 6 / 10) // holds the only slot
		}
		return nil
	})
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer, c.MailTimeout, c.MailConcurrency = mailer, timeout, 1
		c.Budgets = testkit.LooseBudgets()
	})
	var wg sync.WaitGroup
	wg.Go(func() { f.send(t, "first@example.com") })
	<-left
	<-entered
	if r := f.send(t, "second@example.com"); r.Status != http.StatusOK {
		t.Errorf("the send that waited for the slot: %d %s", r.Status, r.Raw)
	}
	// It waited about 0.6 s: had the wait come out of its MailTimeout, it
	// would have had about 0.4 s left.
	if d := <-left; d < timeout*8/10 {
		t.Errorf("the send that waited had %v of its MailTimeout %v left at the mailer", d, timeout)
	}
	wg.Wait()
}

// TestMailTimeout: a send waits for a hung mail server at most
// MailTimeout.
func TestMailTimeout(t *testing.T) {
	t.Parallel()
	mailer := &guardMailer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	mailer.hung.Store(true)
	const timeout = 200 * time.Millisecond
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer, c.MailTimeout = mailer, timeout
	})
	start := time.Now()
	r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Code != string(i18n.CodeSendFailed) {
		t.Errorf("send to a hung mail server: %d %s", r.Status, r.Raw)
	}
	// Generous: the bound is what matters, not the scheduler's delay.
	if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
		t.Errorf("the send took %v with MailTimeout %v", took, timeout)
	}
}

// scriptedMailer answers by the recipient's local part: "nobody..." is
// refused for its recipient, "down..." fails as a failing server,
// "queued..." gives up waiting for a connection of its own, anything else
// is delivered. It counts the sends that reached it.
type scriptedMailer struct{ calls atomic.Int64 }

func (m *scriptedMailer) Send(_ context.Context, msg selfservice.Message) error {
	m.calls.Add(1)
	switch {
	case strings.HasPrefix(msg.To, "nobody"):
		return fmt.Errorf("send failed: 550 5.1.1 no such user: %w", selfservice.ErrRecipientRejected)
	case strings.HasPrefix(msg.To, "down"):
		return errors.New("send failed: 421 4.3.2 service not available")
	case strings.HasPrefix(msg.To, "queued"):
		return fmt.Errorf("waiting for a connection: %w: %w", context.DeadlineExceeded, selfservice.ErrNotSent)
	}
	return nil
}

// newScriptedFixture serves a scriptedMailer with a cool-down longer than
// any test, so that an open circuit stays open, and the default budget of
// one send a minute per address.
func newScriptedFixture(t *testing.T) (*fixture, *scriptedMailer) {
	t.Helper()
	mailer := &scriptedMailer{}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Mailer, c.MailCoolDown = mailer, time.Hour
		b := testkit.LooseBudgets()
		b.SendsPerEmail = nil // the default: 1 a minute
		c.Budgets = b
	})
	return f, mailer
}

// sendTo asks for a code for to and reports whether the send reached the
// mailer.
func sendTo(t *testing.T, f *fixture, mailer *scriptedMailer, to string) (r reply, tried bool) {
	t.Helper()
	before := mailer.calls.Load()
	r = f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":`+quote(to)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	return r, mailer.calls.Load() != before
}

// TestMailRecipientRejectedKeepsCircuitClosed: a send that the mail
// server refuses for its recipient (ErrRecipientRejected) shows the
// server working: the client picks the address, so refusals in a row
// never open the circuit, and one resets a run of failures. Each is
// answered CAPTCHA.0006 and keeps its budget charge.
func TestMailRecipientRejectedKeepsCircuitClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		to   []string
	}{
		{"refused recipients in a row", []string{
			"nobody0", "nobody1", "nobody2", "nobody3", "nobody4", "nobody5", "nobody6", "nobody7"}},
		{"a refused recipient between failures", []string{
			"down0", "down1", "down2", "down3", "nobody0", "down4", "down5", "down6", "down7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, mailer := newScriptedFixture(t)
			for _, local := range tt.to {
				r, tried := sendTo(t, f, mailer, local+"@example.com")
				if r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeSendFailed) {
					t.Errorf("%s: %d %s, want 500 %s", local, r.Status, r.Raw, i18n.CodeSendFailed)
				}
				if !tried {
					t.Errorf("%s: refused without trying the mailer: the circuit opened", local)
				}
			}
			if r, tried := sendTo(t, f, mailer, "ok@example.com"); r.Status != http.StatusOK || !tried {
				t.Errorf("a good send after them: %d %s (mailer tried: %v)", r.Status, r.Raw, tried)
			}
			// The server was asked: the refused send stays charged.
			if r, _ := sendTo(t, f, mailer, "nobody0@example.com"); r.Status != http.StatusTooManyRequests || r.Code != string(i18n.CodeSendLimited) {
				t.Errorf("the refused address again at once: %d %s, want 429 %s", r.Status, r.Raw, i18n.CodeSendLimited)
			}
		})
	}
}

// TestMailNotSentLeavesCircuitAndBudget: a send the mailer gave up before
// trying the server (ErrNotSent, such as waiting for one of its own
// connections until MailTimeout) says nothing of the server: the circuit
// neither counts it as a failure nor lets it reset a run of failures, and
// the send costs no budget. It is answered CAPTCHA.0006.
func TestMailNotSentLeavesCircuitAndBudget(t *testing.T) {
	t.Parallel()
	t.Run("not sent in a row", func(t *testing.T) {
		t.Parallel()
		f, mailer := newScriptedFixture(t)
		for i := range 8 {
			r, tried := sendTo(t, f, mailer, fmt.Sprintf("queued%d@example.com", i))
			if r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeSendFailed) {
				t.Errorf("send %d: %d %s, want 500 %s", i, r.Status, r.Raw, i18n.CodeSendFailed)
			}
			if !tried {
				t.Errorf("send %d: refused without trying the mailer: the circuit opened", i)
			}
		}
		// No budget spent: the same address is tried again at once
		// (one send a minute per address).
		if r, tried := sendTo(t, f, mailer, "queued0@example.com"); r.Status == http.StatusTooManyRequests || !tried {
			t.Errorf("the same address again at once: %d %s (mailer tried: %v): the send was charged", r.Status, r.Raw, tried)
		}
		if r, tried := sendTo(t, f, mailer, "ok@example.com"); r.Status != http.StatusOK || !tried {
			t.Errorf("a good send after them: %d %s (mailer tried: %v)", r.Status, r.Raw, tried)
		}
	})
	t.Run("not sent between failures", func(t *testing.T) {
		t.Parallel()
		f, mailer := newScriptedFixture(t)
		for _, local := range []string{"down0", "down1", "down2", "queued0", "down3", "queued1", "down4"} {
			if _, tried := sendTo(t, f, mailer, local+"@example.com"); !tried {
				t.Fatalf("%s: refused without trying the mailer", local)
			}
		}
		// Five failures of the server in a row, the sends not sent
		// aside: the circuit is open.
		if r, tried := sendTo(t, f, mailer, "ok@example.com"); tried || r.Code != string(i18n.CodeSendFailed) {
			t.Errorf("after five failures: %d %s (mailer tried: %v), want the circuit open", r.Status, r.Raw, tried)
		}
	})
}
