package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/ciamkit/selfservice"
)

// checkAfter is how long a connection may sit idle and still be used
// without a NOOP first. A connection used a moment ago is alive or fails
// before DATA, which send retries; after a longer rest the server may have
// dropped it, and a NOOP finds out before a transaction starts.
const checkAfter = time.Second

// pool holds the mailer's SMTP sessions: at most MaxConns open at once,
// idle ones reused most recently used first and closed after IdleTimeout.
//
// A session is held by one send at a time. The slots channel bounds the
// sends that hold or open a session; since a send opens one only when none
// is idle, the sessions never outnumber the slots. Closing one, which
// takes a round trip for the QUIT, also holds a slot, so that the server
// never sees more than MaxConns. Notices take a slot of notices first, one
// fewer than MaxConns: a code mail, which someone is waiting for, never
// queues behind notices alone.
type pool struct {
	m       *SMTPMailer
	slots   chan struct{}
	notices chan struct{} // nil when MaxConns is 1
	done    chan struct{} // closed by Close

	mu      sync.Mutex
	idle    []*conn            // most recently used last
	conns   map[*conn]struct{} // every open session: idle, busy or closing
	busy    int                // sends under way, which may be opening a session
	closed  bool               // Close was called
	drained chan struct{}      // closed once closed with no session open and no send under way
	reaper  *time.Timer        // closes expired idle sessions; nil until the first is idle
	armed   bool               // reaper is set to fire
}

// conn is one SMTP session.
type conn struct {
	client *gomail.Client // its settings and the dialer that made raw
	smtp   *smtp.Client
	raw    net.Conn // the TCP connection, under TLS if any: closing it stops any exchange
	sent   int      // mails accepted on it
	since  time.Time
}

func newPool(m *SMTPMailer) *pool {
	p := &pool{
		m:       m,
		slots:   make(chan struct{}, m.opts.MaxConns),
		done:    make(chan struct{}),
		conns:   make(map[*conn]struct{}),
		drained: make(chan struct{}),
	}
	if m.opts.MaxConns > 1 {
		p.notices = make(chan struct{}, m.opts.MaxConns-1)
	}
	return p
}

// send delivers out on a pooled session, or on a new one when none is
// idle. A failure on a reused session before the server accepted DATA is
// tried once more on a new session: a server that dropped an idle client
// costs a reconnect, not a failed send. After DATA it is not, since the
// server may hold the mail: a second attempt could deliver the code twice.
func (p *pool) send(ctx context.Context, out *gomail.Msg, code bool) error {
	if !code && p.notices != nil {
		if err := wait(ctx, p.notices, p.done); err != nil {
			return err
		}
		defer func() { <-p.notices }()
	}
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	c, err := p.take(ctx)
	if err != nil {
		return err
	}
	reused := c.sent > 0
	err = p.deliver(ctx, c, out)
	if err == nil || !reused || !beforeData(err) || out.IsDelivered() || ctx.Err() != nil {
		return err
	}
	if c, err = p.open(ctx); err != nil {
		return err
	}
	return p.deliver(ctx, c, out)
}

// wait takes a place in sem, until ctx ends or the pool is closed.
func wait(ctx context.Context, sem chan struct{}, closed <-chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		// Other mails held every session: the server was not tried.
		return mark(fmt.Errorf("waiting for a connection: %w", ctx.Err()), selfservice.ErrNotSent)
	case <-closed:
		return ErrClosed
	}
}

// acquire waits for a slot, and counts the caller busy.
func (p *pool) acquire(ctx context.Context) error {
	if err := wait(ctx, p.slots, p.done); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.slots
		return ErrClosed
	}
	p.busy++
	return nil
}

func (p *pool) release() {
	p.mu.Lock()
	p.busy--
	p.settle()
	p.mu.Unlock()
	<-p.slots
}

// settle closes drained once Close has nothing left to wait for. The
// caller holds mu.
func (p *pool) settle() {
	if p.closed && p.busy == 0 && len(p.conns) == 0 {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
}

// take returns the most recently used idle session, checked with a NOOP
// if it rested longer than checkAfter, or a new one. A session that fails
// the check is closed and a new one opened: nothing was sent on it.
func (p *pool) take(ctx context.Context) (*conn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return p.open(ctx)
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		err := error(nil)
		if time.Since(c.since) >= checkAfter {
			err = p.check(ctx, c)
		}
		if err == nil {
			return c, nil
		}
		p.drop(c)
		if ctx.Err() != nil {
			// The check failed because ctx ended: the next idle
			// session would fail it too, and wrongly be dropped.
			return nil, fmt.Errorf("health check failed: %w", err)
		}
	}
}

// check sends a NOOP on c, giving up when ctx ends.
func (p *pool) check(ctx context.Context, c *conn) error {
	stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
	err := c.smtp.UpdateDeadline(p.m.opts.Timeout)
	if err == nil {
		err = c.smtp.Noop()
	}
	if !stop() && err == nil {
		err = net.ErrClosed
	}
	return err
}

// open connects, says EHLO, upgrades to TLS and logs in as the mailer's
// options say, and registers the session. go-mail bounds each step with
// Timeout but watches the context only while dialling: closing the
// connection when ctx ends is what keeps a slow server from holding the
// send past the caller's deadline.
func (p *pool) open(ctx context.Context) (*conn, error) {
	c := &conn{}
	var stop func() bool
	dial := func(dctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(dctx, network, p.m.addr)
		if err != nil {
			return nil, err
		}
		c.raw = raw
		stop = context.AfterFunc(ctx, func() { _ = raw.Close() })
		if p.m.opts.TLS != TLSImplicit {
			return raw, nil
		}
		// A *tls.Conn, unwrapped, tells go-mail's SMTP client that the
		// connection is encrypted.
		tc := tls.Client(raw, p.m.opts.TLSConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, err
		}
		return tc, nil
	}
	client, err := gomail.NewClient(p.m.opts.Host, slices.Concat(p.m.client, []gomail.Option{gomail.WithDialContextFunc(dial)})...)
	if err != nil {
		return nil, err
	}
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if stop != nil && !stop() && err == nil {
		err = net.ErrClosed // ctx ended as the session came up
	}
	if err != nil {
		if c.raw != nil {
			// go-mail leaves the connection open when EHLO, STARTTLS
			// or AUTH fails.
			_ = c.raw.Close()
		}
		return nil, fmt.Errorf("dial failed: %w", err)
	}
	c.client, c.smtp = client, sc
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// deliver sends out on c and puts c back in the pool, or closes it: after
// a failure, after its MaxMessagesPerConn-th mail, once the pool is
// closed, and when ctx ended during the send, which closed the connection
// under it.
func (p *pool) deliver(ctx context.Context, c *conn, out *gomail.Msg) error {
	stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
	err := c.client.SendWithSMTPClient(c.smtp, out)
	if !stop() {
		// The mail may have been accepted before the connection was
		// closed: then the send succeeded, but the session is gone.
		p.drop(c)
		if err == nil || out.IsDelivered() {
			return nil
		}
		return fmt.Errorf("send failed: %w", err)
	}
	if err != nil {
		// A refusal leaves the session in step (go-mail sent RSET), an
		// I/O error does not; neither is worth telling apart for the
		// rare failure.
		p.drop(c)
		if out.IsDelivered() {
			return nil
		}
		return fmt.Errorf("send failed: %w", err)
	}
	c.sent++
	if c.sent >= p.m.opts.MaxMessagesPerConn {
		p.quit(c)
		return nil
	}
	p.put(c)
	return nil
}

// put returns c to the idle sessions, or closes it once the pool is
// closed.
func (p *pool) put(c *conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.quit(c)
		return
	}
	c.since = time.Now()
	p.idle = append(p.idle, c)
	if !p.armed {
		p.armed = true
		if p.reaper == nil {
			p.reaper = time.AfterFunc(p.m.opts.IdleTimeout, p.reap)
		} else {
			p.reaper.Reset(p.m.opts.IdleTimeout)
		}
	}
	p.mu.Unlock()
}

// reap closes the sessions idle for IdleTimeout, each holding a slot while
// its QUIT runs, and sets the timer for the next one to expire. It runs on
// the timer's goroutine.
func (p *pool) reap() {
	p.mu.Lock()
	p.armed = false
	if p.closed {
		p.mu.Unlock()
		return
	}
	now := time.Now()
	var expired []*conn
	next := time.Duration(0)
	for len(p.idle) > 0 {
		if left := p.m.opts.IdleTimeout - now.Sub(p.idle[0].since); left > 0 {
			next = left
			break
		}
		if !p.trySlot() {
			// Every slot is taken, by sends about to use these
			// sessions: look again later.
			next = checkAfter
			break
		}
		expired = append(expired, p.idle[0])
		p.idle = p.idle[1:]
	}
	if next > 0 {
		p.armed = true
		p.reaper.Reset(next)
	}
	p.mu.Unlock()
	for _, c := range expired {
		p.quit(c)
		<-p.slots
	}
}

func (p *pool) trySlot() bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// quit ends the session politely, QUIT then close, within Timeout.
func (p *pool) quit(c *conn) {
	_ = c.smtp.UpdateDeadline(p.m.opts.Timeout)
	_ = c.smtp.Quit()
	p.drop(c)
}

// drop closes c's connection and forgets it.
func (p *pool) drop(c *conn) {
	_ = c.raw.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.settle()
	p.mu.Unlock()
}

// close closes the idle sessions at once and the busy ones as their sends
// end, and waits for the last to be closed, until ctx ends: then it closes
// every connection still open, which fails the sends on them.
func (p *pool) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		if p.reaper != nil {
			p.reaper.Stop()
		}
	}
	p.settle()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	// Each session stays in conns, so drained waits for it, until its
	// QUIT is over.
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() {
			stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
			p.quit(c)
			stop()
		})
	}
	wg.Wait()
	select {
	case <-p.drained:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for c := range p.conns {
		_ = c.raw.Close()
	}
	p.mu.Unlock()
	return fmt.Errorf("mail: close: %w", ctx.Err())
}

// beforeData reports a failure that happened before the server accepted
// the DATA command, so that the server holds no part of the mail, and that
// may pass on another session: a lost connection or a temporary (4xx)
// reply, such as 421 from a server that closes idle sessions. A permanent
// (5xx) refusal would only be refused again.
func beforeData(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case gomail.ErrConnCheck, gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData:
		return se.ErrorCode() < 500
	}
	return false
}
