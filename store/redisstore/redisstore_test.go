package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
	"github.com/ciamkit/selfservice/store/storetest"
)

// openRedis returns a client for the Redis named by SELFSERVICE_TEST_REDIS
// and a key prefix no other call shares; the keys under it are deleted when
// t ends.
func openRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Lookup(t, testenv.Redis))
	if err != nil {
		t.Fatalf("%s: %v", testenv.Redis, err)
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		rdb.Close()
		t.Fatalf("ping Redis: %v", err)
	}
	suffix := make([]byte, 8)
	rand.Read(suffix)
	prefix := "selfservice-test:" + hex.EncodeToString(suffix) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("delete %s: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan %s*: %v", prefix, err)
		}
		rdb.Close()
	})
	return rdb, prefix
}

func TestCodeStore(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestCodeStore(t, func(t *testing.T) store.CodeStore {
		rdb, prefix := openRedis(t)
		return redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
	})
}

func TestSendLimiter(t *testing.T) {
	testenv.Lookup(t, testenv.Redis)
	storetest.TestSendLimiter(t, func(t *testing.T) store.SendLimiter {
		rdb, prefix := openRedis(t)
		return redisstore.NewSendLimiter(rdb, redisstore.Options{Prefix: prefix})
	})
}

// What Redis holds must not reveal the address: keys are hashed and live
// under the prefix, the code is the caller's hash as given, and both kinds
// of key carry a TTL.
func TestKeysAndValues(t *testing.T) {
	rdb, prefix := openRedis(t)
	ctx := t.Context()
	const email = "alice@example.com"
	hash := []byte("hmac-of-the-code-under-a-secret!")
	codes := redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
	limiter := redisstore.NewSendLimiter(rdb, redisstore.Options{Prefix: prefix})
	if err := codes.Put(ctx, store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: email}, hash, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	limits := store.SendLimits{Interval: time.Minute, Daily: 10, Window: time.Hour}
	if err := limiter.Reserve(ctx, "UPDATE_EMAIL_EMS\x00"+email, limits, time.Now()); err != nil {
		t.Fatalf("Reserve: %v", err)
	}

	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys under the prefix = %q, want a code and a send count", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "alice") || strings.Contains(k, "example") {
			t.Errorf("key %q holds the address in clear", k)
		}
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("PTTL(%q) = %v, %v; want a TTL", k, ttl, err)
		}
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
	}
}

func TestOptionsDefaultPrefix(t *testing.T) {
	rdb, _ := openRedis(t)
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
	if err := codes.Verify(ctx, key, []byte("h"), 5, time.Now()); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestConstructorsPanic(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"NewCodeStore(nil)", func() { redisstore.NewCodeStore(nil, redisstore.Options{}) }},
		{"NewSendLimiter(nil)", func() { redisstore.NewSendLimiter(nil, redisstore.Options{}) }},
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
