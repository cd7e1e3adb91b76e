package memstore_test

import (
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

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
	elapsed            time.Duration
}

// flood does what the send-code endpoint does for n distinct addresses,
// one after the other: a Reserve of the address's send budget, then a Put
// of its code, each timed on its own. Both stores get opts.
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
// million addresses, the attack that filled the old stores without bound:
// once with room for all of them, once with the default cap, which refuses
// the addresses beyond it with store.ErrFull and keeps memory flat. Run it
// with -benchtime=1x; each op is the whole flood.
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
		if err := s.Verify(b.Context(), key, hash, 5, now); err != nil {
			b.Fatal(err)
		}
	}
}
