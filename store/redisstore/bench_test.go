package redisstore_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// replicaCases are the settings whose cost the benchmarks compare: no
// wait, and WAIT for the one replica of a loopback pair.
var replicaCases = []struct {
	name string
	opts redisstore.Options
}{
	{"Replicas=0", redisstore.Options{}},
	{"Replicas=1", redisstore.Options{Replicas: 1, ReplicaTimeout: time.Second}},
}

// BenchmarkReserve measures an admitted Reserve, with and without waiting
// for the replica.
func BenchmarkReserve(b *testing.B) {
	pr := startPair(b, false)
	limits := []store.Limit{{N: 1 << 30, Window: time.Hour}}
	for _, bc := range replicaCases {
		b.Run(bc.name, func(b *testing.B) {
			l := redisstore.NewLimiter(pr.primary, bc.opts)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := l.Reserve(b.Context(), "k"+strconv.Itoa(i%64), limits, time.Now()); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkVerify measures a wrong try, which counts one (a write), with
// and without waiting for the replica.
func BenchmarkVerify(b *testing.B) {
	pr := startPair(b, false)
	for _, bc := range replicaCases {
		b.Run(bc.name, func(b *testing.B) {
			codes := redisstore.NewCodeStore(pr.primary, bc.opts)
			if err := codes.Put(b.Context(), codeKey, []byte("right"), time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := codes.Verify(b.Context(), codeKey, [][]byte{[]byte("wrong")}, 1<<30, time.Now()); err != store.ErrCodeInvalid {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplicationLag measures the window of a healthy pair: from the
// primary's answer to a write until the replica shows it (read in a
// loop, so the figure includes up to one read's round trip).
func BenchmarkReplicationLag(b *testing.B) {
	pr := startPair(b, false)
	ctx := b.Context()
	var lag time.Duration
	for b.Loop() {
		n, err := pr.primary.Incr(ctx, "lag").Result()
		if err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		for {
			v, err := pr.replica.Get(ctx, "lag").Int64()
			if err == nil && v >= n {
				break
			}
		}
		lag += time.Since(written)
	}
	b.ReportMetric(float64(lag.Nanoseconds())/float64(b.N), "lag-ns/op")
}

// BenchmarkReserveAOF measures an admitted Reserve under each persistence
// setting: the cost of appendfsync always, which keeps every reported
// event through a crash, against everysec, which may lose the last
// seconds.
func BenchmarkReserveAOF(b *testing.B) {
	limits := []store.Limit{{N: 1 << 30, Window: time.Hour}}
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"everysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}},
		{"always", []string{"--appendonly", "yes", "--appendfsync", "always"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := redisstore.NewLimiter(redistest.StartServer(b, bc.args...).Client(b), redisstore.Options{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := l.Reserve(b.Context(), "k"+strconv.Itoa(i%64), limits, time.Now()); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
