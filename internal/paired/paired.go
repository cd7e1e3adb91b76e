// Package paired measures an implementation against a floor inside one
// process, in short alternating batches, and reports their ratios in wall
// time and in process CPU as benchmark metrics that benchstat reads.
//
// Two benchmarks run one after the other each see a different machine when
// other work shares it: on a busy host their figures spread by ±50 % and
// more, and a 3 % difference between them cannot be seen. Here the floor and
// the implementation take turns every few milliseconds, so whatever slows the
// machine down slows both alike, and what is reported is their ratio.
//
// # Quick start
//
// In a _test.go file, one unit of work per function:
//
//	func BenchmarkUpdateEmailVsFloor(b *testing.B) {
//		// set-up: keys, token, handler, one request and recorder per worker
//		paired.Run(b, paired.Pair{
//			Floor: func(w int) error { _, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc); return err },
//			Impl:  func(w int) error { return serve(h, reqs[w], recs[w]) },
//		})
//	}
//
// then 10 rounds and their statistics:
//
//	go test -run '^$' -bench VsFloor -count 10 . | tee vs.txt
//	benchstat vs.txt
//
// benchstat prints one table per metric: x-wall and x-cpu, the ratios, with
// their median over the rounds and its 95 % confidence interval (the ± column),
// then each side's time, CPU time and allocations per operation.
//
// # Method
//
// One call of the benchmark function is one round; -count 10 gives ten.
//
//   - Warm-up: each side runs batches of 1, 2, 4, ... operations until one
//     takes a quarter of Pair.Batch, which gives a first estimate of its cost;
//     then whole batch pairs run for Pair.Warmup. Each side's batch size, in
//     operations, is then fixed for the round from the median cost of its
//     warm-up batches, so that a batch of either side lasts about Pair.Batch
//     (5 ms by default: far above the clock's resolution and the ~1 µs that
//     reading it and the CPU counter cost, far below the period of the noise
//     the method is there to cancel). runtime.GC then runs once, so every round
//     starts from the same heap.
//   - Timed part: b.N batch pairs, a floor batch and an implementation batch
//     each. The order alternates (floor first in even pairs, implementation
//     first in odd ones), so neither side is always the one that runs after
//     the other's garbage or in the other's cache. The benchmark timer runs
//     only here, so -benchtime sets the length of a round: the default 1s
//     gives about 100 pairs at 5 ms, -benchtime 1x a single pair (a smoke test
//     that still warms up, about 0.2 s in all), -benchtime 200x exactly 200.
//     The iteration count that go test prints is this number of pairs.
//   - Each batch records its wall time (time.Now, monotonic) and the process
//     CPU time, user plus system, of every thread (getrusage RUSAGE_SELF,
//     read before and after the batch), and the heap allocations
//     (runtime/metrics, which does not stop the world).
//
// # What the CPU time includes
//
// Process CPU is everything the process does while a batch runs: the
// workers, goroutines the measured code starts, the garbage collector's
// background workers and assists, the runtime's idle spinning. A batch is
// charged with what happens during it. Garbage-collection cycles start when
// the heap reaches its goal, so they start in the batch whose allocations
// reach it, in proportion to each side's allocation; a cycle that outlasts its
// batch charges its tail to the next one, which, with the alternating order,
// is as often the same side as the other. The cost of the collector therefore
// follows the side that allocates, with a small share spilled over to the
// other side, which moves the CPU ratio slightly towards 1. A longer
// Pair.Batch reduces that share. runtime.GC runs before the timed part only:
// collecting before every batch would hide the collector's cost altogether.
//
// With Workers > 1 the CPU per operation is the process CPU of the batch
// divided by its operations: the CPU of every core, so about Workers times
// the wall time per operation for code that keeps its cores busy.
//
// # Which statistic
//
// The ratios x-wall and x-cpu are ratios of sums over the round: the
// implementation's total time per operation over the floor's. Each side's
// total includes its occasional costs, a collection cycle every few dozen
// milliseconds, a map that grows, a pool refilled, which a median of per-pair
// ratios would leave out whenever they touch fewer than half the pairs. And
// the CPU counter's error at a batch boundary (up to one scheduler tick for a
// thread still running on another CPU) appears once as excess in one batch and
// once as deficit in the next, so it cancels in the sums, not in a per-pair
// ratio. Noise from outside the process, which alternation already spreads over
// both sides, is what is left of a round's error; the median over rounds and
// its confidence interval are benchstat's.
//
// The median of the per-pair ratios is reported too, as x-wall-med and
// x-cpu-med: a ratio of sums that differs from it points at costs that come in
// bursts, which is worth a profile before a claim.
//
// # Metrics
//
// Per round, with [testing.B.ReportMetric]:
//
//	x-wall, x-cpu            Impl ÷ Floor: wall time and process CPU per operation (ratio of sums)
//	x-wall-med, x-cpu-med    the median of the same ratios taken pair by pair
//	floor-ns/op, impl-ns/op  wall time per operation (with Workers > 1: batch wall time ÷ operations)
//	floor-cpu-ns/op, impl-cpu-ns/op    process CPU per operation, all cores
//	floor-allocs/op, impl-allocs/op    heap allocations per operation
//
// The framework's ns/op, which would be the time of a batch pair, is dropped;
// B/op and allocs/op, printed with -benchmem, are the implementation's. The
// CPU metrics are left out where getrusage does not exist (Windows, wasm).
package paired

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultBatch is the target wall time of one batch when Pair.Batch is zero.
const DefaultBatch = 5 * time.Millisecond

// DefaultWarmup is how long whole batch pairs run before a round is timed,
// when Pair.Warmup is zero.
const DefaultWarmup = 100 * time.Millisecond

// Pair is what Run compares: two functions that each do one unit of the same
// work, and how to run them. The zero value of every field but Floor and Impl
// is its documented default.
type Pair struct {
	// Floor does one unit of the work that cannot be avoided, such as
	// parsing and verifying a token with the same library and key. It
	// returns an error when the work did not give the expected result;
	// Run then fails the benchmark. worker is the index of the goroutine
	// calling it, from 0 to Workers-1, for state that each worker keeps
	// apart (a request, a ResponseWriter); Floor is never called
	// concurrently with itself for the same worker.
	Floor func(worker int) error

	// Impl does one unit of the implementation that is measured against
	// Floor, under the same rules.
	Impl func(worker int) error

	// Workers is the number of goroutines that run every batch together,
	// sharing its operations: runtime.GOMAXPROCS(0) loads every core.
	// Default: 1, in the benchmark's own goroutine.
	Workers int

	// Batch is the wall time that one batch of either side should take.
	// Default: DefaultBatch (5 ms).
	Batch time.Duration

	// Warmup is how long batch pairs run, after the first calibration and
	// before the timed part, to warm caches and pools and to size the
	// batches. Default: DefaultWarmup (100 ms).
	Warmup time.Duration
}

// Run measures p for one round of b.N batch pairs, after its warm-up, and
// reports the metrics listed in the package documentation. Call it once per
// benchmark function, after the set-up; the benchmark timer runs only over
// the timed pairs. It fails b when Floor or Impl returns an error.
//
// Panics if Floor or Impl is nil, or if Workers, Batch or Warmup is negative.
func Run(b *testing.B, p Pair) {
	curName = b.Name()
	b.StopTimer()
	res, err := measure(p, b.N, func(on bool) {
		if on {
			b.StartTimer()
		} else {
			b.StopTimer()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	res.report(b.ReportMetric)
}

// side indexes the two functions of a Pair.
type side int

const (
	floor side = iota
	impl
)

func (s side) String() string {
	if s == floor {
		return "floor"
	}
	return "impl"
}

// sample is the time one batch took.
type sample struct {
	wall, cpu time.Duration
}

// totals sums the samples of one side over the timed pairs.
type totals struct {
	ops       int64
	wall, cpu time.Duration
}

func (t *totals) add(n int64, s sample) {
	t.ops += n
	t.wall += s.wall
	t.cpu += s.cpu
}

// mem is what one side allocates per operation.
type mem struct {
	allocs, bytes float64
}

func (t totals) perOp(d time.Duration) float64 { return float64(d) / float64(t.ops) }

// result is one round.
type result struct {
	pairs                 int
	cpuOK                 bool
	side                  [2]totals
	mem                   [2]mem
	wallRatio, cpuRatio   float64 // ratios of sums
	wallMedian, cpuMedian float64 // medians of per-pair ratios
}

// report passes every metric of r to metric, as b.ReportMetric takes them.
func (r result) report(metric func(float64, string)) {
	f, i := r.side[floor], r.side[impl]
	metric(0, "ns/op")
	metric(r.wallRatio, "x-wall")
	metric(r.wallMedian, "x-wall-med")
	metric(f.perOp(f.wall), "floor-ns/op")
	metric(i.perOp(i.wall), "impl-ns/op")
	if r.cpuOK {
		metric(r.cpuRatio, "x-cpu")
		metric(r.cpuMedian, "x-cpu-med")
		metric(f.perOp(f.cpu), "floor-cpu-ns/op")
		metric(i.perOp(i.cpu), "impl-cpu-ns/op")
	}
	metric(r.mem[floor].allocs, "floor-allocs/op")
	metric(r.mem[impl].allocs, "impl-allocs/op")
	metric(r.mem[impl].allocs, "allocs/op")
	metric(r.mem[impl].bytes, "B/op")
}

// measure runs the warm-up and then pairs batch pairs of p; timer is called
// with true before the timed pairs and with false after them.
func measure(p Pair, pairs int, timer func(on bool)) (result, error) {
	switch {
	case p.Floor == nil || p.Impl == nil:
		panic("paired: Pair.Floor and Pair.Impl must both be set")
	case p.Workers < 0 || p.Batch < 0 || p.Warmup < 0:
		panic("paired: Pair.Workers, Pair.Batch and Pair.Warmup must not be negative")
	}
	if p.Workers == 0 {
		p.Workers = 1
	}
	if p.Batch == 0 {
		p.Batch = DefaultBatch
	}
	if p.Warmup == 0 {
		p.Warmup = DefaultWarmup
	}
	pairs = max(pairs, 1)

	r := newRunner(p)
	defer r.close()
	if err := r.calibrate(p.Batch, p.Warmup); err != nil {
		return result{}, err
	}
	runtime.GC()

	_, cpuOK := processCPU()
	res := result{pairs: pairs, cpuOK: cpuOK}
	wallRatios := make([]float64, 0, pairs)
	cpuRatios := make([]float64, 0, pairs)
	var dump [][2]sample
	timer(true)
	for i := range pairs {
		var got [2]sample
		for _, s := range order(i) {
			smp, err := r.batch(s, r.n[s])
			if err != nil {
				timer(false)
				return result{}, err
			}
			got[s] = smp
			res.side[s].add(r.n[s], smp)
		}
		dump = append(dump, got)
		wallRatios = append(wallRatios, ratio(got[impl].wall, r.n[impl], got[floor].wall, r.n[floor]))
		cpuRatios = append(cpuRatios, ratio(got[impl].cpu, r.n[impl], got[floor].cpu, r.n[floor]))
	}
	timer(false)
	dumpPairs(p, r.n, wallRatios, cpuRatios, dump)
	for s := range res.mem {
		m, err := r.allocs(side(s))
		if err != nil {
			return result{}, err
		}
		res.mem[s] = m
	}

	f, im := res.side[floor], res.side[impl]
	res.wallRatio = ratio(im.wall, im.ops, f.wall, f.ops)
	res.cpuRatio = ratio(im.cpu, im.ops, f.cpu, f.ops)
	res.wallMedian = median(wallRatios)
	res.cpuMedian = median(cpuRatios)
	return res, nil
}

// order is which side runs first in pair i: the floor in even pairs, the
// implementation in odd ones.
func order(i int) [2]side {
	if i%2 == 0 {
		return [2]side{floor, impl}
	}
	return [2]side{impl, floor}
}

// ratio is (a per op) ÷ (b per op).
func ratio(a time.Duration, aOps int64, b time.Duration, bOps int64) float64 {
	return (float64(a) / float64(aOps)) / (float64(b) / float64(bOps))
}

// median returns the median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// runner runs batches of either side, on the calling goroutine or on a pool
// of workers.
type runner struct {
	ops     [2]func(int) error
	n       [2]int64 // operations per batch, fixed after calibrate
	workers int

	// The pool, when workers > 1: each batch is handed to every worker
	// through its start channel; the workers share its operations through
	// next, grain at a time, and report through done.
	start []chan struct{}
	done  sync.WaitGroup
	op    func(int) error
	total int64
	grain int64
	next  atomic.Int64
	mu    sync.Mutex
	err   error
}

func newRunner(p Pair) *runner {
	r := &runner{ops: [2]func(int) error{p.Floor, p.Impl}, workers: p.Workers}
	if r.workers > 1 {
		r.start = make([]chan struct{}, r.workers)
		for w := range r.start {
			r.start[w] = make(chan struct{}, 1)
			go r.work(w)
		}
	}
	return r
}

// close stops the workers.
func (r *runner) close() {
	for _, c := range r.start {
		close(c)
	}
}

// calibrate sizes the batches of both sides to last about batch each, then
// runs batch pairs for warmup and sizes them again from the median cost of
// those.
func (r *runner) calibrate(batch, warmup time.Duration) error {
	for s := range r.ops {
		for n := int64(1); ; n *= 2 {
			smp, err := r.batch(side(s), n)
			if err != nil {
				return err
			}
			if smp.wall >= batch/4 || n >= 1<<40 {
				r.n[s] = opsPerBatch(batch, float64(smp.wall)/float64(n))
				break
			}
		}
	}
	var costs [2][]float64
	deadline := time.Now().Add(warmup)
	for i := 0; i < 2 || time.Now().Before(deadline); i++ {
		for _, s := range order(i) {
			smp, err := r.batch(s, r.n[s])
			if err != nil {
				return err
			}
			costs[s] = append(costs[s], float64(smp.wall)/float64(r.n[s]))
		}
	}
	for s := range r.n {
		r.n[s] = opsPerBatch(batch, median(costs[s]))
	}
	return nil
}

// opsPerBatch is how many operations of cost perOp (in nanoseconds) fill a
// batch: at least one.
func opsPerBatch(batch time.Duration, perOp float64) int64 {
	return max(1, int64(float64(batch)/max(perOp, 1)+0.5))
}

// batch runs n operations of side s and returns what they cost.
func (r *runner) batch(s side, n int64) (sample, error) {
	c0, _ := processCPU()
	start := time.Now()

	var err error
	if r.workers == 1 {
		err = runOps(r.ops[s], 0, n)
	} else {
		err = r.parallel(r.ops[s], n)
	}

	wall := time.Since(start)
	c1, _ := processCPU()
	if err != nil {
		return sample{}, fmt.Errorf("paired: %v: %w", s, err)
	}
	return sample{wall: wall, cpu: c1 - c0}, nil
}

// allocs runs one batch of side s between two runtime.ReadMemStats, which
// stop the world and flush every P's allocation cache, so the count is exact
// (the cheaper runtime/metrics counters count a whole span when a cache
// takes one, which blurs a 5 ms batch). It runs after the timed pairs.
func (r *runner) allocs(s side) (mem, error) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if _, err := r.batch(s, r.n[s]); err != nil {
		return mem{}, err
	}
	runtime.ReadMemStats(&m1)
	n := float64(r.n[s])
	return mem{
		allocs: float64(m1.Mallocs-m0.Mallocs) / n,
		bytes:  float64(m1.TotalAlloc-m0.TotalAlloc) / n,
	}, nil
}

// runOps calls op n times for worker w, and stops at the first error.
func runOps(op func(int) error, w int, n int64) error {
	for range n {
		if err := op(w); err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
	}
	return nil
}

// parallel runs n operations of op on the pool and waits for them.
func (r *runner) parallel(op func(int) error, n int64) error {
	// A grain of a hundredth of a worker's share keeps the atomic counter
	// cold for fast operations, and the last grain, which may leave the
	// other workers idle at the end of a batch, short.
	r.op, r.total, r.grain, r.err = op, n, max(1, n/int64(100*r.workers)), nil
	r.next.Store(0)
	r.done.Add(r.workers)
	for _, c := range r.start {
		c <- struct{}{}
	}
	r.done.Wait()
	return r.err
}

// work is worker w of the pool: it runs its share of every batch it is
// handed until the pool is closed.
func (r *runner) work(w int) {
	for range r.start[w] {
		for {
			lo := r.next.Add(r.grain) - r.grain
			if lo >= r.total {
				break
			}
			if err := runOps(r.op, w, min(r.grain, r.total-lo)); err != nil {
				r.mu.Lock()
				r.err = errors.Join(r.err, err)
				r.mu.Unlock()
				r.next.Store(r.total)
				break
			}
		}
		r.done.Done()
	}
}
