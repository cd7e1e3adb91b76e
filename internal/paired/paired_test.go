package paired

import (
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The tests time real work, so they use short batches and few pairs (each
// measure call takes about 0.1 s) and bounds wide enough for a busy machine:
// what they check is that the harness gets the ratios right to the first
// digit, not the precision that BenchmarkFloorVsFloor shows.

// fast is the configuration of the tests: 1 ms batches, 10 ms of warm-up.
func fast(floor, impl func(int) error, workers int) Pair {
	return Pair{Floor: floor, Impl: impl, Workers: workers, Batch: time.Millisecond, Warmup: 10 * time.Millisecond}
}

// testPairs is the number of timed pairs per measure call in the tests.
const testPairs = 40

// sinks keeps the result of spin per worker, each on a cache line of its own,
// so that the compiler cannot drop the work and the workers share nothing.
var sinks [8]struct {
	v uint64
	_ [56]byte
}

// spin returns an op doing k rounds of xorshift: pure CPU work whose cost
// is proportional to k.
func spin(k int) func(int) error {
	return func(w int) error {
		x := uint64(w) + 88172645463325252
		for range k {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		sinks[w%len(sinks)].v = x
		return nil
	}
}

// sleep returns an op that waits for d without using the CPU.
func sleep(d time.Duration) func(int) error {
	return func(int) error {
		time.Sleep(d)
		return nil
	}
}

func measureT(t *testing.T, p Pair) result {
	t.Helper()
	res, err := measure(p, testPairs, func(bool) {})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func checkRange(t *testing.T, what string, got, lo, hi float64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %.3f, want within [%.2f, %.2f]", what, got, lo, hi)
	}
}

func TestRatios(t *testing.T) {
	const k = 20_000 // about 20 µs of work
	tests := []struct {
		name    string
		floor   func(int) error
		impl    func(int) error
		workers int
		wantLo  float64
		wantHi  float64
	}{
		{"identical", spin(k), spin(k), 1, 0.8, 1.25},
		{"identical/workers=2", spin(k), spin(k), 2, 0.8, 1.25},
		{"double", spin(k), spin(2 * k), 1, 1.6, 2.5},
		{"double/workers=2", spin(k), spin(2 * k), 2, 1.6, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := measureT(t, fast(tt.floor, tt.impl, tt.workers))
			t.Logf("x-wall %.3f, x-wall-sum %.3f, x-cpu %.3f, x-cpu-sum %.3f", res.wall, res.wallSum, res.cpu, res.cpuSum)
			checkRange(t, "x-wall", res.wall, tt.wantLo, tt.wantHi)
			// A ratio of sums takes a stall of the machine in full, which is
			// why it is not the main statistic: a 40 ms stall turns 2 into 4
			// in a test this short. Its CPU twin, which stalls do not move,
			// is checked loosely.
			if !(res.wallSum > 0) {
				t.Errorf("x-wall-sum = %v, want a positive ratio", res.wallSum)
			}
			if res.cpuOK {
				checkRange(t, "x-cpu", res.cpu, tt.wantLo, tt.wantHi)
				checkRange(t, "x-cpu-sum", res.cpuSum, tt.wantLo*0.6, tt.wantHi*1.6)
			}
			for s, m := range res.mem {
				// Allow for a stray allocation of the runtime or the test
				// framework within a batch of dozens of operations.
				checkRange(t, side(s).String()+" allocs/op", m.allocs, 0, 0.1)
			}
			if res.side[floor].ops < testPairs || res.side[impl].ops < testPairs {
				t.Errorf("ops = %d, %d; want at least one per batch", res.side[floor].ops, res.side[impl].ops)
			}
		})
	}
}

// TestBatchesLastAlike checks the calibration: both sides' batches last
// about Pair.Batch, so a side 25 times cheaper runs about 25 times as many
// operations per batch. On a loaded machine every warm-up batch of a side
// may lose the CPU (CI runs this beside two busy loops: 64 times as many
// once, with 10 ms of warm-up), so the warm-up is longer than fast's and
// the band is a factor of 5 either way: calibration that ignored the cost
// would give 1, one that inverted it 625.
func TestBatchesLastAlike(t *testing.T) {
	p := fast(spin(2_000), spin(50_000), 1)
	p.Warmup = 50 * time.Millisecond
	res := measureT(t, p)
	f, i := res.side[floor], res.side[impl]
	if r := float64(f.ops) / float64(i.ops); r < 5 || r > 125 {
		t.Errorf("the floor ran %d operations and the implementation %d, want about 25 times as many", f.ops, i.ops)
	}
}

// TestCPUIsNotWall: a sleeping op costs wall time and almost no CPU. The
// floor does a fixed amount of work rather than spinning for a fixed wall
// time: on a loaded machine a 200 µs wall-clock spin got half that in CPU,
// and x-cpu reached 0.59. Nothing here depends on how busy the machine is:
// the sleep lasts at least its duration whatever the load, the CPU it uses
// is the runtime's wake-up, and the floor's CPU is its work.
func TestCPUIsNotWall(t *testing.T) {
	const nap = 200 * time.Microsecond
	res := measureT(t, fast(spin(500_000), sleep(nap), 1)) // about 1 ms of CPU per op
	if !res.cpuOK {
		t.Skip("no process CPU counter on this system")
	}
	f, i := res.side[floor], res.side[impl]
	t.Logf("x-wall %.3f, x-cpu %.3f; floor %.0f ns/op, %.0f cpu-ns/op; impl %.0f ns/op, %.0f cpu-ns/op",
		res.wall, res.cpu, f.perOp(f.wall), f.perOp(f.cpu), i.perOp(i.wall), i.perOp(i.cpu))
	if wall := i.perOp(i.wall); wall < float64(nap) {
		t.Errorf("sleeping %v took %.0f ns/op of wall time, want at least the sleep", nap, wall)
	}
	if cpu, wall := i.perOp(i.cpu), i.perOp(i.wall); cpu > wall/2 {
		t.Errorf("sleeping %v used %.0f cpu-ns/op in %.0f ns/op, want less than half: the CPU counter counted the sleep", nap, cpu, wall)
	}
	if res.cpu > 0.5 {
		t.Errorf("x-cpu = %.3f, want at most 0.5: waking from a sleep costs far less CPU than 1 ms of work", res.cpu)
	}
}

func TestAllocs(t *testing.T) {
	var keep [][]byte
	alloc := func(int) error {
		keep = append(keep[:0], make([]byte, 64), make([]byte, 64))
		return nil
	}
	res := measureT(t, fast(spin(1000), alloc, 1))
	checkRange(t, "floor allocs/op", res.mem[floor].allocs, 0, 0.1)
	checkRange(t, "impl allocs/op", res.mem[impl].allocs, 2, 2.1)
	checkRange(t, "impl B/op", res.mem[impl].bytes, 128, 140)
}

func TestErrors(t *testing.T) {
	errBad := errors.New("bad answer")
	failOn := func(w int) func(int) error {
		return func(worker int) error {
			if worker == w {
				return errBad
			}
			return nil
		}
	}
	tests := []struct {
		name   string
		p      Pair
		wantIn []string
	}{
		{"floor", fast(failOn(0), spin(10), 1), []string{"floor", "worker 0"}},
		{"impl", fast(spin(10), failOn(0), 1), []string{"impl", "worker 0"}},
		{"impl/workers=2", fast(spin(10), failOn(1), 2), []string{"impl", "worker 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := measure(tt.p, 1, func(bool) {})
			if !errors.Is(err, errBad) {
				t.Fatalf("err = %v, want errBad", err)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to name %q", err, s)
				}
			}
		})
	}
}

func TestInvalidPairPanics(t *testing.T) {
	op := spin(10)
	tests := []struct {
		name string
		p    Pair
	}{
		{"no floor", Pair{Impl: op}},
		{"no impl", Pair{Floor: op}},
		{"negative workers", Pair{Floor: op, Impl: op, Workers: -1}},
		{"negative batch", Pair{Floor: op, Impl: op, Batch: -time.Millisecond}},
		{"negative warm-up", Pair{Floor: op, Impl: op, Warmup: -time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("measure did not panic")
				}
			}()
			_, _ = measure(tt.p, 1, func(bool) {})
		})
	}
}

func TestOrderAlternates(t *testing.T) {
	for i, want := range [][2]side{{floor, impl}, {impl, floor}, {floor, impl}, {impl, floor}} {
		if got := order(i); got != want {
			t.Errorf("order(%d) = %v, want %v", i, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, 1, 1, 100}, 1},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestRunOnce runs Run as go test -bench -benchtime 1x would: one pair after
// the warm-up, quickly, with every metric and without the framework's ns/op.
func TestRunOnce(t *testing.T) {
	f := flag.Lookup("test.benchtime")
	old := f.Value.String()
	if err := f.Value.Set("1x"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })

	start := time.Now()
	r := testing.Benchmark(func(b *testing.B) {
		Run(b, fast(spin(1000), spin(2000), 1))
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("-benchtime 1x took %v, want well under a second", d)
	}
	if r.N != 1 {
		t.Errorf("N = %d, want 1 pair", r.N)
	}
	want := []string{"x-wall", "x-wall-sum", "floor-ns/op", "impl-ns/op", "floor-allocs/op", "impl-allocs/op"}
	if _, ok := processCPU(); ok {
		want = append(want, "x-cpu", "x-cpu-sum", "floor-cpu-ns/op", "impl-cpu-ns/op")
	}
	for _, unit := range want {
		if _, ok := r.Extra[unit]; !ok {
			t.Errorf("no %s in %v", unit, r.Extra)
		}
	}
	if regexp.MustCompile(`(^|\s)ns/op`).MatchString(r.String()) {
		t.Errorf("result line %q has the framework's ns/op, want it dropped", r.String())
	}
}
