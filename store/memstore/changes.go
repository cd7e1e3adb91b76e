package memstore

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// errRevertHashTaken refuses a change whose undo token hash another record
// already has: the tokens are random, so it is a caller's mistake, and
// keeping both records under one key would let one token undo the other's
// change.
var errRevertHashTaken = errors.New("memstore: undo token hash already recorded")

// undoRecord is the undo of one change: whose, and the address to restore.
// The store keys it by the digest of its token hash and deletes it when it
// is used or voided, so a record it holds is live until expiresAt.
type undoRecord struct {
	userID           string
	email, canonical string
	expiresAt        time.Time
}

// alarm is what a user's changes left: the keys of its undo records that
// have been neither used nor voided, in the order of the changes that made
// them (so that "made after" is exact), and the end of its cool-off. Keys
// of records that expired stay until the user's next change, so that the
// records of a user never outnumber its changes.
type alarm struct {
	undos     [][sha256.Size]byte
	lockUntil time.Time
}

// queued is a notice in the outbox.
type queued struct {
	notice store.Notice
	due    time.Time
	no     uint64 // recording order, for notices due at one instant
	at     int    // index in the outbox's heap
}

// outbox orders the queued notices soonest due first (then by recording),
// as a binary heap: a lease takes the few it hands out in O(log n) each,
// however many wait, as they do behind a slow mail server.
type outbox []*queued

func (o outbox) Len() int { return len(o) }
func (o outbox) Less(i, j int) bool {
	return cmp.Or(o[i].due.Compare(o[j].due), cmp.Compare(o[i].no, o[j].no)) < 0
}
func (o outbox) Swap(i, j int) {
	o[i], o[j] = o[j], o[i]
	o[i].at, o[j].at = i, j
}
func (o *outbox) Push(x any) {
	q := x.(*queued)
	q.at = len(*o)
	*o = append(*o, q)
}
func (o *outbox) Pop() any {
	old := *o
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*o = old[:len(old)-1]
	return q
}

// ChangeEmail implements store.ChangeStore. It judges ErrChangeLocked
// before ErrEmailExists, so that a locked account learns nothing of which
// addresses are taken. A change whose RevertHash is empty records no undo.
func (s *UserStore) ChangeEmail(_ context.Context, c store.EmailChange) error {
	key := sha256.Sum256(c.RevertHash)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	u, ok := s.byID[c.UserID]
	if !ok {
		return store.ErrNotFound
	}
	a := s.alarms[u.ID]
	if a != nil && a.lockUntil.After(c.Now) {
		return store.ErrChangeLocked
	}
	if s.takenByOther(u.ID, c.Canonical) {
		return store.ErrEmailExists
	}
	alarmed := u.CanonicalEmail != "" && u.CanonicalEmail != c.Canonical
	undo := alarmed && len(c.RevertHash) > 0
	if _, taken := s.undos[key]; undo && taken {
		return errRevertHashTaken
	}

	prev := u
	s.setAddress(u, c.Email, c.Canonical)
	if a != nil {
		s.forget(u.ID, a, c.Now)
	}
	if !alarmed {
		return nil
	}
	s.noticeNo++
	n := c.Notice
	n.ID = strconv.FormatUint(s.noticeNo, 10)
	n.UserID, n.To, n.Language, n.Attempts = u.ID, prev.Email, prev.Language, 0
	n.Sealed = bytes.Clone(n.Sealed)
	q := &queued{notice: n, due: c.Now, no: s.noticeNo}
	s.notices[n.ID] = q
	heap.Push(&s.due, q)
	if undo {
		s.undos[key] = undoRecord{userID: u.ID, email: prev.Email, canonical: prev.CanonicalEmail, expiresAt: c.RevertExpiresAt}
		if a = s.alarms[u.ID]; a == nil {
			a = &alarm{}
			s.alarms[u.ID] = a
		}
		a.undos = append(a.undos, key)
	}
	return nil
}

// forget drops what is over in a, user id's alarm, at now: undo records
// that expired, and a cool-off that ended; and the alarm itself when
// nothing is left. The caller holds s.mu for writing.
//
// A user's records are in the order of its changes, and so, within the
// callers' clocks, of their expiry: the expired ones are a prefix, and
// forgetting costs what it forgets, not what the user keeps (a user with
// loosened budgets may keep thousands). A record that expired behind a
// live one, its change's clock having lagged, stays until the live one
// goes; RevertEmail judges expiry itself.
func (s *UserStore) forget(id string, a *alarm, now time.Time) {
	n := 0
	for n < len(a.undos) && !s.undos[a.undos[n]].expiresAt.After(now) {
		delete(s.undos, a.undos[n])
		n++
	}
	a.undos = a.undos[n:]
	if !a.lockUntil.After(now) {
		a.lockUntil = time.Time{}
	}
	if len(a.undos) == 0 && a.lockUntil.IsZero() {
		delete(s.alarms, id)
	}
}

// RevertEmail implements store.ChangeStore.
func (s *UserStore) RevertEmail(_ context.Context, r store.EmailRevert) (store.Reverted, error) {
	if len(r.TokenHash) == 0 {
		return store.Reverted{}, store.ErrRevertInvalid
	}
	key := sha256.Sum256(r.TokenHash)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.undos[key]
	if !ok || !r.Now.Before(rec.expiresAt) {
		return store.Reverted{}, store.ErrRevertInvalid
	}
	if s.takenByOther(rec.userID, rec.canonical) {
		return store.Reverted{}, store.ErrEmailExists
	}
	u := s.byID[rec.userID]
	s.setAddress(u, rec.email, rec.canonical)
	// The record and every later one of the user die: the user is back
	// where the record's change started.
	a := s.alarms[u.ID]
	i := slices.Index(a.undos, key)
	for _, k := range a.undos[i:] {
		delete(s.undos, k)
	}
	a.undos = a.undos[:i]
	if r.LockUntil.After(a.lockUntil) {
		a.lockUntil = r.LockUntil
	}
	return store.Reverted{UserID: u.ID, Email: rec.email, Canonical: rec.canonical, From: u.Email}, nil
}

// LeaseNotices implements store.Outbox.
func (s *UserStore) LeaseNotices(_ context.Context, max int, now time.Time, lease time.Duration) ([]store.Notice, error) {
	if max <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Notice
	// Each leased notice goes to the back of the heap (due again at the
	// lease's end), so the next due one is at the top.
	for len(out) < max && len(s.due) > 0 && !s.due[0].due.After(now) {
		q := s.due[0]
		q.notice.Attempts++
		q.due = now.Add(lease)
		heap.Fix(&s.due, 0)
		n := q.notice
		n.Sealed = bytes.Clone(q.notice.Sealed)
		out = append(out, n)
		if s.due[0] == q {
			break // a lease of no length: it is due again at once, but not twice here
		}
	}
	return out, nil
}

// RetryNotice implements store.Outbox.
func (s *UserStore) RetryNotice(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.notices[id]; ok {
		q.due = at
		heap.Fix(&s.due, q.at)
	}
	return nil
}

// DeleteNotice implements store.Outbox.
func (s *UserStore) DeleteNotice(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.notices[id]; ok {
		heap.Remove(&s.due, q.at)
		delete(s.notices, id)
	}
	return nil
}

// NoticeBacklog implements store.Outbox.
func (s *UserStore) NoticeBacklog(context.Context) (n int, oldest time.Time, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, q := range s.notices {
		if oldest.IsZero() || q.notice.ChangedAt.Before(oldest) {
			oldest = q.notice.ChangedAt
		}
	}
	return len(s.notices), oldest, nil
}
