package selfservice

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/store"
)

// courierTiming is how the courier paces itself; tests shorten it.
type courierTiming struct {
	// poll is how often an idle courier looks for notices that became
	// due: retries, and notices of other replicas whose lease ended.
	poll time.Duration
	// linger is how long a courier woken by a change waits for more
	// changes before it leases: on a busy server one lease then takes a
	// batch, instead of every change waking a thread.
	linger time.Duration
	// retryMin and retryMax bound the wait before a failed notice is
	// tried again: retryMin doubled per attempt, capped at retryMax, and
	// jittered down to half, so that notices failed by one outage do not
	// return together.
	retryMin, retryMax time.Duration
}

var defaultCourierTiming = courierTiming{
	poll:     time.Second,
	linger:   10 * time.Millisecond,
	retryMin: time.Second,
	retryMax: 30 * time.Second,
}

// courier delivers the notices of the Outbox (the user store) to old
// addresses, at least once: every change records its notice in the same
// atomic step as the change, and the courier leases due notices, mails them
// and deletes them once sent. A failed send is retried with capped,
// jittered exponential backoff until the notice is NoticeMaxAge old; then
// it is given up, logged, reported as EventNoticeFailed and counted. Every
// replica runs one on the shared store; a lease keeps the others off a
// notice while it is being mailed, and a crashed holder's notices come back
// when their lease ends.
//
// The courier holds none of the Service, so that a Service dropped without
// Shutdown can be collected, which stops its courier (runtime.AddCleanup in
// New).
type courier struct {
	outbox  store.Outbox
	mailer  Mailer
	mail    *mailGuard // its circuit: an open one holds the notices back
	keys    secretKeys
	tel     *telemetry
	logger  *slog.Logger
	onEvent func(context.Context, Event)
	now     func() time.Time
	timeout time.Duration // per send
	maxAge  time.Duration
	workers int
	timing  courierTiming

	wake chan struct{} // a change recorded a notice
	// armed is set by the first change since the last round, which alone
	// wakes the courier: waking a goroutine blocked in select wakes a
	// thread on the idle core, which would cost every change more CPU than
	// its request's own work without the signature check.
	armed    atomic.Bool
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when run has returned
	stopOnce sync.Once
	// sends is the context of every send; cancelSends ends the sends still
	// running when Shutdown runs out of time.
	sends       context.Context
	cancelSends context.CancelFunc

	lastLeaseErr time.Time // run's goroutine only
	// gauges are the backlog's gauges, unregistered by stop.
	gauges metric.Registration
}

func newCourier(cfg *Config, keys secretKeys, mail *mailGuard, tel *telemetry, timing courierTiming) *courier {
	c := &courier{
		outbox: cfg.Users, mailer: cfg.Mailer, mail: mail, keys: keys, tel: tel,
		logger: cfg.Logger, onEvent: cfg.OnEvent, now: cfg.Now,
		timeout: cfg.NoticeTimeout, maxAge: cfg.NoticeMaxAge, workers: cfg.NoticeWorkers,
		timing: timing,
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.sends, c.cancelSends = context.WithCancel(context.Background())
	var err error
	if c.gauges, err = tel.observeState(c.outbox, mail); err != nil {
		otel.Handle(err)
	}
	return c
}

// notify wakes the courier after a change recorded a notice. It never
// blocks: one pending wake-up covers any number of changes.
func (c *courier) notify() {
	if !c.armed.CompareAndSwap(false, true) {
		return // a round is coming, and will see this change's notice
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// lease is how long a leased notice stays with this courier: longer than a
// send may take, so that in the normal case no other replica mails it too.
func (c *courier) lease() time.Duration { return c.timeout + 10*time.Second }

// run leases and mails notices until stop, with at most workers sends at
// once. A round leases as many notices as there are free workers; rounds
// run at the poll interval, shortly after a change, and whenever a worker
// frees up while notices are waiting (a full lease says so).
func (c *courier) run() {
	defer close(c.done)
	var (
		wg       sync.WaitGroup
		free     = make(chan struct{}, c.workers) // a send finished
		running  = 0
		backlog  = false
		round    = true // at once: notices left by an earlier run
		timer    = time.NewTimer(c.timing.poll)
		deadline time.Time // when timer fires
	)
	defer timer.Stop()
	defer wg.Wait()
	for {
		if round {
			round, backlog = false, false
			// Changes from now on arm the courier again; those before
			// recorded their notices before this round's leases.
			c.armed.Store(false)
			for running < c.workers {
				want := c.workers - running
				notices := c.leaseDue(want)
				for _, n := range notices {
					running++
					wg.Go(func() {
						c.deliver(n)
						free <- struct{}{}
					})
				}
				if backlog = len(notices) == want; !backlog {
					break
				}
			}
			deadline = time.Now().Add(c.timing.poll)
			timer.Reset(c.timing.poll)
		}
		select {
		case <-c.quit:
			return
		case <-free:
			running--
			round = backlog
		case <-c.wake:
			// Let more changes gather, but never postpone a round: a
			// steady stream of changes must not starve the courier.
			if time.Until(deadline) > c.timing.linger {
				deadline = time.Now().Add(c.timing.linger)
				timer.Reset(c.timing.linger)
			}
		case <-timer.C:
			round = true
		}
	}
}

// leaseDue leases up to max due notices. A store failure is logged at most
// once a minute (the courier polls every second) and leases nothing.
func (c *courier) leaseDue(max int) []store.Notice {
	// The sends' context: a lease stuck in a hung store ends when
	// Shutdown runs out of time.
	ctx, cancel := context.WithTimeout(c.sends, c.timeout)
	defer cancel()
	now := c.now()
	notices, err := c.outbox.LeaseNotices(ctx, max, now, c.lease())
	if err != nil {
		if now.Sub(c.lastLeaseErr) >= time.Minute {
			c.lastLeaseErr = now
			c.logger.Error("selfservice: reading the notice outbox failed; notices wait in it", "error", err)
		}
		return nil
	}
	return notices
}

// deliver mails one leased notice, then deletes it, schedules its retry, or
// gives it up. Store calls use a context of their own: a notice mailed while
// Shutdown runs out of time must still be marked.
func (c *courier) deliver(n store.Notice) {
	msg := Message{Kind: MailEmailChanged, To: n.To, Language: language.Und, NewEmail: n.NewEmail, ChangedAt: n.ChangedAt}
	if n.Language != "" {
		if tag, err := language.Parse(n.Language); err == nil {
			msg.Language = tag
		}
	}
	if n.Sealed != nil {
		token, err := c.keys.open(n.Sealed, n.UserID)
		if err != nil {
			// The alarm matters more than its undo: it goes without.
			c.logger.Warn("selfservice: the notice's undo token cannot be opened (was its code secret retired?); it is mailed without",
				"user", n.UserID, "error", err)
		}
		msg.RevertToken = token
	}
	var err error
	tried := !c.mail.open()
	if tried {
		send, cancelSend := context.WithTimeout(c.sends, c.timeout)
		err = c.mailer.Send(send, msg)
		cancelSend()
		tried = c.sends.Err() == nil
	} else {
		// Code mails keep failing: wait with the others rather than try.
		err = errMailUnavailable
	}
	store, cancel := c.storeContext()
	defer cancel()
	if err == nil {
		if err := c.outbox.DeleteNotice(store, n.ID); err != nil {
			c.logger.Warn("selfservice: a delivered notice could not be deleted; it will be mailed again", "user", n.UserID, "error", err)
		}
		c.tel.noticeDelivered(store)
		return
	}
	// Given up only after a send was tried and failed: an outage of the
	// store, of every replica or of the mail circuit longer than
	// NoticeMaxAge must not drop notices that were never tried.
	if age := c.now().Sub(n.ChangedAt); tried && age > c.maxAge {
		c.giveUp(store, n, age, err, msg.RevertToken)
		return
	}
	at := c.now().Add(c.backoff(n.Attempts))
	if c.sends.Err() != nil {
		// Shutdown ran out of time: due again at the next start.
		at = c.now()
	}
	if rerr := c.outbox.RetryNotice(store, n.ID, at); rerr != nil {
		c.logger.Warn("selfservice: a failed notice could not be rescheduled; it is retried when its lease ends", "user", n.UserID, "error", rerr)
	}
	c.logger.Warn("selfservice: notice to the old address failed; it stays in the outbox and is retried",
		"user", n.UserID, "attempts", n.Attempts, "retry_in", at.Sub(c.now()).Round(time.Millisecond),
		"error", redact(err, []string{n.To}, msg.RevertToken))
	c.tel.noticeNotSent(store, noticeSendFailed)
}

// giveUp deletes n, past NoticeMaxAge after a failed send, and reports it.
func (c *courier) giveUp(ctx context.Context, n store.Notice, age time.Duration, err error, token string) {
	if derr := c.outbox.DeleteNotice(ctx, n.ID); derr != nil {
		c.logger.Error("selfservice: a notice past NoticeMaxAge could not be deleted; it is tried again", "user", n.UserID, "error", derr)
		return
	}
	c.logger.Error("selfservice: notice to the old address given up: not delivered within NoticeMaxAge",
		"user", n.UserID, "to", MaskEmail(n.To), "attempts", n.Attempts, "age", age.Round(time.Second),
		"error", redact(err, []string{n.To}, token))
	c.tel.noticeNotSent(ctx, noticeExpired)
	c.emit(ctx, Event{Kind: EventNoticeFailed, UserID: n.UserID, Email: MaskEmail(n.To)})
}

// storeContext is the context of a store call that marks a notice after
// its send: a deadline of its own, since a send may have used up half a
// minute, and not the sends' context, since a notice mailed while Shutdown
// runs out of time must still be marked. Once Shutdown has run out of time,
// only a second: the mark is then a courtesy (an unmarked notice is due
// again at the next start), not a reason to hold the process.
func (c *courier) storeContext() (context.Context, context.CancelFunc) {
	if c.sends.Err() != nil {
		return context.WithTimeout(context.Background(), time.Second)
	}
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// backoff is the wait after a notice's attempts-th failed attempt.
func (c *courier) backoff(attempts int) time.Duration {
	d := c.timing.retryMax
	if attempts < 30 {
		d = min(c.timing.retryMin<<max(attempts-1, 0), c.timing.retryMax)
	}
	return d/2 + rand.N(d/2+1)
}

// emit reports e as the Service's events are reported.
func (c *courier) emit(ctx context.Context, e Event) {
	e.Time = c.now()
	emitEvent(ctx, c.logger, c.onEvent, slog.LevelWarn, e)
}

// stop ends run: no notice is leased any more, and it returns once the
// sends in flight have ended. Idempotent.
func (c *courier) stop() {
	c.stopOnce.Do(func() {
		close(c.quit)
		if c.gauges != nil {
			_ = c.gauges.Unregister()
		}
	})
}

// Shutdown stops the courier: no notice is leased any more, and it waits
// for the notices being mailed, or until ctx is done, when it cancels
// their sends (they stay in the outbox, due at once). Notices not
// delivered stay in the outbox for the next start (the count is logged):
// a durable store such as store/sqlstore keeps them, an in-memory one
// loses them with the process. Call it after http.Server.Shutdown: a
// change made later still records its notice, for the next start. A store
// that hangs holds it about two seconds past ctx's end at most: the
// courier's lease ends with ctx, and marking a notice or reading the
// backlog then gets a second each.
func (s *Service) Shutdown(ctx context.Context) error {
	c := s.courier
	c.stop()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.cancelSends()
		<-c.done
	}
	c.cancelSends()
	// The backlog is only logged: past ctx's end, a second for it.
	wait := 5 * time.Second
	if ctx.Err() != nil {
		wait = time.Second
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	n, oldest, err := c.outbox.NoticeBacklog(bctx)
	switch {
	case err != nil:
		c.logger.Warn("selfservice: shut down; the notice outbox could not be read", "error", err)
	case n > 0:
		c.logger.Warn("selfservice: shut down with notices not yet delivered; they stay in the outbox for the next start (an in-memory store loses them with the process)",
			"notices", n, "oldest", oldest.UTC().Format(time.RFC3339))
	}
	return nil
}
