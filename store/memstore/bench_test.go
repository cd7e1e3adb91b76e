package memstore_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// floodResult is what a flood of distinct addresses did to the stores.
type floodResult struct {
	peakHeap, liveHeap uint64        // bytes: HeapInuse at its highest, HeapAlloc after a GC at the end
	worstReserve       time.Duration // the slowest Limiter.Reserve
	worstPut           time.Duration // the slowest CodeStore.Put
	slow               int           // calls over a millisecond
	full               int           // calls refused with store.ErrFull
	limited            int           // fresh addresses refused by their budget: early refusals
	elapsed            time.Duration
}

// flood does what the send-code endpoint does for n distinct addresses,
// one after the other: a Reserve of the address's send budget, then a Put
// of its code, each timed on its own. Both stores get opts. Every address
// is fresh, so a refusal by its budget is an early one.
func flood(tb testing.TB, n int, opts memstore.Options) floodResult {
	tb.Helper()
	ctx := tb.Context()
	limiter, codes := memstore.NewLimiter(opts), memstore.NewCodeStore(opts)
	limits := []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}
	hash := make([]byte, 32)
	var r floodResult
	var ms runtime.MemStats
	runtime.GC()
	start := time.Now()
	for i := range n {
		email := "user" + strconv.Itoa(i) + "@example.com"
		t0 := time.Now()
		_, err := limiter.Reserve(ctx, "UPDATE_EMAIL_EMS\x00"+email, limits, t0)
		t1 := time.Now()
		err2 := codes.Put(ctx, store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: email}, hash, t1.Add(10*time.Minute))
		t2 := time.Now()
		for _, e := range []error{err, err2} {
			switch {
			case errors.Is(e, store.ErrFull):
				r.full++
			case errors.Is(e, store.ErrRateLimited):
				r.limited++
			case e != nil:
				tb.Fatalf("address %d: %v", i, e)
			}
		}
		for _, d := range []time.Duration{t1.Sub(t0), t2.Sub(t1)} {
			if d > time.Millisecond {
				r.slow++
			}
		}
		r.worstReserve, r.worstPut = max(r.worstReserve, t1.Sub(t0)), max(r.worstPut, t2.Sub(t1))
		if i%10_000 == 0 {
			runtime.ReadMemStats(&ms)
			r.peakHeap = max(r.peakHeap, ms.HeapInuse)
		}
	}
	r.elapsed = time.Since(start)
	runtime.ReadMemStats(&ms)
	r.peakHeap = max(r.peakHeap, ms.HeapInuse)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	r.liveHeap = ms.HeapAlloc
	runtime.KeepAlive(limiter)
	runtime.KeepAlive(codes)
	return r
}

// BenchmarkMillionAddresses floods a Limiter and a CodeStore with a
// million addresses in a few seconds, the attack that filled the stores
// without bound before they had a cap and locked everyone out once they
// had one: once with room for all of them, once with the default cap, past
// which the CodeStore evicts the oldest codes and the Limiter moves the
// oldest keys into its sketch. Memory stays flat; early-refusals counts
// the fresh addresses whose budget the sketch refused (a million keys in
// seconds crowd the sketch within a minute's window). Run it with
// -benchtime=1x; each op is the whole flood.
func BenchmarkMillionAddresses(b *testing.B) {
	const addresses = 1_000_000
	for _, bc := range []struct {
		name string
		opts memstore.Options
	}{
		{"MaxEntries=1M", memstore.Options{MaxEntries: addresses}},
		{"MaxEntries=default", memstore.Options{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var r floodResult
			for b.Loop() {
				r = flood(b, addresses, bc.opts)
			}
			b.ReportMetric(float64(r.peakHeap)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(r.liveHeap)/(1<<20), "live-heap-MiB")
			b.ReportMetric(float64(r.worstReserve)/1e6, "max-reserve-ms")
			b.ReportMetric(float64(r.worstPut)/1e6, "max-put-ms")
			b.ReportMetric(float64(r.slow), "calls>1ms")
			b.ReportMetric(float64(r.full), "ErrFull")
			b.ReportMetric(float64(r.limited), "early-refusals")
			b.ReportMetric(float64(r.elapsed.Nanoseconds())/(2*addresses), "ns/call")
		})
	}
}

// BenchmarkReserve is one Reserve of a held key's send budget, refused
// after the first: the cost of a client that keeps asking.
func BenchmarkReserve(b *testing.B) {
	b.ReportAllocs()
	l := memstore.NewLimiter()
	limits := []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}
	now := time.Now()
	for b.Loop() {
		_, _ = l.Reserve(b.Context(), "UPDATE_EMAIL_EMS\x00alice@example.com", limits, now)
	}
}

// BenchmarkPutVerify is a Put and a matching Verify of one code.
func BenchmarkPutVerify(b *testing.B) {
	b.ReportAllocs()
	s := memstore.NewCodeStore()
	key := store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "alice@example.com"}
	hash := make([]byte, 32)
	for b.Loop() {
		now := time.Now()
		if err := s.Put(b.Context(), key, hash, now.Add(10*time.Minute)); err != nil {
			b.Fatal(err)
		}
		if err := s.Verify(b.Context(), key, [][]byte{hash}, 5, now); err != nil {
			b.Fatal(err)
		}
	}
}

// fullLimiter returns a Limiter of the default size holding as many
// address budgets as it has room for, reserved at now.
func fullLimiter(tb testing.TB, now time.Time) *memstore.Limiter {
	l := memstore.NewLimiter()
	for i := range memstore.DefaultMaxEntries {
		if _, err := l.Reserve(tb.Context(), "fill\x00"+strconv.Itoa(i), sendsPerAddress, now); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// sendsPerAddress is the default send budget of one address.
var sendsPerAddress = []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}

// BenchmarkReserveNewKeyWhenFull is a Reserve of a new address's budget
// in a Limiter of the default size that holds as many keys as it may, a
// millisecond after the last: each moves the oldest key into the sketch.
// It reports the calls refused (store.ErrFull before the sketch; early
// refusals by the sketch after: none at this pace, a thousand new keys a
// second, under MaxEntries a minute).
func BenchmarkReserveNewKeyWhenFull(b *testing.B) {
	b.ReportAllocs()
	now := time.Now()
	l := fullLimiter(b, now)
	now = now.Add(2 * time.Minute)
	var r refusals
	i := 0
	for b.Loop() {
		i++
		_, err := l.Reserve(b.Context(), "new\x00"+strconv.Itoa(i), sendsPerAddress, now.Add(time.Duration(i)*time.Millisecond))
		r.count(err)
	}
	b.ReportMetric(float64(r.full)/float64(i), "ErrFull/op")
	b.ReportMetric(float64(r.limited)/float64(i), "refused/op")
}

// refusals counts the errors of calls by kind.
type refusals struct{ full, limited int }

// count counts err. (A switch on errors.Is written in a b.Loop body makes
// the Go 1.26.8 compiler crash.)
func (r *refusals) count(err error) {
	switch {
	case errors.Is(err, store.ErrFull):
		r.full++
	case errors.Is(err, store.ErrRateLimited):
		r.limited++
	}
}

// BenchmarkPutNewKeyWhenFull is a Put of a new address's code in a
// CodeStore of the default size that holds as many live codes as it may:
// each evicts the oldest.
func BenchmarkPutNewKeyWhenFull(b *testing.B) {
	b.ReportAllocs()
	s := memstore.NewCodeStore()
	hash := make([]byte, 32)
	exp := time.Now().Add(time.Hour)
	for i := range memstore.DefaultMaxEntries {
		if err := s.Put(b.Context(), store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "fill" + strconv.Itoa(i)}, hash, exp); err != nil {
			b.Fatal(err)
		}
	}
	var r refusals
	i := 0
	for b.Loop() {
		i++
		r.count(s.Put(b.Context(), store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "new" + strconv.Itoa(i)}, hash, exp.Add(time.Duration(i))))
	}
	b.ReportMetric(float64(r.full)/float64(i), "ErrFull/op")
}

// updateBudgets returns, for each of n workers, the three budgets an
// update-email charges (the user's wrong codes, the IP's, the user's
// changes), under limits no benchmark reaches, each key holding one event
// already, as a returning user's would.
func updateBudgets(b *testing.B, l *memstore.Limiter, n int, now time.Time) [][]store.LimitRequest {
	limits := []store.Limit{{N: 1 << 20, Window: time.Hour}}
	reqs := make([][]store.LimitRequest, n)
	for w := range reqs {
		for _, kind := range []string{"wrong-user", "wrong-ip", "changes-user"} {
			key := kind + "\x00" + strconv.Itoa(w)
			if _, err := l.Reserve(b.Context(), key, limits, now); err != nil {
				b.Fatal(err)
			}
			reqs[w] = append(reqs[w], store.LimitRequest{Key: key, Limits: limits})
		}
	}
	return reqs
}

// benchWorkers are the worker counts of the paired benchmarks: one, and
// one a core, where the workers contend for the Limiter's lock.
func benchWorkers() []int {
	if n := runtime.GOMAXPROCS(0); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// BenchmarkReserveAllVsReserve charges the three budgets of an
// update-email and gives them back (which keeps the logs as they were):
// with three Reserves and three Cancels (floor), and with one ReserveAll
// and one CancelAll (impl), on one Limiter shared by the workers. Run it
// as the paired package says:
//
//	go test -run '^$' -bench VsReserve -benchtime 100x -count 10 ./store/memstore | tee batch.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' batch.txt
func BenchmarkReserveAllVsReserve(b *testing.B) {
	for _, workers := range benchWorkers() {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			ctx := b.Context()
			now := time.Now()
			l := memstore.NewLimiter()
			reqs := updateBudgets(b, l, workers, now)
			ids := make([][]store.Reservation, workers)
			for w := range ids {
				ids[w] = make([]store.Reservation, len(reqs[w]))
			}
			paired.Run(b, paired.Pair{
				Floor: func(w int) error {
					for i, r := range reqs[w] {
						id, err := l.Reserve(ctx, r.Key, r.Limits, now)
						if err != nil {
							return err
						}
						ids[w][i] = store.Reservation{Key: r.Key, ID: id}
					}
					for _, r := range ids[w] {
						if err := l.Cancel(ctx, r.Key, r.ID); err != nil {
							return err
						}
					}
					return nil
				},
				Impl: func(w int) error {
					got, err := l.ReserveAll(ctx, reqs[w], now)
					if err != nil {
						return err
					}
					for i, id := range got {
						ids[w][i] = store.Reservation{Key: reqs[w][i].Key, ID: id}
					}
					return l.CancelAll(ctx, ids[w])
				},
				Workers: workers,
			})
		})
	}
}

// BenchmarkUpdateBudgetsVsSeparate is the store work of an update-email
// with a wrong code in memory, as the Service does it with each Limiter:
// three Reserves, a Verify and a Cancel of the change's slot (floor)
// against one ReserveAll, the Verify and one CancelAll (impl). The code
// allows more tries than the benchmark makes; the slots kept on the wrong
// code are given back as well, on both sides, so that the logs stay as
// they were.
func BenchmarkUpdateBudgetsVsSeparate(b *testing.B) {
	for _, workers := range benchWorkers() {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			ctx := b.Context()
			now := time.Now()
			l, codes := memstore.NewLimiter(), memstore.NewCodeStore()
			reqs := updateBudgets(b, l, workers, now)
			keys := make([]store.CodeKey, workers)
			ids := make([][]store.Reservation, workers)
			right, wrong := [][]byte{make([]byte, 32)}, [][]byte{{1}}
			for w := range keys {
				keys[w] = store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "user" + strconv.Itoa(w) + "@example.com"}
				if err := codes.Put(ctx, keys[w], right[0], now.Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
				ids[w] = make([]store.Reservation, len(reqs[w]))
			}
			verify := func(w int) error {
				if err := codes.Verify(ctx, keys[w], wrong, 1<<30, now); err != store.ErrCodeInvalid {
					return fmt.Errorf("Verify(wrong): %v", err)
				}
				return nil
			}
			paired.Run(b, paired.Pair{
				Floor: func(w int) error {
					for i, r := range reqs[w] {
						id, err := l.Reserve(ctx, r.Key, r.Limits, now)
						if err != nil {
							return err
						}
						ids[w][i] = store.Reservation{Key: r.Key, ID: id}
					}
					if err := verify(w); err != nil {
						return err
					}
					for _, r := range ids[w] {
						if err := l.Cancel(ctx, r.Key, r.ID); err != nil {
							return err
						}
					}
					return nil
				},
				Impl: func(w int) error {
					got, err := l.ReserveAll(ctx, reqs[w], now)
					if err != nil {
						return err
					}
					for i, id := range got {
						ids[w][i] = store.Reservation{Key: reqs[w][i].Key, ID: id}
					}
					if err := verify(w); err != nil {
						return err
					}
					return l.CancelAll(ctx, ids[w])
				},
				Workers: workers,
			})
		})
	}
}
