package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// runner runs the stores' scripts and, with Options.Replicas set, waits
// for the replicas to acknowledge their writes.
type runner struct {
	rdb      redis.UniversalClient
	replicas int
	timeout  time.Duration
}

func newRunner(rdb redis.UniversalClient, opts Options) runner {
	r := runner{rdb: rdb, replicas: opts.Replicas, timeout: opts.ReplicaTimeout}
	if r.timeout <= 0 {
		r.timeout = DefaultReplicaTimeout
	}
	// WAIT counts whole milliseconds, and 0 would wait for ever.
	r.timeout = (r.timeout + time.Millisecond - 1).Truncate(time.Millisecond)
	return r
}

// singleServer returns how to reach the server that holds a key, for a
// client that can send a script and WAIT on one connection (WAIT counts
// the acknowledgements of its own connection's writes).
func singleServer(rdb redis.UniversalClient) (func(ctx context.Context, key string) (*redis.Client, error), bool) {
	switch c := rdb.(type) {
	case *redis.Client:
		return func(context.Context, string) (*redis.Client, error) { return c, nil }, true
	case interface {
		MasterForKey(ctx context.Context, key string) (*redis.Client, error)
	}:
		return c.MasterForKey, true
	}
	return nil, false
}

// run runs script on keys, which live on one server. res carries the
// script's answer or failure; a non-nil replicated says the script ran
// but too few replicas acknowledged it (ErrReplication) or the wait
// failed.
func (r runner) run(ctx context.Context, script *redis.Script, keys []string, args ...any) (res *redis.Cmd, replicated error) {
	if r.replicas == 0 {
		return script.Run(ctx, r.rdb, keys, args...), nil
	}
	server, _ := singleServer(r.rdb)
	c, err := server(ctx, keys[0])
	if err != nil {
		res = redis.NewCmd(ctx)
		res.SetErr(err)
		return res, nil
	}
	res, ack := r.runAndWait(ctx, c, script.EvalSha, keys, args)
	if isNoScript(res.Err()) {
		// A restarted or promoted server has an empty script cache.
		res, ack = r.runAndWait(ctx, c, script.Eval, keys, args)
	}
	if res.Err() != nil {
		return res, nil
	}
	n, err := ack.Int64()
	switch {
	case err != nil:
		return res, fmt.Errorf("wait for replicas: %w", err)
	case n < int64(r.replicas):
		return res, fmt.Errorf("%w: %d of %d within %v", ErrReplication, n, r.replicas, r.timeout)
	}
	return res, nil
}

// runAndWait sends the script and WAIT in one pipeline, which go-redis
// writes on one connection.
// The pipeline reads with the client's ReadTimeout, which must therefore
// exceed the wait's.
func (r runner) runAndWait(ctx context.Context, c *redis.Client, eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd, keys []string, args []any) (res, ack *redis.Cmd) {
	// Each command keeps its own error, read by the caller.
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		res = eval(ctx, p, keys, args...)
		ack = p.Do(ctx, "wait", r.replicas, r.timeout.Milliseconds())
		return nil
	})
	return res, ack
}

// isNoScript reports whether err is EVALSHA's "not cached".
func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}
