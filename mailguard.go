package selfservice

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// mailBreakerFailures failed code mails in a row open the mail circuit:
// send-code answers at once for Config.MailCoolDown, then lets one mail
// through to probe, closing again when it succeeds.
const mailBreakerFailures = 5

// errMailUnavailable is why a send is refused without trying the mailer:
// the circuit is open, or no mail slot came free in time.
var errMailUnavailable = errors.New("selfservice: the mailer is unavailable (circuit open, or every send slot busy)")

// mailGuard keeps a slow or dead mail server to its own requests: at most
// MailConcurrency code mails are in flight and four times as many sends
// wait for one to finish, each wait and each send lasts at most
// MailTimeout, and a circuit breaker (sony/gobreaker) stops trying a
// mailer that keeps failing. A refused send costs no budget.
type mailGuard struct {
	mailer  Mailer
	timeout time.Duration
	slots   chan struct{}
	waiting atomic.Int64 // sends waiting for a slot
	breaker *gobreaker.CircuitBreaker[struct{}]
}

func newMailGuard(cfg *Config) *mailGuard {
	g := &mailGuard{mailer: cfg.Mailer, timeout: cfg.MailTimeout, slots: make(chan struct{}, cfg.MailConcurrency)}
	logger := cfg.Logger
	g.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         "mailer",
		MaxRequests:  1,
		Timeout:      cfg.MailCoolDown,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= mailBreakerFailures },
		IsSuccessful: mailServerWorks,
		IsExcluded:   saysNothingOfMailServer,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			logger.Log(context.Background(), level, "selfservice: mail circuit "+to.String(),
				"from", from.String(), "open_for", cfg.MailCoolDown)
		},
	})
	return g
}

// mailServerWorks reports a send that shows the mail server working: one
// that went through, or one refused for its recipient, which the client
// chose. Counting such refusals as failures would let anyone open the
// circuit with addresses the server refuses; they reset the run of
// failures instead.
func mailServerWorks(err error) bool {
	return err == nil || errors.Is(err, ErrRecipientRejected)
}

// saysNothingOfMailServer reports a send that the circuit leaves out of
// its counts: a client that went away, or a send the mailer never started
// (such as one that waited for a connection of the mailer's own, held by
// other mails, until MailTimeout). The guard's own timeout while the
// mailer talks to the server (DeadlineExceeded) does count.
func saysNothingOfMailServer(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, ErrNotSent)
}

// mailWaitersPerSlot bounds the sends that wait for a mail slot: four a
// slot, so that a burst of a few times MailConcurrency queues, and a hung
// mail server holds at most five times MailConcurrency requests until its
// failures open the circuit.
const mailWaitersPerSlot = 4

// acquire takes a mail slot for a send about to be charged. It refuses at
// once when the circuit is open or when mailWaitersPerSlot sends a slot
// wait already; otherwise, when every slot is busy, it waits for one at
// most MailTimeout, so that a burst of sends to a healthy mail server
// queues rather than fails. release frees the slot.
func (g *mailGuard) acquire(ctx context.Context) (release func(), err error) {
	if g.breaker.State() == gobreaker.StateOpen {
		return nil, errMailUnavailable
	}
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	default:
	}
	if g.waiting.Add(1) > int64(mailWaitersPerSlot*cap(g.slots)) {
		g.waiting.Add(-1)
		return nil, errMailUnavailable
	}
	defer g.waiting.Add(-1)
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	case <-t.C:
		return nil, errMailUnavailable
	case <-ctx.Done():
		return nil, errMailUnavailable
	}
}

func (g *mailGuard) release() { <-g.slots }

// send mails msg through the circuit, waiting for the mailer at most
// MailTimeout: the time spent waiting for a slot is not taken from the
// send, so that queueing never looks like a failing mail server to the
// circuit.
func (g *mailGuard) send(ctx context.Context, msg Message) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	_, err := g.breaker.Execute(func() (struct{}, error) { return struct{}{}, g.mailer.Send(ctx, msg) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errMailUnavailable
	}
	return err
}

// open reports whether the circuit is open: the courier then leaves its
// notices for later rather than add to a mail server's troubles.
func (g *mailGuard) open() bool { return g.breaker.State() == gobreaker.StateOpen }

// state is the circuit's state as the gauge reports it: 0 closed, 1
// half-open, 2 open.
func (g *mailGuard) state() int64 {
	switch g.breaker.State() {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}
