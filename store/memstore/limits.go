package memstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// Limiter is an in-memory store.Limiter whose memory is bounded whatever
// the traffic (see Options.MaxEntries). The zero value is ready to use, with
// the default Options.
//
// # Exact while it has room
//
// Up to Options.MaxEntries keys keep an exact log of their events, oldest
// first: those within the longest Window of their limits, and of them at
// most the largest N, 16 bytes each, besides some 110 bytes for the key,
// which is kept as a digest, not in clear. For each limit Reserve looks at
// the Nth newest event only, so a call costs O(limits) plus the events it
// forgets. A key leaves the Limiter once its newest event is older than its
// longest window (and a minute's grace for callers whose clocks disagree),
// or when Cancel takes its last event. While the keys fit, and their logs
// hold no more than 8 events a key on average, the Limiter is exact:
// refusals, RetryAfter to the nanosecond, Cancel.
//
// # A sketch for the rest
//
// When a new key finds no room, the key that expires soonest (for keys
// with the same limits, the one used longest ago) moves into a count-min
// sketch of fixed size, and so do the keys that expire soonest while the
// logs hold more than 8 events a key. The sketch has two rows of w cells,
// w the power of two at or above 4×MaxEntries (2^19 at the default); a key
// counts in one cell of each row, chosen by a hash with a secret seed, so
// that nobody can aim at another key's cells. A cell keeps up to four
// entries (time, count), times rounded up to the second; a fifth merges
// the two entries closest in time into the later. Entries leave once they
// are older than the longest window, plus the minute's grace, of any key
// moved in. A key that comes back, or a new one, starts its log with what
// its cells may hold for it: in every window, as many events as the fewer
// of its two cells counts there (its own events, if it moved in, are in
// both), at the entries' times.
//
// Nothing in this fails open: rounding up, merging into the later entry and
// adding other keys' events only ever make a key's count larger in every
// window, and its RetryAfter longer. A refused call records nothing and
// changes nothing, not even which keys are held. What the sketch costs:
//
//   - A key new to the Limiter may be refused early, when both of its
//     cells hold events of other keys: under a limit of N per W, when both
//     hold N or more of the last W. With m events moved into the sketch in
//     the last W, spread at random, that happens with probability
//     P[Poisson(λ) ≥ N]², λ = m/w; merged entries add up to 25% at λ ≤ 2
//     and up to 4 times more at λ ≈ 4 (TestSketchFalseRefusals). The
//     table below is for the default size and budgets of a day.
//   - A short window sees only the events of its last minute or hour, and
//     keys move in least recently used first: a budget of 1 a minute is
//     refused early only while more than MaxEntries new keys arrive within
//     a minute, with probability (1-e^(-m/w))² for m keys moved in within
//     the minute, and only for that minute.
//   - Such a refusal's RetryAfter is honest for the events it counted: it
//     is when enough of them leave, up to a second more for the rounding.
//   - Cancel of an event whose key moved into the sketch since gives back
//     nothing: the event counts until it leaves its windows, the safe side
//     (a right code then keeps the wrong-code slot it reserved).
//
// Early refusals at the default size (w = 2^19) under budgets of N a day,
// the smallest of the default budgets being 5 changes a user:
//
//	m in the last day    λ      N = 3    N = 5    N = 10
//	  500,000            0.95   0.005    10⁻⁵     5×10⁻¹⁵
//	1,000,000            1.9    0.09     0.002    10⁻⁹
//	2,000,000            3.8    0.54     0.13     1.4×10⁻⁴ (measured; 3.5×10⁻⁵ by the formula)
//
// The attack of issue 17, 3,244 client IPs (5% of an IPv6 /48) each sending
// all day within its budgets, moves about 550,000 keys a day into the
// sketch (λ ≈ 1.05: 2×10⁻⁵ for N = 5). Twice that attack within one minute moves 95,000 there within a
// minute: a fresh address's 1-a-minute budget is then refused early with
// probability 0.027 until the minute is over (see the root package's
// TestFloodLeavesRoomForHonestUsers).
//
// # Batches
//
// A Limiter is a store.BatchLimiter: ReserveAll charges a request's two or
// three budgets under one lock, where Reserve would take it once a budget.
// A CodeStore is not a store.CodeChecker. It and the Limiter are two
// objects with a lock each, and a check across both would need a store
// made with its Limiter and a lock order between them, to save one
// acquisition: without it the Service takes three (ReserveAll, Verify,
// CancelAll) of well under a microsecond each, and charging the budgets
// before the code is evaluated already bounds concurrent guesses. In
// Redis, where each is a round trip, redisstore's CodeStore is one.
type Limiter struct {
	mu      sync.Mutex
	opts    Options // resolved on first use
	keys    table[limitKey, budget]
	logged  int // events the logs have room for, over all keys
	over    sketch
	fresh   []event // a new key's log while Reserve decides; reused
	lastID  uint64
	spilled uint64 // live keys moved into the sketch
}

var _ store.BatchLimiter = (*Limiter)(nil)

// eventsPerEntry bounds the events the logs have room for, as a multiple
// of MaxEntries: a key's log holds up to the largest N of its limits (200
// with the default budgets), and without a bound on their sum as many
// client IPs as MaxEntries could each fill one.
const eventsPerEntry = 8

// limitKey is what a Limiter keys a budget by: two 64-bit hashes of the
// caller's key under secret seeds (hash/maphash), a digest that holds no
// pointer and no address in clear, as the CodeStore's SHA-256 does. Two
// keys that collided would share one budget, which refuses more events,
// never fewer; with 128 bits and seeds nobody outside the process knows,
// no one can make a key collide with another's. Not SHA-256, which costs
// ten times more and was more than half of what the budgets of a request
// cost (every Reserve and Cancel hashes its key).
type limitKey [16]byte

// keySeeds are the seeds of every Limiter's limitKeys, new in each
// process.
var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// limiterKey returns the limitKey of key.
func limiterKey(key string) limitKey {
	var k limitKey
	binary.LittleEndian.PutUint64(k[:8], maphash.String(keySeeds[0], key))
	binary.LittleEndian.PutUint64(k[8:], maphash.String(keySeeds[1], key))
	return k
}

// budget is the log of one key.
type budget struct {
	// events are oldest first. An event the key's log started with, from
	// the sketch, has id 0: no reservation names it.
	events []event
	// latest is the latest now a Reserve for the key has passed, or the
	// latest time of an event from the sketch. An earlier now counts as
	// latest, so that the log stays in order and every limit holds however
	// callers' nows interleave.
	latest int64
}

// event is one reserved event: when (Unix nanoseconds) and its id.
type event struct {
	at int64
	id uint64
}

// clockGrace is how long a key outlives its longest window. A key that
// left while a caller with a slightly earlier clock was about to reserve
// would let that caller exceed the limits.
const clockGrace = int64(time.Minute)

// NewLimiter returns an empty limiter configured by opts, of which it takes
// at most one; none means the zero Options.
//
// Panics if given more than one Options or if MaxEntries is negative or
// above math.MaxInt32.
func NewLimiter(opts ...Options) *Limiter {
	l := &Limiter{opts: oneOptions("NewLimiter", opts)}
	l.init()
	return l
}

// init makes l empty, sized by its resolved Options.
func (l *Limiter) init() {
	l.keys.init(l.opts.MaxEntries)
	l.over.init(l.opts.MaxEntries)
}

// lock takes l.mu and sets up a zero Limiter.
func (l *Limiter) lock() {
	l.mu.Lock()
	if l.keys.index == nil {
		l.opts = l.opts.resolve("Limiter")
		l.init()
	}
}

// Reserve implements store.Limiter. Reservation ids are decimal numbers,
// unique within the Limiter. A refused call changes nothing, not even
// which keys the Limiter holds. Reserve fails with an error wrapping
// store.ErrFull only if, the Limiter being full, the key to move into the
// sketch holds an event more than 68 years after the first key moved in,
// which no cell can count.
func (l *Limiter) Reserve(_ context.Context, key string, limits []store.Limit, now time.Time) (string, error) {
	longest, most, err := checkLimits(limits)
	if err != nil {
		return "", err
	}
	k, t := limiterKey(key), nanos(now)
	l.lock()
	defer l.mu.Unlock()
	l.expire(t, dropPerWrite)
	n, s := l.keys.lookup(k)
	if s == nil {
		return l.reserveNew(k, limits, longest, most, t)
	}
	b := &s.val
	logged := cap(b.events)
	b.latest = max(b.latest, t)
	at := b.latest
	b.forget(addSat(at, -longest), most)
	wait := b.wait(limits, at)
	if wait == 0 {
		l.lastID++
		b.events = append(b.events, event{at: at, id: l.lastID})
		l.keys.setExpiry(n, addSat(at, addSat(longest, clockGrace)))
	}
	l.logged += cap(b.events) - logged
	if wait > 0 {
		return "", &store.RateLimitError{RetryAfter: retryAfter(wait + at - t)}
	}
	id := l.lastID
	l.trim(t)
	return strconv.FormatUint(id, 10), nil
}

// reserveNew is Reserve for a key the Limiter holds no log of. The log
// starts with what the sketch may hold for the key, and the key gets room
// only if the event is allowed.
func (l *Limiter) reserveNew(k limitKey, limits []store.Limit, longest int64, most int, t int64) (string, error) {
	b := budget{events: l.fresh[:0], latest: t}
	l.over.load(&b, k, t, most)
	defer func() { l.fresh = b.events[:0] }()
	at := b.latest
	b.forget(addSat(at, -longest), most)
	if wait := b.wait(limits, at); wait > 0 {
		return "", &store.RateLimitError{RetryAfter: retryAfter(wait + at - t)}
	}
	if l.keys.full() {
		if err := l.evictFirst(t); err != nil {
			return "", fmt.Errorf("memstore: reserve: %d keys held: %w", l.keys.len(), err)
		}
	}
	events := make([]event, len(b.events), len(b.events)+1)
	copy(events, b.events)
	l.lastID++
	events = append(events, event{at: at, id: l.lastID})
	_, s := l.keys.insert(k, addSat(at, addSat(longest, clockGrace)))
	s.val = budget{events: events, latest: at}
	l.logged += cap(events)
	id := l.lastID
	l.trim(t)
	return strconv.FormatUint(id, 10), nil
}

// Cancel implements store.Limiter. Taking a key's last event removes the
// key and frees its room. An event whose key has moved into the sketch
// since it was reserved is forgotten as far as Cancel is concerned: it
// gives back nothing, and the event counts until it leaves its windows.
func (l *Limiter) Cancel(_ context.Context, key, id string) error {
	want, ok := parseID(id)
	if !ok {
		return nil // not an id of this Limiter: unknown
	}
	k := limiterKey(key)
	l.lock()
	defer l.mu.Unlock()
	l.cancel(k, want)
	return nil
}

// parseID returns the event id of a reservation id, or false for a string
// that no Reserve of a Limiter returns.
func parseID(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	return n, err == nil && n != 0
}

// cancel removes the event id of key k, if k holds it. l.mu is held.
func (l *Limiter) cancel(k limitKey, id uint64) {
	n, s := l.keys.lookup(k)
	if s == nil {
		return
	}
	b := &s.val
	for i, e := range b.events {
		if e.id != id {
			continue
		}
		b.events = append(b.events[:i], b.events[i+1:]...)
		if len(b.events) == 0 {
			l.logged -= cap(b.events)
			l.keys.remove(n)
		}
		// The expiry stays that of the cancelled event when it was the
		// newest: the key lingers a little, which costs room but never a
		// limit.
		return
	}
}

// ReserveAll implements store.BatchLimiter under one lock: for the
// handlers' two or three budgets a request, one lock instead of one a
// budget and one a slot given back. Each key is judged and recorded as
// Reserve would, with its exact log or, for a key the Limiter holds no log
// of, what the sketch may hold for it, and the ids are those Reserve
// would return, in the order of reqs. All keys are judged before any is
// recorded: a refusal changes nothing, not even which keys are held. Room
// is made only after, as Reserve makes it, so that a batch that fills the
// Limiter may move one of its own keys, with its new event, into the
// sketch; that event then counts there, and Cancel of it gives back
// nothing.
//
// A request whose limits are a mistake, or two requests whose keys are
// one, fail the whole call with an error that does not wrap
// store.ErrRateLimited, recording nothing. ReserveAll fails with an error
// wrapping store.ErrFull as Reserve does, only when a key to move into
// the sketch holds an event beyond the cells' 68 years; it then takes back
// the events it recorded, but those of keys it moved into the sketch
// meanwhile count there until they leave their windows, the safe side.
func (l *Limiter) ReserveAll(_ context.Context, reqs []store.LimitRequest, now time.Time) ([]string, error) {
	var buf [4]pending // the handlers' batches, without allocating
	ps := buf[:0]
	if len(reqs) > len(buf) {
		ps = make([]pending, 0, len(reqs))
	}
	for i, r := range reqs {
		longest, most, err := checkLimits(r.Limits)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		k := limiterKey(r.Key)
		for j := range ps {
			if ps[j].k == k {
				return nil, fmt.Errorf("memstore: reserve: requests %d and %d name one key", j, i)
			}
		}
		ps = ps[:i+1]
		p := &ps[i]
		p.k, p.limits, p.longest, p.most = k, r.Limits, longest, most
	}
	if len(ps) == 0 {
		return nil, nil
	}
	t := nanos(now)
	l.lock()
	defer l.mu.Unlock()
	l.expire(t, dropPerWrite*len(ps))
	// Judge every key. New keys' logs are loaded into l.fresh, one after
	// the other, before any key moves into the sketch, as reserveNew
	// loads its key's before it makes room.
	fresh := l.fresh[:0]
	for i := range ps {
		p := &ps[i]
		var log budget
		if n, s := l.keys.lookup(p.k); s != nil {
			p.slot = n
			p.at = max(s.val.latest, t)
			log.events = s.val.events
		} else {
			p.slot = -1
			b := budget{events: fresh, latest: t}
			l.over.load(&b, p.k, t, p.most)
			p.from, p.to, fresh = len(fresh), len(b.events), b.events
			p.at = b.latest
			log.events = fresh[p.from:p.to:p.to]
		}
		// Events forget would drop are outside every window or beyond
		// every N, so the wait is the same without dropping them.
		if wait := log.wait(p.limits, p.at); wait > 0 {
			l.fresh = fresh[:0]
			return nil, &store.RateLimitError{RetryAfter: retryAfter(wait + p.at - t), Key: reqs[i].Key}
		}
	}
	// The new keys' logs are copied out of fresh below, before anything
	// else may reuse it.
	l.fresh = fresh[:0]
	// Record: held keys first, since making room for a new key may move
	// any key into the sketch, and one that holds its new event counts it
	// there.
	first := l.lastID + 1
	l.lastID += uint64(len(ps))
	for i := range ps {
		if p := &ps[i]; p.slot >= 0 {
			s := l.keys.at(p.slot)
			b := &s.val
			logged := cap(b.events)
			b.latest = p.at
			b.forget(addSat(p.at, -p.longest), p.most)
			b.events = append(b.events, event{at: p.at, id: first + uint64(i)})
			l.keys.setExpiry(p.slot, addSat(p.at, addSat(p.longest, clockGrace)))
			l.logged += cap(b.events) - logged
		}
	}
	for i := range ps {
		p := &ps[i]
		if p.slot >= 0 {
			continue
		}
		if l.keys.full() {
			if err := l.evictFirst(t); err != nil {
				for j := range ps {
					if ps[j].slot >= 0 || j < i {
						l.cancel(ps[j].k, first+uint64(j))
					}
				}
				return nil, fmt.Errorf("memstore: reserve: %d keys held: %w", l.keys.len(), err)
			}
		}
		b := budget{events: fresh[p.from:p.to:p.to], latest: p.at}
		b.forget(addSat(p.at, -p.longest), p.most)
		events := make([]event, len(b.events), len(b.events)+1)
		copy(events, b.events)
		events = append(events, event{at: p.at, id: first + uint64(i)})
		_, s := l.keys.insert(p.k, addSat(p.at, addSat(p.longest, clockGrace)))
		s.val = budget{events: events, latest: p.at}
		l.logged += cap(events)
	}
	l.trim(t)
	return formatIDs(first, len(ps)), nil
}

// formatIDs returns the ids of n events from first on, as Reserve formats
// each; up to four are cut from one string, two allocations in all.
func formatIDs(first uint64, n int) []string {
	ids := make([]string, n)
	var ends [4]int
	if n > len(ends) {
		for i := range ids {
			ids[i] = strconv.FormatUint(first+uint64(i), 10)
		}
		return ids
	}
	var buf [4 * 20]byte // four decimal uint64s, without allocating
	b := buf[:0]
	for i := range n {
		b = strconv.AppendUint(b, first+uint64(i), 10)
		ends[i] = len(b)
	}
	all, start := string(b), 0
	for i := range ids {
		ids[i], start = all[start:ends[i]], ends[i]
	}
	return ids
}

// pending is a request of ReserveAll between its judgement and its
// recording.
type pending struct {
	k       limitKey
	limits  []store.Limit
	longest int64
	most    int
	slot    int32 // the key's slot, or -1 for a key the Limiter holds no log of
	at      int64 // the event's time
	// from and to delimit the log of a new key in l.fresh.
	from, to int
}

// CancelAll implements store.BatchLimiter under one lock, as Cancel does
// each.
func (l *Limiter) CancelAll(_ context.Context, rs []store.Reservation) error {
	type cancel struct {
		k  limitKey
		id uint64
	}
	var buf [4]cancel // hashed before the lock, without allocating
	cs := buf[:0]
	for _, r := range rs {
		if id, ok := parseID(r.ID); ok {
			cs = append(cs, cancel{limiterKey(r.Key), id})
		}
	}
	if len(cs) == 0 {
		return nil
	}
	l.lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		l.cancel(c.k, c.id)
	}
	return nil
}

// expire removes up to max keys whose expiry has passed at now, soonest
// first.
func (l *Limiter) expire(now int64, max int) {
	for range max {
		n, s := l.keys.first()
		if s == nil || s.expiry > now {
			return
		}
		l.logged -= cap(s.val.events)
		l.keys.remove(n)
	}
}

// evictFirst removes the key that expires soonest, moving its events into
// the sketch unless it has expired at now. l must hold a key.
func (l *Limiter) evictFirst(now int64) error {
	n, s := l.keys.first()
	if s.expiry > now {
		if err := l.over.add(s.key, &s.val, s.expiry, now); err != nil {
			return err
		}
		l.spilled++
	}
	l.logged -= cap(s.val.events)
	l.keys.remove(n)
	return nil
}

// trim moves keys into the sketch, those that expire soonest first, until
// the logs have room for no more than eventsPerEntry events a key of
// MaxEntries. It may move the key just reserved: its event then counts in
// the sketch.
func (l *Limiter) trim(now int64) {
	for l.logged > eventsPerEntry*l.keys.max && l.keys.len() > 0 {
		if l.evictFirst(now) != nil {
			return // beyond the cells' years: over the bound, but exact
		}
	}
}

// wait returns how long after at the limits let one more event through,
// or zero if they let it through at at. The events are at or before at, so
// a limit is reached when its Nth newest is inside (at-Window, at]; it must
// leave first.
func (b *budget) wait(limits []store.Limit, at int64) int64 {
	var wait int64
	for _, lim := range limits {
		if k := len(b.events) - lim.N; k >= 0 {
			if leaves := addSat(b.events[k].at, int64(lim.Window)); leaves > at {
				wait = max(wait, leaves-at)
			}
		}
	}
	return wait
}

// forget drops the events at or before oldest, which no limit counts any
// more, and all but the newest most, which no limit looks at.
func (b *budget) forget(oldest int64, most int) {
	// The events are in time order: the first to keep is found by binary
	// search. Moving the rest down stays O(N) for a long log (a budget of
	// large N); slicing instead would keep the dropped events' array while
	// the Limiter counted less room than it holds.
	lo := max(len(b.events)-most, 0)
	k := lo + sort.Search(len(b.events)-lo, func(i int) bool { return b.events[lo+i].at > oldest })
	if k == 0 {
		return
	}
	live := len(b.events) - k
	if c := cap(b.events); c > 8 && live <= c/4 {
		// After a burst, give back what the burst needed.
		b.events = append(make([]event, 0, 2*live), b.events[k:]...)
		return
	}
	b.events = b.events[:copy(b.events, b.events[k:])]
}

// checkLimits returns the longest Window and the largest N of limits, or
// an error if the list is empty or a limit is not positive.
func checkLimits(limits []store.Limit) (longest int64, most int, err error) {
	if len(limits) == 0 {
		return 0, 0, errors.New("memstore: reserve: no limits")
	}
	for i, lim := range limits {
		if lim.N <= 0 || lim.Window <= 0 {
			return 0, 0, fmt.Errorf("memstore: reserve: limit %d (N %d, Window %v): N and Window must be positive", i, lim.N, lim.Window)
		}
		longest, most = max(longest, int64(lim.Window)), max(most, lim.N)
	}
	return longest, most, nil
}

// retryAfter returns a wait of d nanoseconds as a RetryAfter, which the
// contract wants at least a millisecond long.
func retryAfter(d int64) time.Duration {
	return max(time.Duration(d), time.Millisecond)
}

// addSat returns a+b, saturating at the bounds of int64.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// sketchRows is how many cells a key of the sketch counts in, one a row:
// two, since a key is refused early only when all its cells hold enough
// events of others, and a third row would leave fewer cells a row for the
// same memory.
const sketchRows = 2

// cellEntries is how many (time, count) entries a cell of the sketch
// keeps: enough that a cell holding a day's events at the load the default
// size is made for (one or two) merges none.
const cellEntries = 4

// cellsPerEntry sizes the sketch: each row has the power of two at or
// above cellsPerEntry×MaxEntries cells.
const cellsPerEntry = 4

// maxCellBits bounds a row to 2^30 cells, so that the two rows' cells are
// told by separate halves of one 64-bit hash.
const maxCellBits = 30

// sketch is the count-min sketch a Limiter moves keys into when their logs
// find no room (see Limiter). Its cells are kept in chunks like a table's,
// each allocated when first written, so that the memory grows with the
// keys moved in, up to 24 bytes a cell.
type sketch struct {
	cells [][]cell // row r's cell i is cell r<<bits|i
	bits  uint     // log2 of the cells a row
	seed  maphash.Seed
	// epoch is the Unix nanosecond of second 0 of the cells' times, set
	// when the first key moves in: 2^31 seconds before then, so that the
	// cells count 68 years either side.
	epoch int64
	// keep is how long an entry counts after its time: the longest of
	// the keys' longest windows plus clockGrace, over the keys moved in.
	keep int64
}

// cell counts events of the keys whose hash names it. Entry i says that
// n[i] events happened at or before second at[i] after the sketch's epoch.
// The used entries come first, in ascending at; an unused one has n 0.
// A count of math.MaxUint16 stands for as many events as any limit allows.
type cell struct {
	at [cellEntries]uint32
	n  [cellEntries]uint16
}

// saturated is what a count of math.MaxUint16 counts as: more than any
// limit allows, and small enough that a sum of a few does not overflow.
const saturated = math.MaxInt32

// init sizes s for a Limiter of maxEntries keys.
func (s *sketch) init(maxEntries int) {
	s.bits = min(max(uint(bits.Len(uint(cellsPerEntry*maxEntries-1))), 1), maxCellBits)
	s.seed = maphash.MakeSeed()
}

// columns returns the cell of k in each row.
func (s *sketch) columns(k *limitKey) [sketchRows]uint64 {
	h, mask := maphash.Bytes(s.seed, k[:]), uint64(1)<<s.bits-1
	return [sketchRows]uint64{h & mask, h >> 32 & mask}
}

// cell returns cell i of row r, or nil when its chunk was never written and
// alloc is false.
func (s *sketch) cell(r int, i uint64, alloc bool) *cell {
	n := uint64(r)<<s.bits | i
	chunk := &s.cells[n>>chunkBits]
	if *chunk == nil {
		if !alloc {
			return nil
		}
		*chunk = make([]cell, min(1<<chunkBits, sketchRows<<s.bits))
	}
	return &(*chunk)[n&chunkMask]
}

// second returns the cell time of t, Unix nanoseconds: the second after the
// epoch it falls in, rounded up, and at least 1. ok is false past the last
// second a cell can hold.
func (s *sketch) second(t int64) (sec uint32, ok bool) {
	if t <= s.epoch {
		return 1, true
	}
	d := (uint64(t-s.epoch) + 1e9 - 1) / 1e9
	if d > math.MaxUint32 {
		return 0, false
	}
	return uint32(max(d, 1)), true
}

// time returns cell time sec as Unix nanoseconds.
func (s *sketch) time(sec uint32) int64 { return addSat(s.epoch, int64(sec)*1e9) }

// cut returns the latest cell time whose entries count no more at now.
func (s *sketch) cut(now int64) uint32 {
	end := addSat(now, -s.keep)
	if end <= s.epoch {
		return 0
	}
	return uint32(min(uint64(end-s.epoch)/1e9, math.MaxUint32))
}

// add moves the events of b, the log of key k, into the sketch at now;
// expiry is the key's, which tells how long its events must count. Events
// from the sketch (id 0) are in it still, and are not added again. add
// fails, changing nothing, if an event is past the last second a cell can
// hold.
func (s *sketch) add(k limitKey, b *budget, expiry, now int64) error {
	last := len(b.events) - 1
	for last >= 0 && b.events[last].id == 0 {
		last--
	}
	if last < 0 {
		return nil
	}
	if s.cells == nil {
		s.cells = make([][]cell, max(sketchRows<<s.bits>>chunkBits, 1))
		s.epoch = addSat(now, -(1<<31)*1e9)
	}
	if _, ok := s.second(b.events[last].at); !ok {
		return store.ErrFull
	}
	// The expiry is the newest event's time plus the longest window and
	// the grace, or later.
	s.keep = max(s.keep, addSat(expiry, -b.events[len(b.events)-1].at))
	cut, cols := s.cut(now), s.columns(&k)
	for r, i := range cols {
		c := s.cell(r, i, true)
		c.forget(cut)
		var sec uint32
		run := 0 // events at sec, not yet added
		for _, e := range b.events[:last+1] {
			if e.id == 0 {
				continue
			}
			if a, _ := s.second(e.at); a != sec {
				if run > 0 {
					c.add(sec, run)
				}
				sec, run = a, 0
			}
			run++
		}
		c.add(sec, run)
	}
	return nil
}

// load starts b, the log of key k that the Limiter holds no log of, with
// the events the sketch may hold for k at now: in every window, as many as
// the fewer of its cells counts there, at the times of the entries. k's own
// events, if it was moved in, are in every cell of k, so no window of b
// counts fewer of them than happened. Of those events b gets the newest
// most at most, all that its limits look at.
func (s *sketch) load(b *budget, k limitKey, now int64, most int) {
	if s.cells == nil {
		return
	}
	cut, cols := s.cut(now), s.columns(&k)
	var cs [sketchRows]*cell
	for r, i := range cols {
		c := s.cell(r, i, false)
		if c == nil {
			return
		}
		if c.forget(cut); c.n[0] == 0 {
			return
		}
		cs[r] = c
	}
	// Walk both cells' entries newest first. Once past time a, a window
	// holds at least the events at or after a of every cell (their
	// entries' times are upper bounds), so it gets the fewest of them.
	var (
		next  [sketchRows]int // each cell's newest entry not yet walked
		since [sketchRows]int // each cell's events at or after a
		times [sketchRows * cellEntries]uint32
		runs  [sketchRows * cellEntries]int
		m     int // entries of times and runs used
		got   int // events given to b
	)
	for r, c := range cs {
		next[r] = c.used() - 1
	}
	for got < most {
		var a uint32
		for r, c := range cs {
			if next[r] >= 0 {
				a = max(a, c.at[next[r]])
			}
		}
		if a == 0 {
			break
		}
		fewest := saturated
		for r, c := range cs {
			for ; next[r] >= 0 && c.at[next[r]] == a; next[r]-- {
				since[r] = min(since[r]+c.count(next[r]), saturated)
			}
			fewest = min(fewest, since[r])
		}
		if d := min(fewest, most) - got; d > 0 {
			times[m], runs[m] = a, d
			m++
			got += d
		}
	}
	for m--; m >= 0; m-- {
		t := s.time(times[m])
		for range runs[m] {
			b.events = append(b.events, event{at: t})
		}
		b.latest = max(b.latest, t)
	}
}

// used returns how many entries of c are used.
func (c *cell) used() int {
	n := 0
	for n < cellEntries && c.n[n] != 0 {
		n++
	}
	return n
}

// count returns the events of entry i.
func (c *cell) count(i int) int {
	if c.n[i] == math.MaxUint16 {
		return saturated
	}
	return int(c.n[i])
}

// forget drops the entries at or before second cut, which count no more.
func (c *cell) forget(cut uint32) {
	k := 0
	for k < cellEntries && c.n[k] != 0 && c.at[k] <= cut {
		k++
	}
	if k == 0 {
		return
	}
	copy(c.at[:], c.at[k:])
	copy(c.n[:], c.n[k:])
	for i := cellEntries - k; i < cellEntries; i++ {
		c.at[i], c.n[i] = 0, 0
	}
}

// add counts n more events at second a (at least 1). A cell with no entry
// free merges the two entries closest in time, the oldest two of equals,
// into the later one: their events then count as late as the later, which
// only ever counts them in more windows, never fewer.
func (c *cell) add(a uint32, n int) {
	var (
		at    [cellEntries + 1]uint32
		count [cellEntries + 1]int
	)
	m := c.used()
	for i := range m {
		at[i], count[i] = c.at[i], c.count(i)
	}
	i := 0
	for i < m && at[i] < a {
		i++
	}
	if i < m && at[i] == a {
		count[i] = min(count[i]+n, saturated)
	} else {
		copy(at[i+1:m+1], at[i:m])
		copy(count[i+1:m+1], count[i:m])
		at[i], count[i] = a, min(n, saturated)
		m++
	}
	if m > cellEntries {
		j := 0
		for i := 1; i < m-1; i++ {
			if at[i+1]-at[i] < at[j+1]-at[j] {
				j = i
			}
		}
		count[j+1] = min(count[j]+count[j+1], saturated)
		copy(at[j:m-1], at[j+1:m])
		copy(count[j:m-1], count[j+1:m])
		m--
	}
	for i := range cellEntries {
		c.at[i], c.n[i] = 0, 0
		if i < m {
			c.at[i], c.n[i] = at[i], uint16(min(count[i], math.MaxUint16))
		}
	}
}
