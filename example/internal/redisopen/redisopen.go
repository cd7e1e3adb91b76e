// Package redisopen opens the example's codes and budgets on Redis. It is
// its own package so that the example builds it only when asked (-tags
// redis): the Redis client is the largest single package of a first build.
package redisopen

import (
	"context"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// Open connects to the Redis url names and returns the code store and the
// limiter on it, and the client to close. A Redis that may evict budgets is
// refused here, the policy named, rather than at the first request.
func Open(ctx context.Context, url string) (store.CodeStore, store.Limiter, io.Closer, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, nil, err
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	codes, limiter := redisstore.NewCodeStore(rdb, redisstore.Options{}), redisstore.NewLimiter(rdb, redisstore.Options{})
	if err := limiter.Check(ctx); err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	return codes, limiter, rdb, nil
}
