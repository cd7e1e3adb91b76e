package mail_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/mail"
)

// waitFor polls cond until it holds, for at most five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
	}
}

// send sends one code mail with a generous deadline.
func send(t *testing.T, m *mail.SMTPMailer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Send(ctx, codeMsg(language.English))
}

// mustSend sends n code mails one after the other.
func mustSend(t *testing.T, m *mail.SMTPMailer, n int) {
	t.Helper()
	for i := range n {
		if err := send(t, m); err != nil {
			t.Fatalf("mail %d: %v", i+1, err)
		}
	}
}

// perSession counts the mails s received on each session, index 0 for
// session 1.
func perSession(s *smtpServer) []int {
	var counts []int
	for _, r := range s.received() {
		for len(counts) < r.session {
			counts = append(counts, 0)
		}
		counts[r.session-1]++
	}
	return counts
}

// A session carries many mails: one session for N mails, a new one after
// MaxMessagesPerConn, each full one ended with a QUIT.
func TestPoolOneSessionForManyMails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     int // MaxMessagesPerConn
		mails   int
		want    []int // mails per session
		wantOff int   // the sessions that must have said QUIT
	}{
		{"default", 0, 20, []int{20}, 0},
		{"three a session", 3, 10, []int{3, 3, 3, 1}, 3},
		{"one a session", 1, 3, []int{1, 1, 1}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTP(t, &smtpServer{}, "")
			m := newMailer(t, s, func(o *mail.Options) { o.MaxMessagesPerConn = tt.max })
			mustSend(t, m, tt.mails)
			if open, idle := mail.Sessions(m); open != idle || open > 1 {
				t.Errorf("the mailer holds %d sessions, %d idle; want at most one, idle", open, idle)
			}
			if got := perSession(s); !equalInts(got, tt.want) {
				t.Errorf("mails per session %v, want %v", got, tt.want)
			}
			sessions, _ := s.seen()
			for i, ss := range sessions {
				if full := i < tt.wantOff; ss.quit != full {
					t.Errorf("session %d said QUIT: %v, want %v", i+1, ss.quit, full)
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// 50 concurrent sends never open more than MaxConns sessions, at once or
// in all, and every mail arrives.
func TestPoolBounded(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		maxConns int
		want     int
	}{
		{"default", 0, mail.DefaultMaxConns},
		{"one", 1, 1},
		{"three", 3, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A slow acceptance keeps every session busy, so that the
			// sends pile up behind them.
			s := startSMTP(t, &smtpServer{on: func(verb string, _ int) action {
				if verb == "." {
					return action{delay: 5 * time.Millisecond}
				}
				return action{}
			}}, "")
			m := newMailer(t, s, func(o *mail.Options) { o.MaxConns = tt.maxConns })
			const n = 50
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					errs <- m.Send(ctx, codeMsg(language.English))
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if got := len(s.received()); got != n {
				t.Errorf("the server received %d mails, want %d", got, n)
			}
			sessions, peak := s.seen()
			if peak > tt.want || len(sessions) > tt.want {
				t.Errorf("%d sessions, %d open at once; want at most %d", len(sessions), peak, tt.want)
			}
			if tt.want > 1 && peak < 2 {
				t.Errorf("at most %d session open at once: the sends did not run side by side", peak)
			}
		})
	}
}

// A session idle for IdleTimeout is closed with a QUIT; the next mail
// opens a new one.
func TestPoolIdleTimeout(t *testing.T) {
	t.Parallel()
	s := startSMTP(t, &smtpServer{}, "")
	m := newMailer(t, s, func(o *mail.Options) { o.IdleTimeout = 100 * time.Millisecond })
	start := time.Now()
	mustSend(t, m, 2)
	waitFor(t, "the idle session is closed with a QUIT", func() bool {
		sessions, _ := s.seen()
		return len(sessions) == 1 && sessions[0].quit
	})
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("the session was closed %v after the first mail, before IdleTimeout", took)
	}
	mustSend(t, m, 1)
	if got := perSession(s); !equalInts(got, []int{2, 1}) {
		t.Errorf("mails per session %v, want [2 1]", got)
	}
}

// A server that closes an idle session (with a 421, as servers do) costs
// a reconnect, never a failed send: used within a second the session
// fails at MAIL, before DATA, and the mail is sent again on a new one;
// after a longer rest the NOOP before the transaction finds it closed.
func TestPoolReconnectsAfterServerDrop(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		rest time.Duration // between the server's drop and the next mail
	}{
		{"used at once", 0},
		{"used after a rest", 1100 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTP(t, &smtpServer{idle: 50 * time.Millisecond}, "")
			m := newMailer(t, s, nil)
			mustSend(t, m, 1)
			waitFor(t, "the server drops the idle session", func() bool {
				sessions, _ := s.seen()
				return sessions[0].ended
			})
			time.Sleep(tt.rest)
			if err := send(t, m); err != nil {
				t.Fatalf("Send after the server dropped the session: %v", err)
			}
			if got := perSession(s); !equalInts(got, []int{1, 1}) {
				t.Errorf("mails per session %v, want [1 1]", got)
			}
		})
	}
}

// On a reused session, a failure before the server accepted DATA is sent
// again once on a new session; after DATA it is not, since the server may
// hold the mail and a second attempt could deliver a code twice. A
// permanent refusal is not tried again either.
func TestPoolRetriesOnlyBeforeData(t *testing.T) {
	t.Parallel()
	const closing = "421 4.3.2 fake shutting down"
	tests := []struct {
		name      string
		verb      string // where the second transaction of session 1 fails
		act       action
		retried   bool
		wantMails int // what the server holds after the two sends
	}{
		{"MAIL answered 421", "MAIL", action{reply: closing, hangup: true}, true, 2},
		{"MAIL met with EOF", "MAIL", action{hangup: true}, true, 2},
		{"RCPT answered 421", "RCPT", action{reply: closing, hangup: true}, true, 2},
		{"RCPT answered 451", "RCPT", action{reply: "451 4.3.0 fake try again"}, true, 2},
		{"RCPT refused for good", "RCPT", action{reply: "550 5.1.1 fake no such user"}, false, 1},
		{"DATA answered 421", "DATA", action{reply: closing, hangup: true}, true, 2},
		{"DATA met with EOF", "DATA", action{hangup: true}, true, 2},
		{"end of data met with EOF", ".", action{hangup: true}, false, 2},
		{"end of data answered 421", ".", action{reply: closing, hangup: true}, false, 2},
		{"end of data answered 451", ".", action{reply: "451 4.3.0 fake local error"}, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			seen := 0
			s := startSMTP(t, &smtpServer{on: func(verb string, session int) action {
				if session != 1 || verb != tt.verb {
					return action{}
				}
				mu.Lock()
				defer mu.Unlock()
				if seen++; seen == 2 {
					return tt.act
				}
				return action{}
			}}, "")
			m := newMailer(t, s, nil)
			mustSend(t, m, 1)
			err := send(t, m)
			if tt.retried && err != nil {
				t.Fatalf("Send = %v, want success on a new session", err)
			}
			if !tt.retried && err == nil {
				t.Fatal("Send succeeded, want the failure reported")
			}
			if got := len(s.received()); got != tt.wantMails {
				t.Errorf("the server holds %d mails, want %d", got, tt.wantMails)
			}
			sessions, _ := s.seen()
			if want := map[bool]int{true: 2, false: 1}[tt.retried]; len(sessions) != want {
				t.Errorf("%d sessions, want %d", len(sessions), want)
			}
			// Whatever happened, the failed session is not used again.
			if open, _ := mail.Sessions(m); open != map[bool]int{true: 1, false: 0}[tt.retried] {
				t.Errorf("the mailer holds %d sessions after the failure", open)
			}
			mustSend(t, m, 1)
			if r := s.received(); r[len(r)-1].session == 1 {
				t.Error("the next mail went on the session that failed")
			}
		})
	}
}

// A new session that fails is not tried again: the retry is for sessions
// that went stale in the pool.
func TestPoolNoRetryOnNewSession(t *testing.T) {
	t.Parallel()
	s := startSMTP(t, &smtpServer{on: func(verb string, _ int) action {
		if verb == "MAIL" {
			return action{reply: "421 4.3.2 fake busy", hangup: true}
		}
		return action{}
	}}, "")
	m := newMailer(t, s, nil)
	if err := send(t, m); err == nil {
		t.Fatal("Send succeeded")
	}
	if sessions, _ := s.seen(); len(sessions) != 1 {
		t.Errorf("%d sessions, want 1", len(sessions))
	}
}

// A send whose context ends mid-transaction returns at once, closes its
// session, does not retry, and the session never serves again.
func TestPoolCancelMidSend(t *testing.T) {
	t.Parallel()
	for _, verb := range []string{"MAIL", "RCPT", "DATA", "."} {
		t.Run(verb, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			seen := 0
			s := startSMTP(t, &smtpServer{on: func(v string, session int) action {
				if session != 1 || v != verb {
					return action{}
				}
				mu.Lock()
				defer mu.Unlock()
				if seen++; seen == 2 {
					return action{hang: true}
				}
				return action{}
			}}, "")
			m := newMailer(t, s, func(o *mail.Options) { o.Timeout = time.Minute })
			mustSend(t, m, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := m.Send(ctx, codeMsg(language.English))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Send = %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Send returned after %v, want about 200ms", took)
			}
			if open, idle := mail.Sessions(m); open != 0 || idle != 0 {
				t.Errorf("the mailer holds %d sessions, %d idle, after the cancelled send; want none", open, idle)
			}
			waitFor(t, "the cancelled session is closed", func() bool {
				sessions, _ := s.seen()
				return sessions[0].ended
			})
			sessions, _ := s.seen()
			if len(sessions) != 1 || sessions[0].quit {
				t.Errorf("sessions %+v, want the one, closed without a QUIT", sessions)
			}
			mustSend(t, m, 1)
			if r := s.received(); r[len(r)-1].session != 2 {
				t.Errorf("the next mail went on session %d, want a new one", r[len(r)-1].session)
			}
		})
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	t.Run("idle sessions say QUIT", func(t *testing.T) {
		t.Parallel()
		s := startSMTP(t, &smtpServer{}, "")
		m := newMailer(t, s, nil)
		mustSend(t, m, 1)
		if err := m.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if open, _ := mail.Sessions(m); open != 0 {
			t.Errorf("%d sessions open after Close", open)
		}
		if sessions, _ := s.seen(); !sessions[0].quit {
			t.Error("the idle session was closed without a QUIT")
		}
		if err := send(t, m); !errors.Is(err, mail.ErrClosed) {
			t.Errorf("Send after Close = %v, want ErrClosed", err)
		}
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("never used", func(t *testing.T) {
		t.Parallel()
		m := newMailer(t, startSMTP(t, &smtpServer{}, ""), nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
	t.Run("waits for a send in flight", func(t *testing.T) {
		t.Parallel()
		s := startSMTP(t, &smtpServer{on: func(verb string, _ int) action {
			if verb == "." {
				return action{delay: 300 * time.Millisecond}
			}
			return action{}
		}}, "")
		m := newMailer(t, s, nil)
		sent := make(chan error, 1)
		go func() { sent <- send(t, m) }()
		waitFor(t, "the mail reaches the server", func() bool { return len(s.received()) == 1 })
		if err := m.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// The session says QUIT only once its mail is through: Close
		// waited for the send.
		if sessions, _ := s.seen(); len(sessions) != 1 || !sessions[0].quit {
			t.Errorf("sessions %+v when Close returned, want the one closed with a QUIT", sessions)
		}
		if err := <-sent; err != nil {
			t.Errorf("the send in flight failed: %v", err)
		}
	})
	t.Run("gives up when its context ends", func(t *testing.T) {
		t.Parallel()
		s := startSMTP(t, &smtpServer{on: func(verb string, _ int) action {
			return action{hang: verb == "."}
		}}, "")
		m := newMailer(t, s, func(o *mail.Options) { o.Timeout = time.Minute })
		sent := make(chan error, 1)
		go func() { sent <- send(t, m) }()
		waitFor(t, "the mail reaches the server", func() bool { return len(s.received()) == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := m.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want an error wrapping context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Close returned after %v, want about 200ms", took)
		}
		if err := <-sent; err == nil {
			t.Error("the send whose connection Close closed succeeded")
		}
		waitFor(t, "the session is closed", func() bool {
			sessions, _ := s.seen()
			return sessions[0].ended
		})
	})
}

// Notices use at most MaxConns-1 sessions: with every one of them stuck,
// a code mail still goes through at once.
func TestPoolCodesNotBehindNotices(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{})
	release := sync.OnceFunc(func() { close(stuck) })
	s := startSMTP(t, &smtpServer{rcpt: func(arg string) string {
		if arg == "TO:<old.address@example.com>" {
			<-stuck // a notice, until release
		}
		return "250 2.1.5 ok"
	}}, "")
	m := newMailer(t, s, func(o *mail.Options) { o.MaxConns = 3 })
	const notices = 4
	errs := make(chan error, notices)
	var wg sync.WaitGroup
	defer func() {
		release()
		wg.Wait()
	}()
	for range notices {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- m.Send(ctx, noticeMsg(language.English))
		})
	}
	waitFor(t, "the notices take their sessions", func() bool {
		sessions, _ := s.seen()
		return len(sessions) >= 2
	})
	time.Sleep(20 * time.Millisecond) // room for a notice to take a third
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.Send(ctx, codeMsg(language.English)); err != nil {
		t.Fatalf("the code mail behind stuck notices: %v", err)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("notice: %v", err)
		}
	}
	if got := len(s.received()); got != notices+1 {
		t.Errorf("the server received %d mails, want %d", got, notices+1)
	}
	if _, peak := s.seen(); peak > 3 {
		t.Errorf("%d sessions open at once, want at most MaxConns (3)", peak)
	}
}
