package redisstore_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/internal/tcpproxy"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// pair is a primary and its replica, each with a client.
type pair struct {
	primary, replica *redis.Client
	// link carries the replication when the pair was started cuttable:
	// Cut is a partition between the two.
	link *tcpproxy.Proxy
}

// startPair starts a primary and a replica of it, through a proxy when
// cuttable, and returns once the replica holds the primary's data.
func startPair(t testing.TB, cuttable bool) pair {
	t.Helper()
	// A diskless sync streams no command before the replica's first
	// acknowledgement, which comes up to a second later; a sync through
	// a file streams at once.
	primary := redistest.StartServer(t, "--repl-diskless-sync", "no")
	var pr pair
	target := primary.Addr
	if cuttable {
		pr.link = tcpproxy.Start(t, primary.Addr)
		target = pr.link.Addr()
	}
	host, port, _ := net.SplitHostPort(target)
	pr.primary = primary.Client(t)
	pr.replica = redistest.StartServer(t, "--replicaof", host, port).Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := pr.replica.Info(t.Context(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica's link is not up after 10s: %v %s", err, info)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pr.sync(t)
	return pr
}

// sync returns once the replica holds every write the primary has made.
func (pr pair) sync(t testing.TB) {
	t.Helper()
	// WAIT counts acknowledgements up to its own connection's last write,
	// so it writes first.
	conn := pr.primary.Conn()
	defer conn.Close()
	if err := conn.Set(t.Context(), "sync", "", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(t.Context(), 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
}

// promote makes the replica a primary, as a failover does, after the
// partition (link.Cut) that keeps the old primary's last writes from it.
func (pr pair) promote(t *testing.T) {
	t.Helper()
	if err := pr.replica.Do(t.Context(), "replicaof", "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
}

var failoverLimits = []store.Limit{{N: 3, Window: time.Hour}}

// TestFailoverWithoutReplicasLosesWrites measures the window that
// Options.Replicas closes: with asynchronous replication, what the old
// primary acknowledged after the partition is missing on the replica
// promoted. A code consumed there is accepted again, and a budget spent
// there is whole again.
func TestFailoverWithoutReplicasLosesWrites(t *testing.T) {
	t.Parallel()
	pr := startPair(t, true)
	ctx := t.Context()
	old := newStores(pr.primary, redisstore.Options{})
	right := []byte("right")
	if err := old.codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	pr.sync(t)

	pr.link.Cut()
	if err := old.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()); err != nil {
		t.Fatalf("Verify on the old primary: %v", err)
	}
	spend(t, old.limiter, "the old primary", failoverLimits[0].N)

	pr.promote(t)
	promoted := newStores(pr.replica, redisstore.Options{})
	if err := promoted.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()); err != nil {
		t.Errorf("Verify of the consumed code on the promoted replica: %v; the window was expected to replay it", err)
	}
	if n := admitted(t, promoted.limiter, failoverLimits[0].N+1); n != failoverLimits[0].N {
		t.Errorf("the promoted replica admitted %d events on the spent budget; the window was expected to reset it (%d)", n, failoverLimits[0].N)
	}
}

// TestFailoverWithReplicas: with Options.Replicas, no call reports a
// write that the replica did not acknowledge, so a failover after a
// partition replays nothing that was reported: over both primaries the
// code is accepted once, no more wrong tries are answered than allowed,
// and no more events are admitted than the limit. The calls that meet the
// partition fail with ErrReplication after ReplicaTimeout.
func TestFailoverWithReplicas(t *testing.T) {
	t.Parallel()
	pr := startPair(t, true)
	ctx := t.Context()
	const timeout = 300 * time.Millisecond
	old := newStores(pr.primary, redisstore.Options{Replicas: 1, ReplicaTimeout: timeout})
	right, wrong := []byte("right"), []byte("wrong")
	if err := old.codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := old.codes.Verify(ctx, codeKey, [][]byte{wrong}, 2, time.Now()); !errors.Is(err, store.ErrCodeInvalid) {
		t.Fatalf("a wrong try, replicated: %v, want ErrCodeInvalid", err)
	}
	if got := admitted(t, old.limiter, 1); got != 1 {
		t.Fatalf("an event, replicated: %d admitted, want 1", got)
	}

	pr.link.Cut()
	start := time.Now()
	calls := map[string]error{
		"Verify (wrong)": old.codes.Verify(ctx, codeKey, [][]byte{wrong}, 2, time.Now()),
		"Verify (right)": old.codes.Verify(ctx, codeKey, [][]byte{right}, 2, time.Now()),
	}
	for i := range failoverLimits[0].N {
		_, calls["Reserve "+strconv.Itoa(i+1)] = old.limiter.Reserve(ctx, "k", failoverLimits, time.Now())
	}
	perCall := time.Since(start) / time.Duration(len(calls))
	for call, err := range calls {
		if !errors.Is(err, redisstore.ErrReplication) && !errors.Is(err, store.ErrRateLimited) {
			t.Errorf("%s on the partitioned primary: %v, want ErrReplication", call, err)
		}
	}
	if perCall < timeout {
		t.Errorf("the calls took %v each, want at least the ReplicaTimeout %v", perCall, timeout)
	}

	pr.promote(t)
	promoted := newStores(pr.replica, redisstore.Options{})
	// One wrong try was reported before the partition; maxTries 2 allows
	// one more answer, the right code's.
	if err := promoted.codes.Verify(ctx, codeKey, [][]byte{right}, 2, time.Now()); err != nil {
		t.Errorf("the right code on the promoted replica, never accepted before: %v", err)
	}
	if err := promoted.codes.Verify(ctx, codeKey, [][]byte{right}, 2, time.Now()); !errors.Is(err, store.ErrCodeInvalid) {
		t.Errorf("the right code again: %v, want ErrCodeInvalid", err)
	}
	if n := admitted(t, promoted.limiter, failoverLimits[0].N); n != failoverLimits[0].N-1 {
		t.Errorf("the promoted replica admitted %d events, want %d: the limit less the one reported before the partition", n, failoverLimits[0].N-1)
	}
}

// TestRestartWithoutPersistenceLosesAll: a Redis without persistence (the
// test servers' default, and many a cache's) comes back from a crash
// empty: every budget is reset and every live code lost.
func TestRestartWithoutPersistenceLosesAll(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	survived := crashAndRestart(t, srv)
	if survived.budget || survived.code {
		t.Errorf("after a crash without persistence: %+v, want everything lost", survived)
	}
}

// TestRestartWithAOF: with the append-only file and appendfsync always, a
// crash keeps every acknowledged write: budgets still refuse and live
// codes still verify. (With appendfsync everysec Redis may answer a write
// before writing it to the file, while an fsync of the previous second is
// still running, for up to two seconds: a crash then loses it.)
func TestRestartWithAOF(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
	survived := crashAndRestart(t, srv)
	if !survived.budget || !survived.code {
		t.Errorf("after a crash with AOF: %+v, want everything kept", survived)
	}
}

// survival is what a restart kept.
type survival struct{ budget, code bool }

// crashAndRestart spends a budget and puts a code, kills the server with
// SIGKILL at once, restarts it and reports what it kept.
func crashAndRestart(t *testing.T, srv *redistest.Server) survival {
	t.Helper()
	ctx := t.Context()
	rdb := srv.Client(t)
	s := newStores(rdb, redisstore.Options{})
	spend(t, s.limiter, "the server", failoverLimits[0].N)
	right := []byte("right")
	if err := s.codes.Put(ctx, codeKey, right, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	srv.Restart(t)
	s = newStores(srv.Client(t), redisstore.Options{})
	return survival{
		budget: admitted(t, s.limiter, 1) == 0,
		code:   s.codes.Verify(ctx, codeKey, [][]byte{right}, 5, time.Now()) == nil,
	}
}

// spend reserves n events under "k" and fails t unless all are admitted.
func spend(t *testing.T, l *redisstore.Limiter, where string, n int) {
	t.Helper()
	if got := admitted(t, l, n); got != n {
		t.Fatalf("%s admitted %d of %d events", where, got, n)
	}
}

// admitted tries n events under "k" and returns how many were admitted;
// refusals are counted out and any other error fails t.
func admitted(t *testing.T, l *redisstore.Limiter, n int) int {
	t.Helper()
	got := 0
	for range n {
		_, err := l.Reserve(t.Context(), "k", failoverLimits, time.Now())
		switch {
		case err == nil:
			got++
		case !errors.Is(err, store.ErrRateLimited):
			t.Fatalf("Reserve: %v", err)
		}
	}
	return got
}
