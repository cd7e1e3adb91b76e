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
	// ErrFull: a store with a hard cap on its entries (store/memstore)
	// holds as many live entries as it may; nothing was written. The
	// handlers answer it as an internal failure: they fail closed rather
	// than drop live codes or budgets.
	ErrFull sentinel = "store: full"
	// ErrInvalidUser: a user handed to a store's create method (seeding)
	// whose Email is not a valid address, or whose CanonicalEmail is set
	// without Email or is not Email's canonical form; nothing was written.
	ErrInvalidUser sentinel = "store: invalid user"
	// ErrAlreadyExists: a record with that id exists. Returned by the
	// stores' own create methods (seeding), which are not part of the
	// interfaces below.
	ErrAlreadyExists sentinel = "store: already exists"
)

// User is an account as the handlers see it.
type User struct {
	ID string
	// Email is the address as the user typed it; it may be empty.
	Email string
	// CanonicalEmail is the form used for uniqueness and lookup; empty
	// when Email is.
	CanonicalEmail string
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

	// Verify checks hash against the live code for key in one atomic step.
	// On a match it deletes the code (single use) and returns nil. On a
	// mismatch it counts a failed try and returns ErrCodeInvalid; the try
	// that reaches maxTries deletes the code. With no live code (never put,
	// expired at now, consumed or dead) it returns ErrCodeInvalid. Of
	// concurrent calls with the matching hash at most one returns nil, and
	// no more than maxTries mismatches are ever evaluated against one code.
	// Hashes are compared in constant time where the engine allows.
	Verify(ctx context.Context, key CodeKey, hash []byte, maxTries int, now time.Time) error
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

// Client is a registered application.
type Client struct {
	ID   string
	Name string
}

// ClientRegistry looks up registered applications by X-client-id.
//
// Implementations must be safe for concurrent use.
type ClientRegistry interface {
	// Client returns the application with the given id, or an error
	// wrapping ErrNotFound.
	Client(ctx context.Context, id string) (Client, error)
}
