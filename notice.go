package selfservice

import (
	"context"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// notice is one mail to an old address, queued after a committed change.
type notice struct {
	ctx    context.Context // the request's values, without its cancellation
	caller caller
	user   store.User // as it was before the change
	msg    Message
}

// notifier mails notices on a few workers fed by a bounded queue, so that a
// busy server's change costs its request a channel send, not a goroutine, a
// context and a timer. A worker starts when a notice is queued while none
// runs, or while notices wait and fewer than NoticeWorkers run; it stops
// when the queue stays empty while it lingers: an idle Service holds no
// goroutine, and one dropped without Shutdown leaves none behind.
type notifier struct {
	mu      sync.Mutex // guards all but workers, and every send on queue
	queue   chan notice
	running int  // workers running
	closing bool // Shutdown has begun: the queue is closed
	workers sync.WaitGroup
}

// notifyOldAddress queues the notice of a committed change for the user's
// old address. The mail goes out after the response, detached from the
// request, so it can neither delay nor undo the change. A full queue drops
// the notice; a drop, like a failed send, is logged (addresses masked) and
// reported as EventNoticeFailed, never to the client. Once Shutdown has
// begun, the notice is mailed before the response instead.
func (s *Service) notifyOldAddress(ctx context.Context, c caller, user store.User, newEmail string) {
	n := notice{
		// The request's values stay for the log; its cancellation does
		// not: the response is already on its way.
		ctx:    context.WithoutCancel(ctx),
		caller: c,
		user:   user,
		msg: Message{
			Kind:      MailEmailChanged,
			To:        user.Email,
			Language:  c.language,
			NewEmail:  MaskEmail(newEmail),
			ChangedAt: s.cfg.Now(),
		},
	}
	nt := &s.notices
	nt.mu.Lock()
	if nt.closing {
		nt.mu.Unlock()
		s.mailNotice(n)
		return
	}
	if nt.queue == nil {
		nt.queue = make(chan notice, s.cfg.NoticeQueue)
	}
	select {
	case nt.queue <- n:
		// One worker keeps up with a steady trickle; more start only
		// while notices wait for one (a burst, a slow mailer).
		if nt.running == 0 || nt.running < s.cfg.NoticeWorkers && len(nt.queue) > nt.running {
			nt.running++
			nt.workers.Go(func() { s.noticeWorker(nt.queue) })
		}
		nt.mu.Unlock()
	default:
		nt.mu.Unlock()
		s.cfg.Logger.ErrorContext(n.ctx, "selfservice: notice queue full, notice to the old address dropped",
			"user", user.ID, "queue", s.cfg.NoticeQueue)
		s.tel.noticeNotSent(n.ctx, noticeQueueFull)
		s.event(n.ctx, c, EventNoticeFailed, user.ID, user.Email, "")
	}
}

// noticeLinger is how long a worker that has mailed notices waits before
// it takes what gathered in the queue meanwhile, or stops if nothing did.
// Handing each notice to a worker blocked on the queue would wake a thread
// on an idle core for every change: more CPU than the whole request without
// its signature check. Lingering workers are woken by their timers instead,
// at most every noticeLinger each, however many changes are made; a notice
// waits that much longer at most.
const noticeLinger = 10 * time.Millisecond

// noticeWorker mails the notices of queue until, after lingering, it finds
// the queue empty, or closed and empty. It decides to stop under the
// notifier's lock, which every send on the queue holds: a notice queued
// after that finds one worker fewer running, and starts one if none is
// left. A notice queued behind a slow send waits for it until a second one
// queues up and starts another worker.
func (s *Service) noticeWorker(queue <-chan notice) {
	nt := &s.notices
	for {
		for taken := true; taken; {
			select {
			case n, ok := <-queue:
				if !ok {
					nt.mu.Lock()
					nt.running--
					nt.mu.Unlock()
					return
				}
				s.mailNotice(n)
			default:
				taken = false
			}
		}
		time.Sleep(noticeLinger)
		nt.mu.Lock()
		if len(queue) == 0 {
			nt.running--
			nt.mu.Unlock()
			return
		}
		nt.mu.Unlock()
	}
}

// mailNotice sends n within NoticeTimeout and reports a failure.
func (s *Service) mailNotice(n notice) {
	ctx, cancel := context.WithTimeout(n.ctx, s.cfg.NoticeTimeout)
	defer cancel()
	if err := s.cfg.Mailer.Send(ctx, n.msg); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "selfservice: notice to the old address failed",
			"user", n.user.ID, "error", redact(err, []string{n.user.Email, n.user.CanonicalEmail}))
		s.tel.noticeNotSent(ctx, noticeSendFailed)
		s.event(ctx, n.caller, EventNoticeFailed, n.user.ID, n.user.Email, "")
	}
}

// Shutdown stops taking notices into the queue (later ones are mailed
// before their responses), and waits until the queued ones are mailed, or
// ctx is done. Call it after http.Server.Shutdown.
func (s *Service) Shutdown(ctx context.Context) error {
	nt := &s.notices
	nt.mu.Lock()
	if !nt.closing {
		nt.closing = true
		if nt.queue != nil {
			close(nt.queue)
		}
	}
	nt.mu.Unlock()
	done := make(chan struct{})
	go func() {
		nt.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
