package redisstore_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store/redisstore"
)

// muteServer is a Redis that accepts connections and reads what they
// send but never answers.
type muteServer struct {
	addr string
	// conns counts the connections accepted.
	conns atomic.Int64
	// asked is closed when the first bytes arrive: a reading has begun.
	asked chan struct{}
}

// startMuteServer listens on a free loopback port until t ends.
func startMuteServer(t *testing.T) *muteServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &muteServer{addr: ln.Addr().String(), asked: make(chan struct{})}
	var (
		wg     sync.WaitGroup
		once   sync.Once
		mu     sync.Mutex
		open   []net.Conn
		closed bool
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			mu.Lock()
			if closed {
				c.Close()
			} else {
				open = append(open, c)
			}
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					once.Do(func() { close(s.asked) })
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// client returns a client of s that gives up on an answer after timeout
// and does not retry, closed when t ends.
func (s *muteServer) client(t *testing.T, timeout time.Duration) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestPolicyReadingShared: before the first reading of the eviction
// policy, concurrent calls share the reading in progress and its failure,
// so that a Redis that never answers costs each of them one ReadTimeout,
// not one per call ahead of it; a call whose context ends stops waiting,
// and a reading cut short by its caller's context is not handed to the
// others.
func TestPolicyReadingShared(t *testing.T) {
	t.Parallel()
	const (
		timeout = 300 * time.Millisecond
		calls   = 20
	)
	// concurrently runs calls calls of call at once and returns their
	// errors and the longest time one took.
	concurrently := func(call func() error) ([]error, time.Duration) {
		errs := make([]error, calls)
		took := make([]time.Duration, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				start := time.Now()
				errs[i] = call()
				took[i] = time.Since(start)
			})
		}
		wg.Wait()
		longest := time.Duration(0)
		for _, d := range took {
			longest = max(longest, d)
		}
		return errs, longest
	}
	// assertUnreachable checks that every call failed as Redis not
	// answering does, not as a policy refused.
	assertUnreachable := func(t *testing.T, errs []error) {
		t.Helper()
		for i, err := range errs {
			if err == nil || errors.Is(err, redisstore.ErrEvictionPolicy) {
				t.Errorf("call %d: %v, want the failure to reach Redis", i, err)
			}
		}
	}

	t.Run("first calls share one reading", func(t *testing.T) {
		t.Parallel()
		srv := startMuteServer(t)
		l := redisstore.NewLimiter(srv.client(t, timeout), redisstore.Options{})
		errs, longest := concurrently(func() error {
			_, err := l.Reserve(t.Context(), "k", wrongCodes, time.Now())
			return err
		})
		assertUnreachable(t, errs)
		if longest > 2*timeout {
			t.Errorf("the slowest of %d first calls took %v, want about one ReadTimeout (%v)", calls, longest, timeout)
		}
		if n := srv.conns.Load(); n != 1 {
			t.Errorf("%d connections for %d concurrent first calls, want the one reading's", n, calls)
		}
	})

	t.Run("concurrent Checks share at most two readings", func(t *testing.T) {
		t.Parallel()
		srv := startMuteServer(t)
		l := redisstore.NewLimiter(srv.client(t, timeout), redisstore.Options{})
		// A reading begun before a Check was called may have asked
		// before it: the Check waits it out and shares the next.
		errs, longest := concurrently(func() error { return l.Check(t.Context()) })
		assertUnreachable(t, errs)
		if longest > 3*timeout {
			t.Errorf("the slowest of %d concurrent Checks took %v, want about two ReadTimeouts (%v)", calls, longest, timeout)
		}
		if n := srv.conns.Load(); n > 2 {
			t.Errorf("%d connections for %d concurrent Checks, want at most two readings'", n, calls)
		}
	})

	t.Run("a waiting call's context ends its wait", func(t *testing.T) {
		t.Parallel()
		srv := startMuteServer(t)
		codes := redisstore.NewCodeStore(srv.client(t, timeout), redisstore.Options{})
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { _ = codes.Put(t.Context(), codeKey, []byte("h"), time.Now().Add(time.Minute)) })
		<-srv.asked
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := codes.Verify(ctx, codeKey, [][]byte{[]byte("h")}, 5, time.Now())
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > timeout/2 {
			t.Errorf("Verify with a 20ms context while a reading hangs: %v after %v, want context.DeadlineExceeded well before the ReadTimeout (%v)", err, took, timeout)
		}
	})

	t.Run("a reading abandoned by its caller is read again", func(t *testing.T) {
		t.Parallel()
		srv := startMuteServer(t)
		l := redisstore.NewLimiter(srv.client(t, timeout), redisstore.Options{})
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = l.Reserve(ctx, "k", wrongCodes, time.Now()) })
		<-srv.asked
		waited := make(chan error, 1)
		wg.Go(func() {
			_, err := l.Reserve(t.Context(), "k", wrongCodes, time.Now())
			waited <- err
		})
		time.Sleep(timeout / 10) // the second call now waits for the first's reading
		cancel()
		wg.Wait()
		if err := <-waited; err == nil || errors.Is(err, context.Canceled) || errors.Is(err, redisstore.ErrEvictionPolicy) {
			t.Errorf("a call that waited for a reading whose caller gave up: %v, want its own failure to reach Redis", err)
		}
		if n := srv.conns.Load(); n != 2 {
			t.Errorf("%d connections, want two readings: the abandoned one and the waiter's own", n)
		}
	})
}
