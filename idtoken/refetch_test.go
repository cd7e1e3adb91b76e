package idtoken_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
)

// TestJWKSRefetchSurvivesHangUp: a client that sends a made-up kid and hangs
// up while the refetch runs cannot waste the one fetch the limiter allows:
// the fetch finishes on the Verifier's own context and brings the rotated
// key for the next, genuine token.
func TestJWKSRefetchSurvivesHangUp(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	var body atomic.Pointer[[]byte]
	var slow atomic.Bool
	var fetches atomic.Int64
	first := jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig})
	body.Store(&first)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	t.Cleanup(srv.Close)
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Hour // one refetch for the whole test
	})

	rotated := jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig})
	body.Store(&rotated)
	slow.Store(true)
	bogus := signer{jwt.SigningMethodES256, oldKey, "made-up"}.sign(t, claims())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, bogus, testClient); err == nil {
		t.Fatal("a made-up kid verified")
	}

	genuine := signer{jwt.SigningMethodES256, newKey, "new"}.sign(t, claims())
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), genuine, testClient)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key never arrived: %v (fetches: %d)", err, fetches.Load())
		}
		if !errors.Is(err, jwkset.ErrKeyNotFound) {
			t.Fatalf("genuine token: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (start-up and the one refetch)", n)
	}
}

// waitingContext tells when Done is first asked for: verifying a token,
// the Verifier asks only to wait for the refetch under way.
type waitingContext struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func newWaitingContext(ctx context.Context) *waitingContext {
	return &waitingContext{Context: ctx, waiting: make(chan struct{})}
}

func (c *waitingContext) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// outcomeOf names what Verify's err tells the client: accepted, refused
// (sign in again) or internal (keys unavailable: try again).
func outcomeOf(t *testing.T, err error) outcome {
	t.Helper()
	switch {
	case err == nil:
		return accepted
	case errors.Is(err, i18n.CodeInternal) && errors.Is(err, idtoken.ErrKeysUnavailable):
		return internal
	case errors.Is(err, i18n.CodeTokenInvalid) && !errors.Is(err, i18n.CodeInternal):
		return refused
	}
	t.Fatalf("error %v: neither a refusal nor keys unavailable", err)
	return 0
}

// verifyAsync verifies raw in a goroutine and sends its error on the
// channel it returns.
func verifyAsync(ctx context.Context, v *idtoken.Verifier, raw string) <-chan error {
	res := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, raw, testClient)
		res <- err
	}()
	return res
}

// awaitWaiting fails unless the request of ctx waits for the refetch under
// way: answered before it ends, it was not held for it.
func awaitWaiting(t *testing.T, ctx *waitingContext, res <-chan error) {
	t.Helper()
	select {
	case <-ctx.waiting:
	case err := <-res:
		t.Fatalf("held-back token answered while the refetch was under way: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("held-back token neither answered nor waiting after 5s")
	}
}

// TestJWKSHeldBackTokenWaitsForRefetch: while the one refetch the
// unknown-kid limit allows is under way, another token whose kid the set
// lacks waits for that fetch and is judged by what it brought: a token of
// the rotated key is accepted, a made-up kid refused; if the fetch fails,
// or the request's context ends first, it is an internal failure (try
// again), never "sign in again". No further fetch is made.
func TestJWKSHeldBackTokenWaitsForRefetch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		status        int    // the refetch's answer
		kid           string // the held-back token's
		cancel        bool   // its context ends while it waits
		first, second outcome
	}{
		{"rotated kid accepted once the refetch brings it", http.StatusOK, "new", false, accepted, accepted},
		{"made-up kid refused once the refetch lacks it", http.StatusOK, "made-up", false, accepted, refused},
		{"refetch fails", http.StatusServiceUnavailable, "new", false, internal, internal},
		{"context ends while it waits", http.StatusOK, "new", true, accepted, internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			oldKey, newKey := newECKey(t), newECKey(t)
			srv := newJWKSServer(t, jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig}))
			v := newVerifier(t, func(o *idtoken.Options) {
				o.JWKSURL = srv.URL
				o.UnknownKIDInterval = time.Hour // one refetch for the whole test
			})
			rotated := jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig})
			srv.setBody(rotated)
			srv.status.Store(int32(tt.status))
			srv.hold.Store(true)

			first := verifyAsync(context.Background(), v, signer{jwt.SigningMethodES256, newKey, "new"}.sign(t, claims()))
			select {
			case <-srv.entered:
			case err := <-first:
				t.Fatalf("first token answered before its refetch: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wctx := newWaitingContext(ctx)
			second := verifyAsync(wctx, v, signer{jwt.SigningMethodES256, newKey, tt.kid}.sign(t, claims(setClaim("jti", "second"))))
			awaitWaiting(t, wctx, second)
			if tt.cancel {
				cancel()
				if got := outcomeOf(t, <-second); got != tt.second {
					t.Fatalf("held-back token whose context ended: %s, want %s", got, tt.second)
				}
			}
			srv.unhold()
			if got := outcomeOf(t, <-first); got != tt.first {
				t.Errorf("token that refetched: %s, want %s", got, tt.first)
			}
			if !tt.cancel {
				if got := outcomeOf(t, <-second); got != tt.second {
					t.Errorf("held-back token: %s, want %s", got, tt.second)
				}
			}
			// Past the refetch, a kid it did not bring is judged at once,
			// as before, and fetches nothing.
			third := signer{jwt.SigningMethodES256, newKey, "later"}.sign(t, claims())
			want := refused
			if tt.status != http.StatusOK {
				want = internal
			}
			if _, err := v.Verify(context.Background(), third, testClient); outcomeOf(t, err) != want {
				t.Errorf("unknown kid after the refetch: %v, want %s", err, want)
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Errorf("%d JWKS fetches, want 2 (start-up and the one refetch)", n)
			}
		})
	}
}

// TestJWKSHeldBackFlood: made-up kids sent while a refetch is under way
// wait for that fetch only, cause no other, and are refused once it ends;
// the genuine tokens among them are accepted.
func TestJWKSHeldBackFlood(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newECKey(t), newECKey(t)
	srv := newJWKSServer(t, jwksJSON(t, published{&oldKey.PublicKey, "old", jwkset.AlgES256, jwkset.UseSig}))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Millisecond // the limiter would allow many
	})
	rotated := jwksJSON(t, published{&newKey.PublicKey, "new", jwkset.AlgES256, jwkset.UseSig})
	srv.setBody(rotated)
	srv.hold.Store(true)

	bogus := verifyAsync(context.Background(), v, signer{jwt.SigningMethodES256, oldKey, "made-up"}.sign(t, claims()))
	<-srv.entered
	time.Sleep(5 * time.Millisecond) // the limiter has a token again
	const n = 40
	type waiter struct {
		genuine bool
		res     <-chan error
	}
	waiters := make([]waiter, n)
	for i := range waiters {
		s := signer{jwt.SigningMethodES256, newKey, fmt.Sprintf("made-up-%d-%s", i, rand.Text())}
		genuine := i%10 == 0
		if genuine {
			s.kid = "new"
		}
		ctx := newWaitingContext(context.Background())
		waiters[i] = waiter{genuine, verifyAsync(ctx, v, s.sign(t, claims(setClaim("jti", strconv.Itoa(i)))))}
		awaitWaiting(t, ctx, waiters[i].res)
	}
	srv.unhold()
	if got := outcomeOf(t, <-bogus); got != refused {
		t.Errorf("made-up kid that refetched: %s, want refused", got)
	}
	for i, w := range waiters {
		want := refused
		if w.genuine {
			want = accepted
		}
		if got := outcomeOf(t, <-w.res); got != want {
			t.Errorf("held-back token %d: %s, want %s", i, got, want)
		}
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("%d JWKS fetches, want 2 (start-up and the one refetch)", got)
	}
}
