// Package redistest gives a test a Redis client and a key prefix of its
// own, so that parallel tests and runs never collide.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/testenv"
)

// Open returns a client for the Redis SELFSERVICE_TEST_REDIS names
// (skipping t when it is unset) and a key prefix no other call shares; the
// keys under the prefix are deleted and the client closed when t ends.
func Open(t testing.TB) (*redis.Client, string) {
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
	_, _ = rand.Read(suffix)
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
