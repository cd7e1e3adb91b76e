package redisstore_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/paired"
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

// pairedWorkers are the worker counts of the paired benchmarks: one,
// where each call waits for its round trips, and eight, as many requests
// in flight as a busy process has.
var pairedWorkers = []int{1, 8}

// updateRequests returns, for each of n workers, the three budgets an
// update-email charges (the user's wrong codes, the IP's, the user's
// changes), under limits no benchmark reaches.
func updateRequests(n int) [][]store.LimitRequest {
	limits := []store.Limit{{N: 1 << 30, Window: time.Hour}}
	reqs := make([][]store.LimitRequest, n)
	for w := range reqs {
		for _, kind := range []string{"wrong-user", "wrong-ip", "changes-user"} {
			reqs[w] = append(reqs[w], store.LimitRequest{Key: kind + "\x00" + strconv.Itoa(w), Limits: limits})
		}
	}
	return reqs
}

// BenchmarkReserveAllVsReserve charges the three budgets of an
// update-email on a Redis of its own: with three Reserves, three round
// trips (floor), and with one ReserveAll, one (impl). Run it as the
// paired package says:
//
//	go test -run '^$' -bench 'VsReserve|VsSeparate' -benchtime 100x -count 10 ./store/redisstore | tee batch.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' batch.txt
func BenchmarkReserveAllVsReserve(b *testing.B) {
	rdb := redistest.StartServer(b).Client(b)
	for _, workers := range pairedWorkers {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			ctx := b.Context()
			l := redisstore.NewLimiter(rdb, redisstore.Options{})
			reqs := updateRequests(workers)
			paired.Run(b, paired.Pair{
				Floor: func(w int) error {
					now := time.Now()
					for _, r := range reqs[w] {
						if _, err := l.Reserve(ctx, r.Key, r.Limits, now); err != nil {
							return err
						}
					}
					return nil
				},
				Impl: func(w int) error {
					_, err := l.ReserveAll(ctx, reqs[w], time.Now())
					return err
				},
				Workers: workers,
			})
		})
	}
}

// BenchmarkCheckCodeVsSeparate is the store work of an update-email on a
// Redis of its own, as the Service does it with stores that are not
// store.CodeCheckers (floor: three Reserves, a Verify and the Cancels of
// the slots the outcome gives back) and with redisstore's (impl: one
// CheckCode). With the right code (match) each operation puts the code
// first, on both sides; with a wrong one (mismatch) the code allows more
// tries than the benchmark makes.
func BenchmarkCheckCodeVsSeparate(b *testing.B) {
	rdb := redistest.StartServer(b).Client(b)
	right, wrong := []byte("right"), []byte("wrong")
	for _, bc := range []struct {
		name  string
		match bool
	}{{"outcome=match", true}, {"outcome=mismatch", false}} {
		for _, workers := range pairedWorkers {
			b.Run(bc.name+"/workers="+strconv.Itoa(workers), func(b *testing.B) {
				ctx := b.Context()
				opts := redisstore.Options{}
				codes, l := redisstore.NewCodeStore(rdb, opts), redisstore.NewLimiter(rdb, opts)
				if !codes.SharesBudgets(l) {
					b.Fatal("the code store does not share the Limiter's budgets")
				}
				reqs := updateRequests(workers)
				keys := make([]store.CodeKey, workers)
				ids := make([][]string, workers)
				for w := range keys {
					keys[w] = store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "user" + strconv.Itoa(w) + "@example.com"}
					ids[w] = make([]string, len(reqs[w]))
					if err := codes.Put(ctx, keys[w], right, time.Now().Add(time.Hour)); err != nil {
						b.Fatal(err)
					}
				}
				hashes, keepOn := [][]byte{wrong}, store.OnMismatch
				var want error = store.ErrCodeInvalid
				if bc.match {
					hashes, want, keepOn = [][]byte{right}, nil, store.OnMatch
				}
				put := func(w int) error {
					if !bc.match {
						return nil
					}
					return codes.Put(ctx, keys[w], right, time.Now().Add(time.Hour))
				}
				outcomes := []store.Outcome{store.OnMismatch, store.OnMismatch, store.OnMatch}
				paired.Run(b, paired.Pair{
					Floor: func(w int) error {
						if err := put(w); err != nil {
							return err
						}
						now := time.Now()
						for i, r := range reqs[w] {
							id, err := l.Reserve(ctx, r.Key, r.Limits, now)
							if err != nil {
								return err
							}
							ids[w][i] = id
						}
						if err := codes.Verify(ctx, keys[w], hashes, 1<<30, now); !errors.Is(err, want) {
							return fmt.Errorf("Verify: %v, want %v", err, want)
						}
						for i, r := range reqs[w] {
							if outcomes[i] != keepOn {
								if err := l.Cancel(ctx, r.Key, ids[w][i]); err != nil {
									return err
								}
							}
						}
						return nil
					},
					Impl: func(w int) error {
						if err := put(w); err != nil {
							return err
						}
						charges := make([]store.Charge, len(reqs[w]))
						for i, r := range reqs[w] {
							charges[i] = store.Charge{LimitRequest: r, KeepOn: outcomes[i]}
						}
						_, err := codes.CheckCode(ctx, store.CodeCheck{Key: keys[w], Hashes: hashes, MaxTries: 1 << 30, Now: time.Now(), Charges: charges})
						if !errors.Is(err, want) {
							return fmt.Errorf("CheckCode: %v, want %v", err, want)
						}
						return nil
					},
					Workers: workers,
				})
			})
		}
	}
}
