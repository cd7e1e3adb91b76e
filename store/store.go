// Package store defines the storage the self-service handlers need: users
// (UserStore), verification codes (CodeStore), budgets of sends and wrong
// codes (Limiter) and registered applications (ClientRegistry). The contracts live in the
// interface comments; store/storetest checks an implementation against them
// and store/memstore is the in-memory reference.
//
// Addresses reach a store twice: as typed by the user (kept for display and
// mail) and in canonical form (lower-cased, normalised; see the root
// package's CanonicalEmail). Stores compare, index and key only the canonical
// form. UpdateEmail takes it as given; the create methods (seeding) compute
// or check it with the same rule, so that one rule holds everywhere.
package store

import (
	"context"
	"time"
)

// sentinel is the type of the sentinel errors: constants, so that no
// importer can reassign them.
type sentinel string

func (s sentinel) Error() string { return string(s) }

// Sentinel errors. Implementations return them (or wrap them with %w) so
// that errors.Is works; any other error is treated as the store being
// unavailable and answered as an internal failure.
const (
	// ErrNotFound: no user or client with that id.
	ErrNotFound sentinel = "store: not found"
	// ErrEmailExists: another user holds the canonical address.
	ErrEmailExists sentinel = "store: email already exists"
	// ErrCodeInvalid: no live code for the key, or the code does not match,
	// or its tries are used up. The three are one error on purpose: a caller
	// learns nothing from which one it was.
	ErrCodeInvalid sentinel = "store: verification code invalid"
	// ErrRateLimited: a limit for the key is reached (see RateLimitError).
	ErrRateLimited sentinel = "store: rate limited"
	// ErrFull: a store with a hard cap on its entries can make no room for
	// a new one; nothing was written. The handlers answer it as an
	// internal failure. store/memstore makes room instead (it evicts the
	// code that expires soonest, and moves budgets into a sketch that only
	// over-counts), and returns it only when a budget it would move holds
	// an event beyond the sketch's 68 years.
	ErrFull sentinel = "store: full"
	// ErrInvalidUser: a user handed to a store's create method (seeding)
	// whose Email is not a valid address, or whose CanonicalEmail is set
	// without Email or is not Email's canonical form; nothing was written.
	ErrInvalidUser sentinel = "store: invalid user"
	// ErrAlreadyExists: a record with that id exists. Returned by the
	// stores' own create methods (seeding), which are not part of the
	// interfaces below.
	ErrAlreadyExists sentinel = "store: already exists"
	// ErrChangeLocked: the user's email may not change before a cool-off
	// that an undo (ChangeStore.RevertEmail) set has ended; nothing
	// changed.
	ErrChangeLocked sentinel = "store: email changes locked"
	// ErrRevertInvalid: no live undo record for the token hash (never
	// recorded, expired, used, or voided by an earlier undo); nothing
	// changed.
	ErrRevertInvalid sentinel = "store: undo token invalid"
)

// User is an account as the handlers see it.
type User struct {
	ID string
	// Email is the address as the user typed it; it may be empty.
	Email string
	// CanonicalEmail is the form used for uniqueness and lookup; empty
	// when Email is.
	CanonicalEmail string
	// Language is the user's language as a BCP 47 tag ("zh", "en-GB"),
	// set by the application or its sign-up, never by a request to this
	// package: the notice of a change to the old address is written in it,
	// or in every language of the bundle when it is empty or the bundle
	// lacks it, so that whoever
	// made the change does not choose the language of the owner's alarm.
	Language string
}

// UserStore reads users and changes their email.
//
// Implementations must be safe for concurrent use.
type UserStore interface {
	// User returns the user with the given id, or an error wrapping
	// ErrNotFound.
	User(ctx context.Context, id string) (User, error)

	// UpdateEmail sets the user's address to email (as typed) and canonical
	// (its canonical form) in one atomic step. It returns an error wrapping
	// ErrNotFound if the user does not exist (whether or not the address
	// is taken) and ErrEmailExists if another user's canonical address
	// equals canonical; in both cases nothing changes. An empty canonical
	// address is no address and never conflicts. Ids compare exactly. Setting a user's own canonical address again succeeds.
	// Uniqueness must be decided by the store itself (a unique index, a
	// lock): of concurrent calls for one canonical address by different
	// users exactly one succeeds and the others get ErrEmailExists, and no
	// reader ever sees a half-written user.
	UpdateEmail(ctx context.Context, id, email, canonical string) error
}

// ChangeStore is a UserStore that changes addresses together with the
// owner's alarm: the notice to the previous address and the undo of the
// change are recorded in the same atomic step as the change itself (the
// same database transaction), so that no change ever commits without them,
// whatever crashes when. It keeps the notices for the Service's courier
// (Outbox) and spends undo tokens (RevertEmail).
//
// store/memstore and store/sqlstore implement it; store/storetest's
// TestChangeStore is the contract's conformance suite. An application that
// keeps users in a table of its own can implement ChangeEmail and
// RevertEmail around its own UPDATE with sqlstore's Changes, which records
// notices and undo records inside the application's transaction.
//
// Implementations must be safe for concurrent use.
type ChangeStore interface {
	UserStore
	Outbox

	// ChangeEmail sets the user's address to c.Email and c.Canonical and,
	// in the same atomic step, when the user held an address before and
	// it differs canonically from the new one:
	//   - records c.Notice for the courier, with To set to that previous
	//     address (as typed) and Language to the user's language, both as
	//     the store holds them at the change;
	//   - records the undo of the change: c.RevertHash (a keyed hash of
	//     the undo token, never the token) bound to the user, the previous
	//     address (typed and canonical) and c.Canonical, live until
	//     c.RevertExpiresAt, after every undo record the user already has.
	// It returns an error wrapping ErrNotFound if the user does not exist,
	// ErrEmailExists if another user holds c.Canonical, and ErrChangeLocked
	// if the user's cool-off (see RevertEmail) has not ended at c.Now; in
	// each case nothing is written. A user who already holds c.Canonical
	// keeps it, and nothing is recorded. Uniqueness and concurrency are as
	// for UpdateEmail; of a change and an undo of the same user that run
	// at once, the store's order decides, and the result is as if one ran
	// wholly before the other (an undo after the change voids its undo
	// record; a change after the undo meets the cool-off).
	ChangeEmail(ctx context.Context, c EmailChange) error

	// RevertEmail spends the undo record whose token hash is r.TokenHash,
	// when it is live at r.Now (recorded, not expired, used nor voided),
	// in one atomic step: the user's address goes back to the record's
	// previous address, the record is used, every undo record of the user
	// made after it is voided (so that a chain of changes A->B->C is undone
	// by A's token straight back to A, and the later tokens die), and the
	// user's email changes are locked until r.LockUntil (a later lock
	// already set stays). It returns the restored change. It returns an
	// error wrapping ErrRevertInvalid when no record is live for the hash,
	// and ErrEmailExists when another user holds the previous address now;
	// in both cases nothing changes and the record stays as it was. Of
	// concurrent calls with one hash at most one succeeds.
	RevertEmail(ctx context.Context, r EmailRevert) (Reverted, error)
}

// EmailChange is a change of a user's address with the alarm recorded with
// it (see ChangeStore.ChangeEmail).
type EmailChange struct {
	UserID string
	// Email and Canonical are the new address, as typed and in canonical
	// form.
	Email, Canonical string
	// Notice is the notice to the previous address. The store sets its ID,
	// To, Language and Attempts; the caller sets NewEmail, ChangedAt and
	// Sealed.
	Notice Notice
	// RevertHash is the keyed hash of the change's undo token, and
	// RevertExpiresAt when the undo record stops being live.
	RevertHash      []byte
	RevertExpiresAt time.Time
	// Now is the time of the change, by which a cool-off is judged.
	Now time.Time
}

// EmailRevert is a request to spend an undo token (see
// ChangeStore.RevertEmail).
type EmailRevert struct {
	// TokenHash is the keyed hash of the token presented.
	TokenHash []byte
	// Now judges the record's expiry.
	Now time.Time
	// LockUntil ends the cool-off the undo sets on the user's changes.
	LockUntil time.Time
}

// Reverted is an undone change: whose it was, the address restored, and
// the address the user held just before the undo.
type Reverted struct {
	UserID string
	// Email and Canonical are the restored address.
	Email, Canonical string
	// From is the address (as typed) the undo replaced.
	From string
}

// Notice is the alarm mailed to a user's previous address after a change,
// kept in an Outbox until it is delivered or given up.
type Notice struct {
	// ID names the notice in its Outbox; the store assigns it, and never
	// again to another notice: a courier whose lease ended while it mailed
	// deletes by this id, which must not remove a later notice.
	ID string
	// UserID is whose address changed.
	UserID string
	// To is the previous address, as typed: the recipient.
	To string
	// NewEmail is the new address, masked (n***@example.com).
	NewEmail string
	// Language is the user's language (BCP 47), or empty for every
	// language of the bundle.
	Language string
	// ChangedAt is when the change was made.
	ChangedAt time.Time
	// Sealed is the change's undo token, encrypted by the Service, so that
	// the store holds no usable token; nil when there is none.
	Sealed []byte
	// Attempts counts the leases of the notice so far, this one included
	// (set by the store).
	Attempts int
}

// Outbox keeps recorded notices until the courier delivers them. Leases
// make it shareable: every process of a deployment runs a courier on the
// same Outbox, each notice is handed to one at a time, and a notice whose
// holder crashed is handed out again when its lease ends. Delivery is at
// least once.
//
// Implementations must be safe for concurrent use.
type Outbox interface {
	// LeaseNotices hands out up to max notices that are due at now (each
	// is due from its recording, and again at the time of its lease's end
	// or a RetryNotice), soonest due first. Each returned notice has its
	// Attempts counted and is due again only at now+lease, so concurrent
	// callers, in any process, never receive the same notice before its
	// lease ends. It returns none, and no error, when none is due.
	LeaseNotices(ctx context.Context, max int, now time.Time, lease time.Duration) ([]Notice, error)

	// RetryNotice makes the notice id due again at at (which may be
	// before its lease's end). An unknown id is not an error.
	RetryNotice(ctx context.Context, id string, at time.Time) error

	// DeleteNotice removes the notice id: delivered, or given up. An
	// unknown id is not an error.
	DeleteNotice(ctx context.Context, id string) error

	// NoticeBacklog returns how many notices the Outbox holds, due or
	// not, and the ChangedAt of the oldest (the zero time when it holds
	// none).
	NoticeBacklog(ctx context.Context) (n int, oldest time.Time, err error)
}

// CodeKey names one verification code: what it is for and the canonical
// address it was sent to.
type CodeKey struct {
	Purpose string // e.g. "UPDATE_EMAIL_EMS"
	Email   string // canonical form
}

// CodeStore keeps verification codes as keyed hashes; a store never sees a
// code in clear.
//
// Implementations must be safe for concurrent use.
type CodeStore interface {
	// Put stores hash as the live code for key until expiresAt, replacing
	// any previous code for key and resetting its tries.
	Put(ctx context.Context, key CodeKey, hash []byte, expiresAt time.Time) error

	// Verify checks the live code for key against hashes in one atomic
	// step: the keyed hashes of the one code submitted, under each code
	// secret the caller accepts (one, or a few while a secret is being
	// rotated; at least one). On a match of any it deletes the code (single
	// use) and returns nil. Otherwise it counts ONE failed try, however
	// many hashes were given, and returns ErrCodeInvalid; the try that
	// reaches maxTries deletes the code. With no live code (never put,
	// expired at now, consumed or dead) it returns ErrCodeInvalid. Of
	// concurrent calls with a matching hash at most one returns nil, and no
	// more than maxTries submissions are ever evaluated against one code.
	// Hashes are compared in constant time where the engine allows.
	Verify(ctx context.Context, key CodeKey, hashes [][]byte, maxTries int, now time.Time) error
}

// Limit allows at most N events in any window of length Window: an event
// at time t counts at every instant in [t, t+Window).
type Limit struct {
	N      int
	Window time.Duration
}

// RateLimitError is what a Limiter returns when a limit refuses an event.
// It wraps ErrRateLimited, so errors.Is(err, ErrRateLimited) holds.
type RateLimitError struct {
	// RetryAfter is how long from the refused call's now until the event
	// would be allowed, as far as the events recorded so far tell; at
	// least one millisecond.
	RetryAfter time.Duration
	// Key is the key whose limits refused, for a call that reserves under
	// several (BatchLimiter, CodeChecker); empty from Reserve.
	Key string
}

// Error describes the refusal.
func (e *RateLimitError) Error() string {
	return "store: rate limited, retry after " + e.RetryAfter.String()
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Limiter counts events under keys against sliding-window limits: the
// package's budgets of sends and of wrong codes. Every Limit holds in every
// window of its length, not only in windows aligned to some clock (no fixed
// windows), and across every process that shares the Limiter's storage.
//
// Callers use one list of limits per key; an implementation may forget
// events older than the longest window of that list.
//
// An implementation may count more events than were recorded for a key
// (an approximation that bounds its memory, as store/memstore's sketch),
// never fewer: it then refuses early, never late, and its doc says how
// likely that is under what load; RetryAfter, measured on the events it
// counts, is then the same or longer. One that can no longer tell an event
// apart gives it back on Cancel as nothing, never as another event.
//
// Implementations must be safe for concurrent use.
type Limiter interface {
	// Reserve records one event for key at now unless, counting it, some
	// limit would see more than its N events in a window of its length
	// (that is, unless the recorded events in (now-Window, now] already
	// number N). On success it returns an id that Cancel takes. On refusal
	// it records nothing and returns a *RateLimitError whose RetryAfter is,
	// over the refusing limits, the longest time until enough of their
	// events have left their windows, measured from now. Check and record
	// are one atomic step: of concurrent calls no more succeed than the
	// limits allow. An empty list of limits, or a Limit whose N or Window
	// is not positive, is a caller's mistake: Reserve refuses it with an
	// error that does not wrap ErrRateLimited.
	//
	// A caller's now moves forward for a key, but concurrent callers may
	// pass nows slightly out of order. An earlier now must not let more
	// events through than the limits allow among the events recorded: an
	// implementation may treat it as the latest now or event time it has
	// for key, recording the event then and still measuring RetryAfter
	// from the now passed.
	Reserve(ctx context.Context, key string, limits []Limit, now time.Time) (id string, err error)

	// Cancel removes the event id that Reserve recorded for key, as if it
	// had never been reserved: a budget of wrong codes gives back the slot
	// it reserved when the code turns out right. An id that is unknown,
	// already cancelled or forgotten is not an error.
	Cancel(ctx context.Context, key, id string) error
}

// LimitRequest asks for one event under Key, held to Limits.
type LimitRequest struct {
	Key    string
	Limits []Limit
}

// Reservation is one event a Limiter recorded: its key and the id Reserve
// returned.
type Reservation struct {
	Key, ID string
}

// BatchLimiter is a Limiter that reserves under several keys in one atomic
// step (one lock, one round trip), for a caller that charges several
// budgets for one request.
//
// Implementations must be safe for concurrent use.
type BatchLimiter interface {
	Limiter

	// ReserveAll records one event at now under each request's key, all
	// or none, as Reserve would each: when a limit of any request refuses,
	// nothing is recorded and the error is a *RateLimitError whose Key
	// names the first refusing request (in order) and whose RetryAfter is
	// that request's. On success it returns one id per request, in order.
	// Requests name distinct keys; a mistake in the limits is refused as
	// Reserve refuses it.
	ReserveAll(ctx context.Context, reqs []LimitRequest, now time.Time) (ids []string, err error)

	// CancelAll removes the events rs name, as Cancel does each.
	CancelAll(ctx context.Context, rs []Reservation) error
}

// Outcome is what a verification found, for CodeCheck's charges.
type Outcome int

// The outcomes a Charge is kept on.
const (
	// OnMismatch: the code was not accepted (a wrong-code budget).
	OnMismatch Outcome = iota + 1
	// OnMatch: the code was accepted (a budget of changes).
	OnMatch
)

// Charge is an event reserved around a verification and kept only on one
// outcome: given back on the other.
type Charge struct {
	LimitRequest
	KeepOn Outcome
}

// CodeCheck is a verification with budgets charged around it (see
// CodeChecker).
type CodeCheck struct {
	Key      CodeKey
	Hashes   [][]byte
	MaxTries int
	Now      time.Time
	Charges  []Charge
}

// CodeChecker is a CodeStore that charges the budgets of a Limiter it
// shares storage with around a verification, in one atomic step: store/
// redisstore's, when codes and budgets live in one Redis (one round trip
// instead of three).
//
// Implementations must be safe for concurrent use.
type CodeChecker interface {
	CodeStore

	// SharesBudgets reports whether l keeps its budgets where this store
	// keeps codes, so that CheckCode's charges count in l's budgets.
	SharesBudgets(l Limiter) bool

	// CheckCode reserves c.Charges at c.Now as BatchLimiter.ReserveAll
	// would, then, unless they are refused, verifies the code as Verify
	// would, then gives back the charges not kept on the outcome, all in
	// one atomic step. It returns the ids of the charges kept, in order
	// ("" for one given back), with nil on a match, and with an error
	// wrapping ErrCodeInvalid on a mismatch. On a refusal it records
	// nothing, evaluates no code and returns a *RateLimitError as
	// ReserveAll does.
	CheckCode(ctx context.Context, c CodeCheck) (kept []string, err error)
}

// Client is a registered application.
type Client struct {
	ID   string
	Name string
	// Issuer and JWKSURL, when set, name the OpenID provider whose
	// id_tokens this application's users sign in with and where it
	// publishes its keys, for a deployment whose applications sign in
	// through different issuers (see idtoken.Issuers). Empty: the
	// Service's one Verifier. Both or neither.
	Issuer  string
	JWKSURL string
}

// ClientRegistry looks up registered applications by X-client-id.
//
// Implementations must be safe for concurrent use.
type ClientRegistry interface {
	// Client returns the application with the given id, or an error
	// wrapping ErrNotFound.
	Client(ctx context.Context, id string) (Client, error)
}
