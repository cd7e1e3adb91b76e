package main

import "github.com/ciamkit/selfservice/example/internal/redisopen"

// The tests run the example on Redis too, whatever the build tags.
func init() { openRedis = redisopen.Open }
