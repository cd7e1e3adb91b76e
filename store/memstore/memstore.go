// Package memstore implements every store interface in memory: for tests,
// for development, and for a single process that may forget everything on
// restart. Each store is safe for concurrent use and gives the atomicity a
// database would: every method runs under one lock.
//
// # Bounded memory under a flood
//
// The stores an attacker can fill from the network, CodeStore (one code per
// address asked for) and Limiter (one budget per address, client IP or
// user), hold at most Options.MaxEntries entries, and no traffic makes them
// refuse everyone: budgets cap what one client IP can do, not how many
// client IPs there are, and an IPv6 /48 holds 65,536 of them. Expired
// entries leave a few at a time on every write, in order of expiry, so that
// no call sweeps the whole store. When the store is full of live entries:
//
//   - A CodeStore evicts the code that expires soonest (with one CodeTTL,
//     the one put longest ago) to make room for a new one. An evicted code
//     is gone, as if used: Verify refuses it, right or wrong, and the user
//     asks for a new one, which is a new code with a new value and fresh
//     tries. Nothing else ever resets a code's tries. To push out one code
//     in its 10 minutes, an attacker must have MaxEntries other codes put
//     after it within them: at the default size 100,000 sends, the hourly
//     send budgets of 3,334 client IPs; to push out every code all day,
//     14.4 million sends a day, the daily budgets of 72,000.
//   - A Limiter moves the budget that expires soonest (the one whose key
//     was used longest ago) into a count-min sketch of fixed size, where
//     it keeps counting. Budgets never fail open: the sketch only
//     over-counts, so a key whose events are in it may be refused early,
//     never late; Limiter says how likely that is.
//
// Why this way: refusing new entries (what these stores did before) fails
// closed for everyone; dropping a live budget fails open for its key; a
// sketch alone would refuse honest keys early under any load, and cannot
// give back one event (Cancel) or say to the nanosecond when a limit frees
// (RetryAfter). So the Limiter is exact while its keys fit, which is all
// the time but under a flood, and the sketch takes only what does not fit,
// oldest first, whose events are the least likely to matter. Memory is
// bounded whatever the traffic, at 64 MiB for both stores at the default
// size; Options.MaxEntries has the figures.
//
// # Quick start
//
//	users := memstore.NewUserStore(store.User{ID: "u1", Email: "a@example.com", CanonicalEmail: "a@example.com"})
//	codes := memstore.NewCodeStore()
//	limiter := memstore.NewLimiter(memstore.Options{MaxEntries: 1_000_000})
//	clients := memstore.NewClientRegistry(store.Client{ID: "my-app"})
package memstore

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/ciamkit/selfservice/store"
)

var (
	_ store.UserStore      = (*UserStore)(nil)
	_ store.ChangeStore    = (*UserStore)(nil)
	_ store.CodeStore      = (*CodeStore)(nil)
	_ store.Limiter        = (*Limiter)(nil)
	_ store.ClientRegistry = (*ClientRegistry)(nil)
)

// DefaultMaxEntries is the cap on entries of a CodeStore or a Limiter whose
// Options.MaxEntries is zero.
const DefaultMaxEntries = 100_000

// Options configures a CodeStore or a Limiter. The zero value is ready to
// use.
type Options struct {
	// MaxEntries caps the entries the store holds: codes for a CodeStore,
	// keys with exact logs for a Limiter. Past it a CodeStore evicts the
	// code that expires soonest and a Limiter moves the key that expires
	// soonest into its sketch (see the package doc); neither refuses a
	// call for want of room. Memory is bounded whatever the traffic: a
	// CodeStore takes about 145 bytes a code (14 MiB at the default); a
	// Limiter about 110 bytes a key, 16 bytes an event logged (at most 8
	// a key on average) and its sketch, two rows of 4 to 8 cells an entry
	// at 24 bytes a cell (24 MiB at the default, allocated as it fills):
	// 39 MiB at the default under a flood of keys of one event each, 50
	// MiB at most. Memory grows with the entries up to the cap and is not
	// given back below the peak. Default: DefaultMaxEntries.
	MaxEntries int

	// Now is the clock by which a CodeStore drops codes whose expiresAt
	// has passed, to free their room; Verify still judges a code by the
	// now it is given. A CodeStore used with a virtual clock should get
	// the same clock here. A Limiter ignores Now: it keeps time by the now
	// of each Reserve. Default: time.Now.
	Now func() time.Time
}

// resolve returns o with its defaults filled in; fn names the constructor
// for a panic message.
func (o Options) resolve(fn string) Options {
	switch {
	case o.MaxEntries < 0:
		panic(fmt.Sprintf("memstore: %s: negative MaxEntries %d", fn, o.MaxEntries))
	case o.MaxEntries > math.MaxInt32:
		panic(fmt.Sprintf("memstore: %s: MaxEntries %d is above %d", fn, o.MaxEntries, math.MaxInt32))
	case o.MaxEntries == 0:
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// oneOptions returns the Options of a variadic constructor, panicking if
// there are several.
func oneOptions(fn string, opts []Options) Options {
	switch len(opts) {
	case 0:
		return Options{}.resolve(fn)
	case 1:
		return opts[0].resolve(fn)
	}
	panic(fmt.Sprintf("memstore: %s: %d Options, want at most one", fn, len(opts)))
}

// Bounds of the times nanos can express.
var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

// nanos returns t as Unix nanoseconds, saturating outside the years 1678
// to 2262, where t.UnixNano is undefined: the zero time is long past, not
// some arbitrary instant.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// digest returns the SHA-256 of parts, each preceded by its length so that
// no two lists of parts hash the same input. The stores key their entries
// by digests rather than by the caller's strings: an entry then holds no
// pointer for the garbage collector to follow, and no address in clear.
func digest(parts ...string) [sha256.Size]byte {
	var buf [320]byte // an address and a purpose, without allocating
	b := buf[:0]
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return sha256.Sum256(b)
}

// chunkBits sets the size of the chunks a table keeps its slots and its
// heap in: 2^10 elements each. Chunks rather than slices that double, so
// that growing a table of a million entries never copies megabytes inside
// one call.
const (
	chunkBits = 10
	chunkMask = 1<<chunkBits - 1
)

// dropPerWrite is how many expired entries a write removes besides its
// own. More than one, so that expired entries leave faster than a stream
// of writes of new keys adds them.
const dropPerWrite = 2

// table maps keys to values that expire, bounded by a cap. A binary
// min-heap of slot numbers orders the entries by expiry, so that expired
// ones leave a few per write in O(log n) each, never in a sweep, and the
// entry that expires soonest is the one a full store gives up. Slots are
// addressed by int32 and, like the heap, kept in fixed-size chunks; free
// slots form a list threaded through them. With keys and values free of
// pointers (digests, times, counts), a table holds nothing the garbage
// collector must follow.
//
// The zero table is not ready: init it first.
type table[K comparable, V any] struct {
	index map[K]int32    // key -> slot number
	slots [][]slot[K, V] // slot n is slots[n>>chunkBits][n&chunkMask]
	heap  [][]int32      // heap element i likewise; len(index) elements
	used  int32          // slots handed out so far
	free  int32          // the first free slot below used, or -1
	max   int            // the cap on len(index)
}

// slot holds one entry of a table.
type slot[K comparable, V any] struct {
	key    K
	expiry int64 // Unix nanoseconds; the entry is expired when expiry <= now
	heapAt int32 // index in the heap; for a free slot, the next free slot
	val    V
}

// init makes t empty with room for at most max entries.
func (t *table[K, V]) init(max int) {
	*t = table[K, V]{index: make(map[K]int32), free: -1, max: max}
}

// len returns the number of entries.
func (t *table[K, V]) len() int { return len(t.index) }

// at returns the slot numbered n.
func (t *table[K, V]) at(n int32) *slot[K, V] {
	return &t.slots[n>>chunkBits][n&chunkMask]
}

// heapSlot returns a pointer to heap element i.
func (t *table[K, V]) heapSlot(i int) *int32 {
	return &t.heap[i>>chunkBits][i&chunkMask]
}

// lookup returns the slot of key, or nil.
func (t *table[K, V]) lookup(key K) (int32, *slot[K, V]) {
	n, ok := t.index[key]
	if !ok {
		return -1, nil
	}
	return n, t.at(n)
}

// full reports whether t holds as many entries as its cap allows.
func (t *table[K, V]) full() bool { return len(t.index) >= t.max }

// first returns the entry that expires soonest, or -1 and nil when t is
// empty.
func (t *table[K, V]) first() (int32, *slot[K, V]) {
	if len(t.index) == 0 {
		return -1, nil
	}
	n := *t.heapSlot(0)
	return n, t.at(n)
}

// insert adds key, which t must not hold, with the given expiry and a zero
// value, and returns its slot. The caller makes room first: inserting into
// a full table panics, since the cap is the memory bound.
func (t *table[K, V]) insert(key K, expiry int64) (int32, *slot[K, V]) {
	if t.full() {
		panic("memstore: insert into a full table")
	}
	n := t.free
	if n >= 0 {
		t.free = t.at(n).heapAt
	} else {
		n = t.used
		t.used++
		if int(n>>chunkBits) == len(t.slots) {
			t.slots = append(t.slots, make([]slot[K, V], 1<<chunkBits))
		}
	}
	i := len(t.index)
	if i>>chunkBits == len(t.heap) {
		t.heap = append(t.heap, make([]int32, 1<<chunkBits))
	}
	s := t.at(n)
	s.key, s.expiry, s.heapAt = key, expiry, int32(i)
	t.index[key] = n
	*t.heapSlot(i) = n
	t.up(i)
	return n, s
}

// setExpiry moves the entry in slot n to its place for a new expiry.
func (t *table[K, V]) setExpiry(n int32, expiry int64) {
	s := t.at(n)
	if s.expiry == expiry {
		return
	}
	s.expiry = expiry
	if i := int(s.heapAt); !t.up(i) {
		t.down(i, len(t.index))
	}
}

// remove deletes the entry in slot n and puts the slot on the free list.
func (t *table[K, V]) remove(n int32) {
	s := t.at(n)
	i, last := int(s.heapAt), len(t.index)-1
	if i != last {
		t.swap(i, last)
		if !t.up(i) {
			t.down(i, last)
		}
	}
	delete(t.index, s.key)
	*s = slot[K, V]{heapAt: t.free}
	t.free = n
}

// dropExpired removes up to max entries whose expiry is at or before now,
// soonest first, and returns how many it removed.
func (t *table[K, V]) dropExpired(now int64, max int) int {
	k := 0
	for ; k < max; k++ {
		n, s := t.first()
		if s == nil || s.expiry > now {
			break
		}
		t.remove(n)
	}
	return k
}

func (t *table[K, V]) less(i, j int) bool {
	return t.at(*t.heapSlot(i)).expiry < t.at(*t.heapSlot(j)).expiry
}

func (t *table[K, V]) swap(i, j int) {
	a, b := t.heapSlot(i), t.heapSlot(j)
	*a, *b = *b, *a
	t.at(*a).heapAt = int32(i)
	t.at(*b).heapAt = int32(j)
}

// up moves heap element i towards the root while it expires sooner than
// its parent, and reports whether it moved.
func (t *table[K, V]) up(i int) bool {
	moved := false
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			break
		}
		t.swap(i, p)
		i, moved = p, true
	}
	return moved
}

// down moves heap element i, of the first n, towards the leaves while a
// child expires sooner.
func (t *table[K, V]) down(i, n int) {
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && t.less(r, c) {
			c = r
		}
		if !t.less(c, i) {
			return
		}
		t.swap(i, c)
		i = c
	}
}
