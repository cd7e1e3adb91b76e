//go:build redis

package main

import "github.com/ciamkit/selfservice/example/internal/redisopen"

// -codes redis://... is built with -tags redis only: the Redis client is
// the largest single package of a first build.
func init() { openRedis = redisopen.Open }
