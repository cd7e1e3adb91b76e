package mail_test

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

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/mail"
)

// TestMailErrorsForTheCircuit: Send marks its errors as the
// selfservice.Mailer contract asks: a refusal of the recipient wraps
// ErrRecipientRejected (the server works), a failure of the server wraps
// neither sentinel.
func TestMailErrorsForTheCircuit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		to       string
		rcpt     string // reply to RCPT TO; "" for 250
		mail     string // reply to MAIL FROM; "" for 250
		data     string // reply to DATA; "" for 354
		rejected bool   // wraps ErrRecipientRejected
	}{
		{"RCPT 550 unknown mailbox", "nobody@example.com", "550 5.1.1 no such user", "", "", true},
		{"RCPT 553 without an enhanced code", "nobody@example.com", "553 mailbox name not allowed", "", "", true},
		{"RCPT 553 5.6.7 non-ASCII address without SMTPUTF8", "josé@example.com", "553 5.6.7 non-ASCII addresses not permitted", "", "", true},
		{"RCPT 450 mailbox busy", "busy@example.com", "450 4.2.1 try again later", "", "", false},
		{"RCPT 421 shutting down", "new@example.com", "421 4.3.2 shutting down", "", "", false},
		{"MAIL 550 sender refused", "new@example.com", "", "550 5.7.1 sender refused", "", false},
		{"DATA 554 refused", "new@example.com", "", "", "554 5.3.4 message too big", false},
		{"not an address", "new.example.com", "", "", "", true},
		{"control character", "new@example.com\r\nBcc: victim@example.com", "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rcptArg atomic.Value
			s := startSMTP(t, &smtpServer{
				rcpt: func(arg string) string {
					rcptArg.Store(arg)
					if tt.rcpt != "" {
						return tt.rcpt
					}
					return "250 2.1.5 ok"
				},
				on: func(verb string, _ int) action {
					switch {
					case verb == "MAIL" && tt.mail != "":
						return action{reply: tt.mail}
					case verb == "DATA" && tt.data != "":
						return action{reply: tt.data}
					}
					return action{}
				},
			}, "")
			m := newMailer(t, s, nil)
			msg := codeMsg(language.English)
			msg.To = tt.to
			err := m.Send(context.Background(), msg)
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := errors.Is(err, selfservice.ErrRecipientRejected); got != tt.rejected {
				t.Errorf("Send error %q: errors.Is(ErrRecipientRejected) = %v, want %v", err, got, tt.rejected)
			}
			if errors.Is(err, selfservice.ErrNotSent) {
				t.Errorf("Send error %q wraps ErrNotSent", err)
			}
			if strings.Contains(err.Error(), "042917") {
				t.Errorf("Send error %q shows the code", err)
			}
			if arg, _ := rcptArg.Load().(string); tt.rcpt != "" && arg != "TO:<"+tt.to+">" {
				t.Errorf("RCPT %q, want TO:<%s>", arg, tt.to)
			}
		})
	}
}

// TestMailNotSent: a send that ends before it tried the server wraps
// ErrNotSent: one that waited for a session, all held by other mails,
// until its context ended; one after Close; one whose context ended before
// it started. A send that timed out talking to the server does not.
func TestMailNotSent(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{})
	release := sync.OnceFunc(func() { close(stuck) })
	entered := make(chan struct{}, 1)
	s := startSMTP(t, &smtpServer{rcpt: func(arg string) string {
		if arg == "TO:<held@example.com>" {
			entered <- struct{}{}
			<-stuck
		}
		return "250 2.1.5 ok"
	}}, "")
	t.Cleanup(release) // before the server's cleanup waits for its sessions
	m := newMailer(t, s, func(o *mail.Options) { o.MaxConns = 1 })

	held := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		msg := codeMsg(language.English)
		msg.To = "held@example.com"
		held <- m.Send(ctx, msg)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := m.Send(ctx, codeMsg(language.English))
	if !errors.Is(err, selfservice.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a send that waited for the only session: %v, want ErrNotSent and DeadlineExceeded", err)
	}
	// The held send talked to a server that hangs: that is the server's
	// failure.
	err = <-held
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, selfservice.ErrNotSent) {
		t.Errorf("a send held by a hung server: %v, want DeadlineExceeded and not ErrNotSent", err)
	}
	release()

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := m.Send(done, codeMsg(language.English)); !errors.Is(err, selfservice.ErrNotSent) || !errors.Is(err, context.Canceled) {
		t.Errorf("a send whose context ended first: %v, want ErrNotSent and Canceled", err)
	}

	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if err := m.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := send(t, m); !errors.Is(err, selfservice.ErrNotSent) || !errors.Is(err, mail.ErrClosed) {
		t.Errorf("a send after Close: %v, want ErrNotSent and ErrClosed", err)
	}
}

// TestMailRecipientRefusalsKeepCircuitClosed: through the Service, a
// real SMTP server refusing one address after another (550 at RCPT TO)
// never opens the mail circuit: every send reaches the server and is
// answered CAPTCHA.0006, and a good address is served after them.
func TestMailRecipientRefusalsKeepCircuitClosed(t *testing.T) {
	t.Parallel()
	var refused atomic.Int64
	s := startSMTP(t, &smtpServer{rcpt: func(arg string) string {
		if strings.HasPrefix(arg, "TO:<nobody") {
			refused.Add(1)
			return "550 5.1.1 no such user"
		}
		return "250 2.1.5 ok"
	}}, "")
	api := newAPI(t, newMailer(t, s, nil), "old@example.com", "en")
	const n = 8 // more than the 5 failures that open the circuit
	for i := range n {
		r := api.post(t, selfservice.SendCodePath, "en", "",
			fmt.Sprintf(`{"email":"nobody%d@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`, i))
		if r.status != http.StatusInternalServerError || !strings.Contains(r.body, string(i18n.CodeSendFailed)) {
			t.Errorf("send %d to a refused address: %d %s, want 500 %s", i, r.status, r.body, i18n.CodeSendFailed)
		}
	}
	if got := refused.Load(); got != n {
		t.Errorf("the server refused %d recipients, want %d: the circuit opened", got, n)
	}
	r := api.post(t, selfservice.SendCodePath, "en", "", `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.status != http.StatusOK {
		t.Errorf("a good send after the refusals: %d %s", r.status, r.body)
	}
	if got := s.received(); len(got) != 1 || got[0].rcpt != "TO:<new@example.com>" {
		t.Errorf("the server received %d mails, want the one to new@example.com", len(got))
	}
}
