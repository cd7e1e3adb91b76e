package paired_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/ciamkit/selfservice/internal/paired"
)

// A paired benchmark is usually the body of a BenchmarkXxx function in a
// _test.go file, run with go test -bench; testing.Benchmark runs it here.
// The example has no output to check, because its figures are timings.
func ExampleRun() {
	floor := func(int) error {
		_, err := strconv.ParseInt("1234567", 10, 64)
		return err
	}
	impl := func(int) error {
		var n int64
		_, err := fmt.Sscan("1234567", &n)
		return err
	}
	res := testing.Benchmark(func(b *testing.B) {
		paired.Run(b, paired.Pair{Floor: floor, Impl: impl})
	})
	fmt.Printf("fmt.Sscan: %.1fx the wall time and %.1fx the CPU of strconv.ParseInt, %.0f allocs/op\n",
		res.Extra["x-wall"], res.Extra["x-cpu"], res.Extra["impl-allocs/op"])
}

// Workers runs both sides from several goroutines at once, to load every
// core; each worker index keeps its own state.
func ExampleRun_workers() {
	const workers = 2
	bufs := make([][]byte, workers)
	floor := func(w int) error {
		bufs[w] = strconv.AppendInt(bufs[w][:0], 1234567, 10)
		return nil
	}
	impl := func(w int) error {
		bufs[w] = fmt.Appendf(bufs[w][:0], "%d", 1234567)
		return nil
	}
	res := testing.Benchmark(func(b *testing.B) {
		paired.Run(b, paired.Pair{Floor: floor, Impl: impl, Workers: workers})
	})
	fmt.Printf("fmt.Appendf: %.1fx strconv.AppendInt on %d workers\n", res.Extra["x-wall"], workers)
}
