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
// requests only. At most MailConcurrency sends wait for it, the others are
// answered at once; each waits at most MailTimeout; after 5 failures in a
// row the circuit opens and sends are answered without trying; a refused
// send costs no budget; once the server answers, the circuit closes by
// itself. Update-email does not wait for the mail server.
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

	// Three sends hold every mail slot; three more are answered at once,
	// without reaching the mailer.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { failed("a held send", send(fmt.Sprintf("held%d@example.com", i))) })
	}
	for range 3 {
		<-mailer.entered
	}
	for i := range 3 {
		failed("a send with every slot busy", send(fmt.Sprintf("busy%d@example.com", i)))
	}
	if got := mailer.calls.Load(); got != 4 {
		t.Errorf("the mailer saw %d sends, want 4: the first code and 3 (MailConcurrency)", got)
	}
	// Update-email does not wait for the mail server.
	if r := f.update(t, token(t, "u", nil), "en", "new@example.com", code); r.Status != http.StatusOK {
		t.Errorf("change while the mail server hangs: %d %s", r.Status, r.Raw)
	}
	close(mailer.release)
	wg.Wait()

	// Two more failures make five in a row: the circuit opens, and a send
	// is refused without trying the mailer.
	mailer.hung.Store(false)
	mailer.failing.Store(true)
	for i := range 2 {
		failed("a failing send", send(fmt.Sprintf("fail%d@example.com", i)))
	}
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
