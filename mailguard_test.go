package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	send := func(to string) reply {
		return f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
			`{"email":`+quote(to)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	}
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
		wg.Go(func() { failed("a held send", send(fmt.Sprintf("held%d@example.com", i))) })
	}
	for range 3 {
		<-mailer.entered
	}
	for i := range 3 {
		wg.Go(func() { failed("a send that waited for a slot", send(fmt.Sprintf("busy%d@example.com", i))) })
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
	failed("a send with the circuit open", send("again@example.com"))
	if got := mailer.calls.Load(); got != before {
		t.Errorf("the mailer was tried with the circuit open")
	}

	// The server comes back: after the cool-down one probe closes the
	// circuit. The address refused while it was open takes a code at
	// once: a refused send cost no budget (one a minute per address).
	mailer.failing.Store(false)
	waitFor(t, "the circuit closes after the server is back", func() bool {
		time.Sleep(coolDown / 4)
		r := send("again@example.com")
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
	send := func(to string) reply {
		return f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
			`{"email":`+quote(to)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	}
	var wg sync.WaitGroup
	wg.Go(func() { send("held@example.com") })
	<-mailer.entered
	for i := range 4 {
		wg.Go(func() { send(fmt.Sprintf("waiting%d@example.com", i)) })
	}
	waitFor(t, "four sends wait for the slot", func() bool { return f.svc.MailWaiting() == 4 })
	start := time.Now()
	r := send("beyond@example.com")
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
	send := func(to string) reply {
		return f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
			`{"email":`+quote(to)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	}
	var wg sync.WaitGroup
	wg.Go(func() { send("first@example.com") })
	<-left
	<-entered
	if r := send("second@example.com"); r.Status != http.StatusOK {
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
