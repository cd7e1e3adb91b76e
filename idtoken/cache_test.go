package idtoken_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/configerr"
)

// cachedVerifier is a Verifier with the cache on, the EdDSA test key, a clock
// the test moves, and a count of key lookups: a lookup means the token was
// parsed and its signature checked, so a hit adds none.
type cachedVerifier struct {
	*idtoken.Verifier
	lookups atomic.Int32
	now     atomic.Int64 // Unix nanoseconds
}

func newCachedVerifier(t *testing.T, cache idtoken.CacheOptions) *cachedVerifier {
	t.Helper()
	pub := keys(t).ed.Public()
	cv := &cachedVerifier{}
	cv.now.Store(testNow.UnixNano())
	cv.Verifier = newVerifier(t, func(o *idtoken.Options) {
		o.Keyfunc = func(*jwt.Token) (any, error) {
			cv.lookups.Add(1)
			return pub, nil
		}
		o.Now = func() time.Time { return time.Unix(0, cv.now.Load()) }
		o.Cache = cache
	})
	return cv
}

func (cv *cachedVerifier) at(d time.Duration) { cv.now.Store(testNow.Add(d).UnixNano()) }

// verify checks raw for client and reports whether it passed and whether
// the signature was checked (a miss).
func (cv *cachedVerifier) verify(t *testing.T, raw, client string) (passed, checked bool) {
	t.Helper()
	before := cv.lookups.Load()
	c, err := cv.Verify(context.Background(), raw, client)
	if err != nil && !errors.Is(err, i18n.CodeTokenInvalid) {
		t.Fatalf("Verify: %v, want nil or an ErrTokenInvalid", err)
	}
	if err == nil && c.Subject != testUser {
		t.Fatalf("Verify: claims %+v, want sub %q", c, testUser)
	}
	return err == nil, cv.lookups.Load() != before
}

// step is one Verify of a scenario and what it must give.
type step struct {
	at      time.Duration // clock, from testNow
	token   string        // a key of the scenario's tokens
	client  string
	passed  bool
	checked bool // parsed and signature-checked, not served by the cache
}

func runSteps(t *testing.T, cv *cachedVerifier, tokens map[string]string, steps []step) {
	t.Helper()
	for i, s := range steps {
		cv.at(s.at)
		passed, checked := cv.verify(t, tokens[s.token], s.client)
		if passed != s.passed || checked != s.checked {
			t.Errorf("step %d (%s for %q at %v): passed %v, checked %v; want passed %v, checked %v",
				i, s.token, s.client, s.at, passed, checked, s.passed, s.checked)
		}
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	k := keys(t)
	sign := func(edits ...func(jwt.MapClaims)) string { return eddsa(k).sign(t, claims(edits...)) }
	good := sign()
	tokens := map[string]string{
		"good":       good,
		"multi-aud":  sign(setClaim("aud", []string{testClient, "app-2"}), setClaim("azp", testClient)),
		"azp-other":  sign(setClaim("azp", "app-2")),
		"expired":    sign(setClaim("exp", testNow.Add(-time.Hour).Unix())),
		"no-sub":     sign(dropClaim("sub")),
		"bad-sig":    good[:len(good)-4] + "AAAA",
		"tampered":   tamper(t, good, setClaim("sub", "someone-else")),
		"other-jti":  sign(setClaim("jti", "2")),
		"short-life": sign(setClaim("exp", testNow.Add(2*time.Minute).Unix())),
	}
	tests := []struct {
		name  string
		cache idtoken.CacheOptions
		steps []step
	}{
		{"a repeated token is a hit", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "good", testClient, true, true},
			{time.Second, "good", testClient, true, false},
			{time.Minute, "good", testClient, true, false},
		}},
		{"a hit still checks the audience", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "good", testClient, true, true},
			{0, "good", "app-2", false, false},
			{0, "good", "", false, false},
			{0, "good", testClient, true, false},
		}},
		{"a hit still checks azp with several audiences", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "multi-aud", testClient, true, true},
			{0, "multi-aud", "app-2", false, false},
			{0, "multi-aud", testClient, true, false},
		}},
		{"a token refused for this client is not cached", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "azp-other", testClient, false, true},
			{0, "azp-other", testClient, false, true},
			{0, "good", "app-2", false, true},
			{0, "good", testClient, true, true},
		}},
		{"failed tokens are never cached", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "expired", testClient, false, true},
			{0, "expired", testClient, false, true},
			{0, "no-sub", testClient, false, true},
			{0, "no-sub", testClient, false, true},
			{0, "bad-sig", testClient, false, true},
			{0, "bad-sig", testClient, false, true},
		}},
		{"the whole token is the key", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "good", testClient, true, true},
			{0, "bad-sig", testClient, false, true},
			{0, "tampered", testClient, false, true},
			{0, "other-jti", testClient, true, true},
			{0, "good", testClient, true, false},
		}},
		{"an entry never outlives exp", idtoken.CacheOptions{MaxEntries: 10, MaxAge: time.Hour}, []step{
			{0, "short-life", testClient, true, true},
			{2*time.Minute - time.Second, "short-life", testClient, true, false},
			// Past exp, within the leeway: accepted, checked, not cached.
			{2 * time.Minute, "short-life", testClient, true, true},
			{2*time.Minute + time.Second, "short-life", testClient, true, true},
			{3 * time.Minute, "short-life", testClient, false, true},
		}},
		{"an entry never outlives MaxAge", idtoken.CacheOptions{MaxEntries: 10, MaxAge: time.Minute}, []step{
			{0, "good", testClient, true, true},
			{time.Minute - time.Nanosecond, "good", testClient, true, false},
			{time.Minute, "good", testClient, true, true},
			{time.Minute + time.Second, "good", testClient, true, false},
			{2*time.Minute + time.Second, "good", testClient, true, true},
		}},
		{"the default MaxAge is 5 minutes", idtoken.CacheOptions{MaxEntries: 10}, []step{
			{0, "good", testClient, true, true},
			{5*time.Minute - time.Second, "good", testClient, true, false},
			{5 * time.Minute, "good", testClient, true, true},
		}},
		{"MaxEntries bounds the entries", idtoken.CacheOptions{MaxEntries: 1}, []step{
			{0, "good", testClient, true, true},
			{0, "other-jti", testClient, true, true},
			{0, "good", testClient, true, true},
			{0, "good", testClient, true, false},
		}},
		{"an entry larger than MaxBytes is not kept", idtoken.CacheOptions{MaxEntries: 10, MaxBytes: 100}, []step{
			{0, "good", testClient, true, true},
			{0, "good", testClient, true, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runSteps(t, newCachedVerifier(t, tt.cache), tokens, tt.steps)
		})
	}
}

// Claims served from the cache are each request's own copy: changing them
// changes nothing for the next hit.
func TestCacheClaimsAreCopies(t *testing.T) {
	t.Parallel()
	cv := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: 10})
	raw := eddsa(keys(t)).sign(t, claims())
	for range 3 {
		c, err := cv.Verify(context.Background(), raw, testClient)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != testUser {
			t.Fatalf("Subject = %q, want %q", c.Subject, testUser)
		}
		c.Subject = "changed"
	}
	if n := cv.lookups.Load(); n != 1 {
		t.Errorf("signature checked %d times, want 1", n)
	}
}

// Many distinct tokens through a small cache: the bound holds at every
// moment, and the newest tokens are the ones kept.
func TestCacheBound(t *testing.T) {
	t.Parallel()
	const maxEntries = 8
	cv := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: maxEntries, MaxBytes: maxEntries * 1200})
	s := eddsa(keys(t))
	var tokens []string
	for i := range 100 {
		tokens = append(tokens, s.sign(t, claims(setClaim("jti", strconv.Itoa(i)))))
	}
	for _, raw := range tokens {
		if passed, _ := cv.verify(t, raw, testClient); !passed {
			t.Fatal("a good token failed")
		}
		entries, bytes := idtoken.CacheSize(cv.Verifier)
		if entries > maxEntries || bytes > maxEntries*1200 {
			t.Fatalf("cache holds %d entries, %d bytes; limits %d, %d", entries, bytes, maxEntries, maxEntries*1200)
		}
	}
	if entries, _ := idtoken.CacheSize(cv.Verifier); entries == 0 {
		t.Error("cache is empty after 100 good tokens")
	}
	// The last token is the newest entry, so it is a hit.
	if _, checked := cv.verify(t, tokens[len(tokens)-1], testClient); checked {
		t.Error("the newest token was evicted")
	}
}

// Goroutines share one small cache over several tokens and clients, so that
// hits, misses, inserts and evictions interleave; run with -race.
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	cv := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: 16})
	s := eddsa(keys(t))
	var tokens []string
	for i := range 8 {
		tokens = append(tokens, s.sign(t, claims(setClaim("jti", strconv.Itoa(i)))))
	}
	const goroutines, rounds = 8, 200
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				raw := tokens[(g+i)%len(tokens)]
				client, want := testClient, true
				if i%3 == 0 {
					client, want = "app-2", false
				}
				c, err := cv.Verify(context.Background(), raw, client)
				if (err == nil) != want || (err == nil && c.Subject != testUser) {
					errs <- fmt.Errorf("goroutine %d round %d: claims %v, error %v; want passed %v", g, i, c, err, want)
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := cv.lookups.Load(); n >= goroutines*rounds {
		t.Errorf("signature checked %d times in %d calls: the cache served nothing", n, goroutines*rounds)
	}
}

func TestCacheOptionsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []idtoken.CacheOptions{
		{MaxEntries: -1},
		{MaxEntries: 1, MaxBytes: -1},
		{MaxEntries: 1, MaxAge: -time.Second},
		{MaxAge: time.Minute},
		{MaxBytes: 1 << 20},
	} {
		_, err := idtoken.New(idtoken.Options{
			Issuer:  testIssuer,
			Keyfunc: func(*jwt.Token) (any, error) { return nil, nil },
			Cache:   c,
		})
		if !errors.Is(err, configerr.Err) {
			t.Errorf("Cache %+v: error %v, want ErrConfig", c, err)
		}
	}
}

// TestCacheHoldsMaxEntries: the cache fills up to MaxEntries exactly, however
// the tokens spread over its shards, and then evicts only the oldest entry
// (issue 10, 6: 10 entries over 8 shards used to hold 1 or 2 per shard).
func TestCacheHoldsMaxEntries(t *testing.T) {
	t.Parallel()
	s := eddsa(keys(t))
	var tokens []string
	for i := range 1001 {
		tokens = append(tokens, s.sign(t, claims(setClaim("jti", fmt.Sprintf("%04d", i)))))
	}
	for _, maxEntries := range []int{1, 2, 3, 10, 17, 100, 1000} {
		t.Run(strconv.Itoa(maxEntries), func(t *testing.T) {
			t.Parallel()
			cv := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: maxEntries})
			for i, raw := range tokens[:maxEntries] {
				if passed, checked := cv.verify(t, raw, testClient); !passed || !checked {
					t.Fatalf("token %d: passed %v, checked %v on its first use", i, passed, checked)
				}
			}
			if entries, _ := idtoken.CacheSize(cv.Verifier); entries != maxEntries {
				t.Fatalf("cache holds %d entries after %d tokens, want %d", entries, maxEntries, maxEntries)
			}
			for i, raw := range tokens[:maxEntries] {
				if _, checked := cv.verify(t, raw, testClient); checked {
					t.Fatalf("token %d of %d was evicted before the cache was full", i, maxEntries)
				}
			}
			// One more evicts the oldest, and only it.
			cv.verify(t, tokens[maxEntries], testClient)
			if entries, _ := idtoken.CacheSize(cv.Verifier); entries != maxEntries {
				t.Fatalf("cache holds %d entries, want %d", entries, maxEntries)
			}
			for i := 1; i <= maxEntries; i++ {
				if _, checked := cv.verify(t, tokens[i], testClient); checked {
					t.Fatalf("token %d was evicted, want only token 0", i)
				}
			}
			if _, checked := cv.verify(t, tokens[0], testClient); !checked {
				t.Error("the oldest token is still cached")
			}
		})
	}
}

// TestCacheHoldsMaxBytes: MaxBytes holds for the whole cache too.
func TestCacheHoldsMaxBytes(t *testing.T) {
	t.Parallel()
	s := eddsa(keys(t))
	var tokens []string
	for i := range 20 {
		tokens = append(tokens, s.sign(t, claims(setClaim("jti", fmt.Sprintf("%04d", i)))))
	}
	probe := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: 1})
	probe.verify(t, tokens[0], testClient)
	_, size := idtoken.CacheSize(probe.Verifier)

	const fit = 5
	cv := newCachedVerifier(t, idtoken.CacheOptions{MaxEntries: 100, MaxBytes: fit * size})
	for _, raw := range tokens {
		cv.verify(t, raw, testClient)
		if entries, bytes := idtoken.CacheSize(cv.Verifier); bytes > fit*size || entries > fit {
			t.Fatalf("cache holds %d entries, %d bytes; MaxBytes %d", entries, bytes, fit*size)
		}
	}
	if entries, _ := idtoken.CacheSize(cv.Verifier); entries != fit {
		t.Errorf("cache holds %d entries of %d bytes under MaxBytes %d, want %d", entries, size, fit*size, fit)
	}
	for _, raw := range tokens[len(tokens)-fit:] {
		if _, checked := cv.verify(t, raw, testClient); checked {
			t.Error("one of the newest tokens was evicted")
		}
	}
}
