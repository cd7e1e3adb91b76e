package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
)

func ExampleNewCodeStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	codes := redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: "myapp:"})

	ctx := context.Background()
	key := store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "alice@example.com"}
	// The hash is an HMAC of the code under the application's secret.
	hash := []byte("hmac-of-the-code")
	if err := codes.Put(ctx, key, hash, time.Now().Add(10*time.Minute)); err != nil {
		log.Fatal(err)
	}
	err := codes.Verify(ctx, key, [][]byte{hash}, 5, time.Now())
	fmt.Println(err == nil)
}

func ExampleNewLimiter() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	limiter := redisstore.NewLimiter(rdb, redisstore.Options{Prefix: "myapp:"})

	// One code a minute and ten a day to an address.
	limits := []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}
	_, err := limiter.Reserve(context.Background(), "UPDATE_EMAIL_EMS\x00alice@example.com", limits, time.Now())
	var limited *store.RateLimitError
	if errors.As(err, &limited) {
		fmt.Printf("try again in %v\n", limited.RetryAfter.Round(time.Second))
	}
}

// A start-up probe: the limiter refuses a Redis that may evict budgets, and
// says which policy it found.
func ExampleLimiter_Check() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	limiter := redisstore.NewLimiter(rdb, redisstore.Options{})
	if err := limiter.Check(context.Background()); errors.Is(err, redisstore.ErrEvictionPolicy) {
		log.Fatalf("configure maxmemory-policy noeviction: %v", err)
	} else if err != nil {
		log.Fatal(err)
	}
}

// With a replica, each consumption of a code and each budget event waits
// until the replica has it, so that a failover cannot undo what the store
// reported.
func ExampleOptions_replicas() {
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "mymaster",
		SentinelAddrs: []string{"sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"},
	})
	defer rdb.Close()
	opts := redisstore.Options{Replicas: 1, ReplicaTimeout: 50 * time.Millisecond}
	codes := redisstore.NewCodeStore(rdb, opts)
	limiter := redisstore.NewLimiter(rdb, opts)
	_, _ = codes, limiter
}
