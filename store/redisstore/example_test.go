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
