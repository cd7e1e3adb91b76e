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
// In a _test.go file, with one unit of work per function:
//
//	func BenchmarkUpdateEmailVsFloor(b *testing.B) {
//		// set-up: key, token, handler; a request and a recorder per worker
//		paired.Run(b, paired.Pair{
//			Floor: func(int) error {
//				_, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc)
//				return err
//			},
//			Impl: func(w int) error { return serve(h, reqs[w], recs[w]) },
//		})
//	}
//
// then 10 rounds of about 1 s each, and their statistics:
//
//	go test -run '^$' -bench VsFloor -benchtime 100x -count 10 . | tee vs.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' vs.txt
//
// benchstat prints one table per metric: for x-wall and x-cpu, the ratios, the
// median of the rounds and its 95 % confidence interval (the ± column).
// Without the filter it also prints the ratios of sums and each side's time,
// CPU time and allocations per operation. BenchmarkFloorVsFloor in this package's
// tests is a complete example.
//
// # Rounds and batches
//
// One call of the benchmark function is one round; -count 10 gives ten.
//
//   - Warm-up: each side runs batches of 1, 2, 4, ... operations until one
//     lasts a quarter of Pair.Batch, which gives a first estimate of its cost;
//     then batch pairs run for Pair.Warmup (at least 4 pairs), each sizing the
//     batches again from the lower quartile of the costs per operation seen so
//     far (a batch that lost the CPU only looks more expensive). Each side's
//     batch size, in operations, is then fixed for the round, so that a batch
//     of either side lasts about Pair.Batch: 5 ms by default, thousands of
//     times the clock's resolution and the ~1 µs that reading the clock and
//     the CPU counter costs, and short enough for both batches of a pair to
//     see the same machine. runtime.GC then runs once, so that every round
//     starts from the same heap.
//   - Timed part: b.N batch pairs, a floor batch and an implementation batch
//     each. The order alternates, floor first in even pairs and
//     implementation first in odd ones, so that neither side is always the
//     one that runs in the other's cache or pays for the other's garbage. The
//     benchmark timer runs only here, so -benchtime sets the length of a
//     round: -benchtime 100x gives exactly 100 pairs (about 1 s); the default
//     1s also works but often ends in a second, longer call, because go test
//     grows b.N from 1 to at most 100 and 100 pairs fall just short of 1 s;
//     -benchtime 1x is one pair after the warm-up, a smoke test of about 0.2 s.
//     The iteration count that go test prints is this number of pairs.
//   - Each batch records its wall time (time.Now, monotonic) and the process
//     CPU time, user plus system, of every thread (getrusage RUSAGE_SELF,
//     read before and after the batch).
//   - After the timed part, one more batch of each side runs between two
//     runtime.ReadMemStats for the exact allocation counts.
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
// is as often the same side as the other. The collector's cost therefore
// follows the side that allocates, with a share spilled over to the other
// side that moves the CPU ratio slightly towards 1; a longer Pair.Batch
// reduces that share. runtime.GC runs before the timed part only: collecting
// before every batch would hide the collector's cost altogether.
//
// With Workers > 1 the CPU per operation is the process CPU of the batch
// divided by its operations: the CPU of every core, about Workers times the
// wall time per operation for code that keeps its cores busy. On Linux the
// counter is exact for the thread that reads it and lags by up to one
// scheduler tick for a thread still running on another CPU; the reading is
// taken when every worker has finished its share, so the lag is left to
// goroutines the measured code started and to the collector.
//
// # Which statistic
//
// x-wall and x-cpu are, per round, the median over the pairs of the pair's
// ratio: the implementation's time per operation in its batch over the
// floor's in its batch. On a busy machine a batch loses the CPU now and then
// for a few milliseconds, which adds to its wall time and not to the other
// batch of the pair. Both batches last the same time by construction, so such
// losses are as likely on either side and their effect on a pair's ratio is
// as likely up as down: the median of the pairs hardly moves, however long
// the losses, while a ratio of sums over the round takes each of them in
// full. CPU time does not grow while a batch waits, but it varies with what
// other programs do to the caches, and the same median serves it. With
// BenchmarkFloorVsFloor on a 2-vCPU VM shared with compilations and a bursty
// load, 10 rounds: x-wall and x-cpu ±0–3 %, x-wall-sum ±7–24 %, and each
// side's own time per operation ±9–205 %.
//
// The median has a price: a cost that comes in bursts touching fewer than
// half the pairs, typically garbage-collection cycles, is partly left out. So
// each round also reports the ratios of sums, x-wall-sum and x-cpu-sum, which
// count every such cost in full and are noisier. When they differ from x-wall
// and x-cpu by more than their ±, which a side that allocates much more than
// the other does, a longer Pair.Batch brings the two together, or the claim
// quotes the sum. With 32 KiB of extra garbage per RS256 verification: 5 ms
// batches gave x-cpu 1.36 and x-cpu-sum 1.40, 20 ms batches (with
// -benchtime 25x) 1.42 and 1.41.
//
// # Metrics
//
// Per round, with [testing.B.ReportMetric]:
//
//	x-wall, x-cpu            Impl ÷ Floor, wall time and process CPU per operation: median of the pairs
//	x-wall-sum, x-cpu-sum    the same as a ratio of the sums over the round
//	floor-ns/op, impl-ns/op  wall time per operation over the round (with Workers > 1: batch wall time ÷ operations)
//	floor-cpu-ns/op, impl-cpu-ns/op    process CPU per operation over the round, all cores
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
	// apart (a request, a ResponseWriter): calls for one worker never
	// overlap, and Floor and Impl never run at the same time.
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
// the timed pairs, so -benchtime 100x makes a round of 100 pairs. It fails b
// when Floor or Impl returns an error.
//
// Panics if Floor or Impl is nil, or if Workers, Batch or Warmup is negative.
func Run(b *testing.B, p Pair) {
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

func (t totals) perOp(d time.Duration) float64 { return float64(d) / float64(t.ops) }

// mem is what one side allocates per operation.
type mem struct {
	allocs, bytes float64
}

// result is one round.
type result struct {
	cpuOK           bool
	side            [2]totals
	mem             [2]mem
	wall, cpu       float64 // medians of the per-pair ratios
	wallSum, cpuSum float64 // ratios of the sums over the round
}

// report passes every metric of r to metric, as b.ReportMetric takes them.
func (r result) report(metric func(float64, string)) {
	f, i := r.side[floor], r.side[impl]
	metric(0, "ns/op")
	metric(r.wall, "x-wall")
	metric(r.wallSum, "x-wall-sum")
	metric(f.perOp(f.wall), "floor-ns/op")
	metric(i.perOp(i.wall), "impl-ns/op")
	if r.cpuOK {
		metric(r.cpu, "x-cpu")
		metric(r.cpuSum, "x-cpu-sum")
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
	res := result{cpuOK: cpuOK}
	wall := make([]float64, 0, pairs)
	cpu := make([]float64, 0, pairs)
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
		wall = append(wall, ratio(got[impl].wall, r.n[impl], got[floor].wall, r.n[floor]))
		cpu = append(cpu, ratio(got[impl].cpu, r.n[impl], got[floor].cpu, r.n[floor]))
	}
	timer(false)
	for s := range res.mem {
		m, err := r.allocs(side(s))
		if err != nil {
			return result{}, err
		}
		res.mem[s] = m
	}

	f, i := res.side[floor], res.side[impl]
	res.wall, res.cpu = median(wall), median(cpu)
	res.wallSum = ratio(i.wall, i.ops, f.wall, f.ops)
	res.cpuSum = ratio(i.cpu, i.ops, f.cpu, f.ops)
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

// minWarmupPairs is the least number of batch pairs a warm-up runs,
// however long they take.
const minWarmupPairs = 4

// calibrate sizes the batches of both sides to last about batch each: a
// first estimate from batches of doubling size, then batch pairs for at least
// warmup (and minWarmupPairs), each pair sizing the batches again from the
// lower quartile of the costs per operation seen so far. A batch that loses
// the CPU for a while only looks more expensive, so the lower quartile
// ignores such batches where a median of a few would not; what it gives up is
// a few per cent of batch length, when some batches are genuinely cheaper.
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
	for i := 0; i < minWarmupPairs || time.Now().Before(deadline); i++ {
		for _, s := range order(i) {
			smp, err := r.batch(s, r.n[s])
			if err != nil {
				return err
			}
			costs[s] = append(costs[s], float64(smp.wall)/float64(r.n[s]))
			r.n[s] = opsPerBatch(batch, lowerQuartile(costs[s]))
		}
	}
	return nil
}

// lowerQuartile returns the lower quartile of xs (the smallest of one to
// four values), leaving xs as it was.
func lowerQuartile(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/4]
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
