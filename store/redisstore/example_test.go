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
	err := codes.Verify(ctx, key, hash, 5, time.Now())
	fmt.Println(err == nil)
}

func ExampleNewSendLimiter() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	limiter := redisstore.NewSendLimiter(rdb, redisstore.Options{Prefix: "myapp:"})

	limits := store.SendLimits{Interval: time.Minute, Daily: 10, Window: 24 * time.Hour}
	err := limiter.Reserve(context.Background(), "UPDATE_EMAIL_EMS\x00alice@example.com", limits, time.Now())
	if errors.Is(err, store.ErrRateLimited) {
		fmt.Println("try again later")
	}
}
