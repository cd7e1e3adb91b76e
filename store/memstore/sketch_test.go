package memstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// base is the virtual clock of the tests below.
var base = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// suffix returns how many events c counts after second x: those a window
// starting at x sees.
func (c *cell) suffix(x uint32) int {
	n := 0
	for i := range c.used() {
		if c.at[i] > x {
			n = min(n+c.count(i), saturated)
		}
	}
	return n
}

// A cell never counts fewer events than were added, after any second,
// however its entries merged; it forgets only what its cut allows.
func TestCellAgainstModel(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 5))
			var c cell
			var events []uint32 // the model: one entry an event, unsorted
			var cut uint32
			for step := range 5000 {
				if rng.IntN(10) == 0 {
					cut += uint32(rng.IntN(30))
					c.forget(cut)
					events = slices.DeleteFunc(events, func(a uint32) bool { return a <= cut })
				} else {
					// Mostly recent, sometimes in the past: a key that moves
					// in carries old events.
					a := cut + 1 + uint32(rng.IntN(60))
					n := 1 + rng.IntN(3)
					c.add(a, n)
					for range n {
						events = append(events, a)
					}
				}
				used := c.used()
				for i := range cellEntries {
					if (i < used) != (c.n[i] != 0) || (i > 0 && i < used && c.at[i-1] >= c.at[i]) || (i < used && c.at[i] <= cut) {
						t.Fatalf("step %d: entries %+v, cut %d: want the used ones first, ascending, after the cut", step, c, cut)
					}
				}
				for x := cut; x <= cut+100; x++ {
					want := 0
					for _, a := range events {
						if a > x {
							want++
						}
					}
					if got := c.suffix(x); got < want {
						t.Fatalf("step %d: %d events after second %d, cell %+v counts %d", step, want, x, c, got)
					}
				}
			}
		})
	}
}

// A count that reaches math.MaxUint16 stays saturated: more than any limit
// allows, never wrapped around to few.
func TestCellSaturates(t *testing.T) {
	t.Parallel()
	var c cell
	c.add(10, math.MaxUint16-1)
	c.add(10, 5)
	c.add(11, math.MaxInt32)
	c.add(12, 1)
	for _, x := range []uint32{0, 9, 10} {
		if got := c.suffix(x); got != saturated {
			t.Errorf("after second %d: %d, want saturated", x, got)
		}
	}
	if got := c.suffix(11); got != 1 {
		t.Errorf("after second 11: %d, want 1", got)
	}
}

// poissonTail returns P[X >= n] for X ~ Poisson(lambda).
func poissonTail(lambda float64, n int) float64 {
	p, term := 0.0, math.Exp(-lambda)
	for k := range n {
		p += term
		term *= lambda / float64(k+1)
	}
	return max(1-p, 0)
}

// falseRefusals fills a sketch sized for maxEntries with perDay single
// events a day, moved in at an even pace over two days, as a steady flood
// would (the first day's events have left the window, but may have merged
// into the second's), and returns the share of probes (fresh keys) that a limit
// of n per day refuses at the end.
func falseRefusals(maxEntries, perDay, probes int, ns []int) (lambda float64, refused []float64) {
	const days = 2
	day := int64(24 * time.Hour)
	var s sketch
	s.init(maxEntries)
	rng := rand.New(rand.NewPCG(uint64(maxEntries), uint64(perDay)))
	key := func() limitKey {
		var k limitKey
		binary.LittleEndian.PutUint64(k[:], rng.Uint64())
		binary.LittleEndian.PutUint64(k[8:], rng.Uint64())
		return k
	}
	now := base.UnixNano()
	step := day / int64(perDay)
	for range days * perDay {
		now += step
		b := budget{events: []event{{at: now, id: 1}}, latest: now}
		if err := s.add(key(), &b, now+day+clockGrace, now); err != nil {
			panic(err)
		}
	}
	refused = make([]float64, len(ns))
	for range probes {
		k := key()
		b := budget{latest: now}
		s.load(&b, k, now, slices.Max(ns))
		for i, n := range ns {
			if b.wait([]store.Limit{{N: n, Window: 24 * time.Hour}}, b.latest) > 0 {
				refused[i]++
			}
		}
	}
	for i := range refused {
		refused[i] /= float64(probes)
	}
	return float64(perDay) / float64(uint64(1)<<s.bits), refused
}

// The sketch's early refusals happen as often as the Limiter's doc says:
// for a fresh key and a limit of N a day, P[Poisson(λ) ≥ N]² with λ the
// events moved in over the last day per cell of a row, at the loads the
// default size is made for (λ up to 2), the rounding and merging of entries
// adding little. The rates hold at any size with the same λ: the test runs
// at a sixteenth of the default, and unless -short at the default with the
// larger λ.
func TestSketchFalseRefusals(t *testing.T) {
	t.Parallel()
	type run struct {
		size   int
		lambda float64
	}
	runs := []run{{DefaultMaxEntries / 16, 1}, {DefaultMaxEntries / 16, 1.9}}
	if !testing.Short() {
		runs = append(runs, run{DefaultMaxEntries, 1.9})
	}
	for _, r := range runs {
		t.Run(fmt.Sprintf("MaxEntries %d, λ %.1f", r.size, r.lambda), func(t *testing.T) {
			t.Parallel()
			const probes = 100_000
			ns := []int{1, 3, 5, 10}
			lambda, refused := falseRefusals(r.size, int(r.lambda*float64(uint64(1)<<bitsFor(r.size))), probes, ns)
			for i, n := range ns {
				want := math.Pow(poissonTail(lambda, n), 2)
				sigma := math.Sqrt(want * (1 - want) / probes)
				lo, hi := 0.8*want-5*sigma, 1.3*want+5*sigma+3.0/probes
				t.Logf("N %2d a day: refused %.2g, P[Poisson(%.2f) ≥ N]² = %.2g", n, refused[i], lambda, want)
				if refused[i] < lo || refused[i] > hi {
					t.Errorf("N %d a day, λ %.2f: %.3g of fresh keys refused, want %.3g (between %.3g and %.3g)", n, lambda, refused[i], want, lo, hi)
				}
			}
		})
	}
}

// bitsFor returns the log2 of the cells a row of a Limiter of maxEntries.
func bitsFor(maxEntries int) uint {
	var s sketch
	s.init(maxEntries)
	return s.bits
}

// Whatever the traffic, a Limiter holds at most MaxEntries keys and room
// for eventsPerEntry events a key, and its count of that room is right;
// while its keys fit, nothing moves into the sketch.
func TestLimiterBounds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const max = 100
	perIP := []store.Limit{{N: 30, Window: time.Hour}, {N: 200, Window: 24 * time.Hour}}
	perAddress := []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: 24 * time.Hour}}
	l := NewLimiter(Options{MaxEntries: max})
	checkBounds := func(what string) {
		t.Helper()
		logged := 0
		for _, n := range l.keys.index {
			logged += cap(l.keys.at(n).val.events)
		}
		switch {
		case l.keys.len() > max:
			t.Fatalf("%s: %d keys held, want at most %d", what, l.keys.len(), max)
		case logged != l.logged:
			t.Fatalf("%s: the logs have room for %d events, the Limiter counts %d", what, logged, l.logged)
		case logged > eventsPerEntry*max:
			t.Fatalf("%s: the logs have room for %d events, want at most %d", what, logged, eventsPerEntry*max)
		}
	}

	// Below the bounds: exact, nothing in the sketch.
	now := base
	for i := range max {
		if _, err := l.Reserve(ctx, fmt.Sprint("address ", i), perAddress, now); err != nil {
			t.Fatal(err)
		}
	}
	checkBounds("MaxEntries keys")
	if l.over.cells != nil || l.spilled != 0 {
		t.Fatalf("%d keys moved into the sketch while they fitted", l.spilled)
	}

	// A flood of client IPs, each spending its budget on addresses of its
	// own: far more keys than room, and logs of 30 events. The sketch, of
	// 512 cells a row, is overrun: keys are refused early.
	for ip := range 300 {
		now = now.Add(time.Second)
		for i := range 30 {
			for _, r := range []struct {
				key    string
				limits []store.Limit
			}{
				{fmt.Sprint("ip ", ip), perIP},
				{fmt.Sprint("address ", ip, " ", i), perAddress},
			} {
				if _, err := l.Reserve(ctx, r.key, r.limits, now); err != nil && !errors.Is(err, store.ErrRateLimited) {
					t.Fatalf("%s: %v", r.key, err)
				}
			}
			checkBounds(fmt.Sprintf("ip %d, send %d", ip, i))
		}
	}
	if l.spilled == 0 {
		t.Fatal("the flood moved no key into the sketch")
	}
	// Cancel and expiry keep the count right too. (A minute on, since
	// the overrun sketch refuses keys early within its windows.)
	now = now.Add(time.Minute)
	perMinute := []store.Limit{{N: 1, Window: time.Minute}}
	id, err := l.Reserve(ctx, "last", perMinute, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Cancel(ctx, "last", id); err != nil {
		t.Fatal(err)
	}
	checkBounds("after Cancel")
	now = now.Add(25 * time.Hour)
	for i := range max {
		if _, err := l.Reserve(ctx, fmt.Sprint("late ", i), perAddress, now); err != nil {
			t.Fatal(err)
		}
	}
	checkBounds("after the flood expired")
	t.Logf("%d keys moved into the sketch; %d of %d chunks of cells written", l.spilled, countChunks(l.over.cells), len(l.over.cells))
}

// countChunks returns how many chunks of cells were written.
func countChunks(cells [][]cell) int {
	n := 0
	for _, c := range cells {
		if c != nil {
			n++
		}
	}
	return n
}

// The cells count seconds in 32 bits, 68 years either side of the first
// key moved in. A key to move in beyond that is refused with store.ErrFull
// and stays exact; nothing is dropped.
func TestSketchClockRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := NewLimiter(Options{MaxEntries: 1})
	limits := []store.Limit{{N: 1, Window: time.Hour}}
	if _, err := l.Reserve(ctx, "a", limits, base); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, "b", limits, base); err != nil { // a moves in
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, "a", limits, base.Add(time.Minute)); !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("Reserve(a) within its window: %v, want the sketch to refuse it", err)
	}
	later := base.Add(70 * 365 * 24 * time.Hour)
	if _, err := l.Reserve(ctx, "b", limits, later); err != nil {
		t.Fatal(err)
	}
	_, err := l.Reserve(ctx, "c", limits, later)
	if !errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("Reserve(c) with b beyond the cells' years: %v, want store.ErrFull", err)
	}
	if _, err := l.Reserve(ctx, "b", limits, later.Add(time.Minute)); !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("Reserve(b) a minute later: %v, want its exact log to refuse it", err)
	}
}
