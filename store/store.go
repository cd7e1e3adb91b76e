// Package store defines the storage the self-service handlers need: users
// (UserStore), verification codes (CodeStore), send limits (SendLimiter) and
// registered applications (ClientRegistry). The contracts live in the
// interface comments; store/storetest checks an implementation against them
// and store/memstore is the in-memory reference.
//
// Addresses reach a store twice: as typed by the user (kept for display and
// mail) and in canonical form (lower-cased, normalised; see the root
// package's CanonicalEmail). Stores compare, index and key only the canonical
// form and never canonicalise themselves, so that one rule holds everywhere.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations return them (or wrap them with %w) so
// that errors.Is works; any other error is treated as the store being
// unavailable and answered as an internal failure.
var (
	// ErrNotFound: no user or client with that id.
	ErrNotFound = errors.New("store: not found")
	// ErrEmailExists: another user holds the canonical address.
	ErrEmailExists = errors.New("store: email already exists")
	// ErrCodeInvalid: no live code for the key, or the code does not match,
	// or its tries are used up. The three are one error on purpose: a caller
	// learns nothing from which one it was.
	ErrCodeInvalid = errors.New("store: verification code invalid")
	// ErrRateLimited: a send limit for the key is reached.
	ErrRateLimited = errors.New("store: rate limited")
	// ErrAlreadyExists: a record with that id exists. Returned by the
	// stores' own create methods (seeding), which are not part of the
	// interfaces below.
	ErrAlreadyExists = errors.New("store: already exists")
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

// SendLimits bound how often codes are mailed to one key.
type SendLimits struct {
	// Interval is the least time between two sends.
	Interval time.Duration
	// Daily is how many sends a window of Window allows; 0 allows none.
	Daily int
	// Window is the length of the daily window, which starts at the
	// first send in it.
	Window time.Duration
}

// SendLimiter counts code sends.
//
// Implementations must be safe for concurrent use.
type SendLimiter interface {
	// Reserve records one send for key at now unless that would break
	// limits, in which case it records nothing and returns an error
	// wrapping ErrRateLimited. Check and record are one atomic step: of
	// concurrent calls no more succeed than the limits allow.
	Reserve(ctx context.Context, key string, limits SendLimits, now time.Time) error
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
