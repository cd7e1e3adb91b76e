package redisstore_test

import (
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

func TestCodeStore(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestCodeStore(t, func(t *testing.T) store.CodeStore {
		rdb, prefix := redistest.Open(t)
		return redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
	})
}

func TestLimiter(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestLimiter(t, func(t *testing.T) store.Limiter {
		rdb, prefix := redistest.Open(t)
		return redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	})
}

// What Redis holds must not reveal the address: keys are hashed and live
// under the prefix, the code is the caller's hash as given, a budget holds
// reservation ids and times only, and both kinds of key carry a TTL.
func TestKeysAndValues(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	ctx := t.Context()
	const email = "alice@example.com"
	hash := []byte("hmac-of-the-code-under-a-secret!")
	codes := redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
	limiter := redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	if err := codes.Put(ctx, store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: email}, hash, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	limits := []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}
	now := time.Now()
	id, err := limiter.Reserve(ctx, "UPDATE_EMAIL_EMS\x00"+email, limits, now)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}

	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys under the prefix = %q, want a code and a budget", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "alice") || strings.Contains(k, "example") {
			t.Errorf("key %q holds the address in clear", k)
		}
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("PTTL(%q) = %v, %v; want a TTL", k, ttl, err)
		}
		switch kind, err := rdb.Type(ctx, k).Result(); {
		case err != nil:
			t.Fatal(err)
		case kind == "hash" && strings.HasPrefix(k, prefix+"code:"):
			fields, err := rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range fields {
				if strings.Contains(v, "alice") {
					t.Errorf("field %s of %q holds %q", f, k, v)
				}
				if f == "hash" && v != string(hash) {
					t.Errorf("stored hash = %q, want the caller's %q", v, hash)
				}
			}
		case kind == "zset" && strings.HasPrefix(k, prefix+"limit:"):
			events, err := rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			want := []redis.Z{{Score: float64(now.UnixMilli()), Member: id}}
			if !reflect.DeepEqual(events, want) {
				t.Errorf("budget %q = %v, want %v", k, events, want)
			}
			if ttl > 24*time.Hour+time.Minute {
				t.Errorf("PTTL(%q) = %v, want at most the longest window and a minute", k, ttl)
			}
		default:
			t.Errorf("key %q is a %s", k, kind)
		}
	}
}

// A budget's key lives as long as its longest window from its newest
// event, and a minute, whatever the caller's clock says: a now far from the
// Redis server's clock neither drops it early nor keeps it for years.
func TestLimiterTTL(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	ctx := t.Context()
	limiter := redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	limits := []store.Limit{{N: 5, Window: time.Minute}, {N: 10, Window: time.Hour}}
	for _, now := range []time.Time{
		time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2001, 1, 1, 0, 30, 0, 0, time.UTC),
		time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		key := "ttl " + now.String()
		if _, err := limiter.Reserve(ctx, key, limits, now); err != nil {
			t.Fatalf("Reserve(%s): %v", key, err)
		}
		keys, err := rdb.Keys(ctx, prefix+"limit:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			ttl, err := rdb.PTTL(ctx, k).Result()
			if err != nil || ttl <= time.Hour || ttl > time.Hour+time.Minute {
				t.Errorf("after Reserve(%s): PTTL(%q) = %v, %v; want an hour and up to a minute", key, k, ttl, err)
			}
		}
	}
}

// Windows finer than Redis's millisecond are rounded up, never down.
func TestLimiterSubMillisecondWindow(t *testing.T) {
	rdb, prefix := redistest.Open(t)
	ctx := t.Context()
	limiter := redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	limits := []store.Limit{{N: 1, Window: 1500 * time.Microsecond}}
	now := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := limiter.Reserve(ctx, "k", limits, now); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	for _, tt := range []struct {
		after time.Duration
		want  error
	}{
		{time.Millisecond, store.ErrRateLimited},
		{2 * time.Millisecond, nil},
	} {
		_, err := limiter.Reserve(ctx, "k", limits, now.Add(tt.after))
		if !errors.Is(err, tt.want) {
			t.Errorf("Reserve at +%v: %v, want %v", tt.after, err, tt.want)
		}
	}
}

func TestOptionsDefaultPrefix(t *testing.T) {
	rdb, _ := redistest.Open(t)
	ctx := t.Context()
	// A purpose no application uses, so the key is this test's alone.
	key := store.CodeKey{Purpose: "storetest-default-prefix-" + rand.Text(), Email: "alice@example.com"}
	codes := redisstore.NewCodeStore(rdb, redisstore.Options{})
	if err := codes.Put(ctx, key, []byte("h"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	keys, err := rdb.Keys(ctx, redisstore.DefaultPrefix+"code:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Errorf("no key under %q after Put with the zero Options", redisstore.DefaultPrefix)
	}
	if err := codes.Verify(ctx, key, [][]byte{[]byte("h")}, 5, time.Now()); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestConstructorsPanic(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"NewCodeStore(nil)", func() { redisstore.NewCodeStore(nil, redisstore.Options{}) }},
		{"NewLimiter(nil)", func() { redisstore.NewLimiter(nil, redisstore.Options{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.f()
		})
	}
}
