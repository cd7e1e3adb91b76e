package selfservice

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
)

// mailBreakerFailures failed code mails in a row open the mail circuit:
// send-code answers at once for Config.MailCoolDown, then lets one mail
// through to probe, closing again when it succeeds.
const mailBreakerFailures = 5

// errMailUnavailable is why a send is refused without trying the mailer:
// the circuit is open, or no mail slot came free within MailTimeout.
var errMailUnavailable = errors.New("selfservice: the mailer is unavailable (circuit open, or every send slot busy for MailTimeout)")

// mailGuard keeps a slow or dead mail server to its own requests: send-code
// waits for a mail slot and the mailer at most MailTimeout in all, at most
// MailConcurrency code mails are in flight, and a circuit breaker
// (sony/gobreaker) stops trying a mailer that keeps failing. A refused send
// costs no budget.
type mailGuard struct {
	mailer  Mailer
	timeout time.Duration
	slots   chan struct{}
	breaker *gobreaker.CircuitBreaker[struct{}]
}

func newMailGuard(cfg *Config) *mailGuard {
	g := &mailGuard{mailer: cfg.Mailer, timeout: cfg.MailTimeout, slots: make(chan struct{}, cfg.MailConcurrency)}
	logger := cfg.Logger
	g.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "mailer",
		MaxRequests: 1,
		Timeout:     cfg.MailCoolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= mailBreakerFailures },
		// A client that went away says nothing about the mail server; the
		// guard's own timeout (DeadlineExceeded) does.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
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

// acquire takes a mail slot for a send about to be charged. It refuses at
// once when the circuit is open; when every slot is busy it waits for one,
// so that a burst of sends to a healthy mail server queues rather than
// fails. The wait and the send share one MailTimeout: the context returned
// carries that deadline, and release frees the slot and the context.
func (g *mailGuard) acquire(ctx context.Context) (_ context.Context, release func(), err error) {
	if g.breaker.State() == gobreaker.StateOpen {
		return nil, nil, errMailUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	select {
	case g.slots <- struct{}{}:
		return ctx, func() { <-g.slots; cancel() }, nil
	case <-ctx.Done():
		cancel()
		return nil, nil, errMailUnavailable
	}
}

// send mails msg through the circuit, within ctx's deadline (acquire's).
func (g *mailGuard) send(ctx context.Context, msg Message) error {
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
