package memstore

import (
	"math/rand/v2"
	"testing"
)

// checkTable reports unless t's index, slots and heap agree with each other
// and with want (key -> expiry), and the heap is ordered.
func checkTable(tb testing.TB, t *table[int, int], want map[int]int64) {
	tb.Helper()
	if len(t.index) != len(want) {
		tb.Fatalf("table holds %d keys, want %d", len(t.index), len(want))
	}
	for key, exp := range want {
		n, s := t.lookup(key)
		if s == nil || s.key != key || s.expiry != exp || *t.heapSlot(int(s.heapAt)) != n {
			tb.Fatalf("key %d: slot %d = %+v, want expiry %d and a heap entry pointing back", key, n, s, exp)
		}
	}
	for i := 1; i < len(want); i++ {
		if t.less(i, (i-1)/2) {
			tb.Fatalf("heap entry %d expires before its parent", i)
		}
	}
	free := 0
	for n := t.free; n >= 0; n = t.at(n).heapAt {
		if s := t.at(n); s.key != 0 || s.expiry != 0 || free > int(t.used) {
			tb.Fatalf("free slot %d holds %+v, or the free list loops", n, s)
		}
		free++
	}
	if got := int(t.used) - free; got != len(want) {
		tb.Fatalf("%d slots in use, want %d", got, len(want))
	}
}

func TestTableAgainstModel(t *testing.T) {
	t.Parallel()
	const max = 64
	rng := rand.New(rand.NewPCG(1, 2))
	var tab table[int, int]
	tab.init(max)
	want := map[int]int64{}
	now := int64(0)
	for step := range 8_000 {
		now += int64(rng.IntN(3))
		key := rng.IntN(2 * max)
		switch op := rng.IntN(4); {
		case op == 0: // drop expired
			k := rng.IntN(4)
			dropped := tab.dropExpired(now, k)
			expired := 0
			for _, exp := range want {
				if exp <= now {
					expired++
				}
			}
			if dropped != min(k, expired) {
				t.Fatalf("step %d: dropExpired(%d, %d) = %d with %d expired", step, now, k, dropped, expired)
			}
			for key, exp := range want {
				if _, s := tab.lookup(key); s == nil {
					if exp > now {
						t.Fatalf("step %d: dropExpired removed live key %d", step, key)
					}
					delete(want, key)
				}
			}
		case op == 1 && want[key] != 0:
			n, _ := tab.lookup(key)
			tab.remove(n)
			delete(want, key)
		case want[key] != 0:
			exp := now + 1 + int64(rng.IntN(100))
			n, _ := tab.lookup(key)
			tab.setExpiry(n, exp)
			want[key] = exp
		default:
			exp := now + 1 + int64(rng.IntN(100))
			if tab.full() {
				// What a full store does: give up the entry that expires
				// soonest, live or not.
				n, s := tab.first()
				for k, e := range want {
					if e < s.expiry {
						t.Fatalf("step %d: first() expires at %d, but key %d at %d", step, s.expiry, k, e)
					}
				}
				delete(want, s.key)
				tab.remove(n)
			}
			_, s := tab.insert(key, exp)
			s.val = key
			want[key] = exp
		}
		checkTable(t, &tab, want)
	}
}

func TestTableInsertWhenFullPanics(t *testing.T) {
	t.Parallel()
	var tab table[int, int]
	tab.init(1)
	tab.insert(1, 10)
	defer func() {
		if recover() == nil {
			t.Error("insert into a full table did not panic")
		}
	}()
	tab.insert(2, 10)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	var s CodeStore
	s.lock()
	s.mu.Unlock()
	var l Limiter
	l.lock()
	l.mu.Unlock()
	for _, tt := range []struct {
		name string
		max  int
	}{
		{"zero CodeStore", s.codes.max},
		{"zero Limiter", l.keys.max},
		{"NewCodeStore()", NewCodeStore().codes.max},
		{"NewLimiter(Options{})", NewLimiter(Options{}).keys.max},
	} {
		if tt.max != DefaultMaxEntries {
			t.Errorf("%s: cap %d, want DefaultMaxEntries", tt.name, tt.max)
		}
	}
	if s.opts.Now == nil {
		t.Error("zero CodeStore: no clock")
	}
}
