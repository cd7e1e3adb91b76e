package storetest

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/store"
)

// maxTries is the try limit the suite passes to Verify, the spec's default.
const maxTries = 5

// codeLife is how long a code put by the suite lives unless a subtest is
// about expiry: long enough that no slow run reaches it.
const codeLife = 10 * time.Minute

// hash stands in for the keyed hash of a code: 32 bytes, binary, as an HMAC
// would be.
func hash(code string) []byte {
	h := sha256.Sum256([]byte("storetest\x00" + code))
	return h[:]
}

// TestCodeStore checks a store.CodeStore. newStore must return an empty
// store.
func TestCodeStore(t *testing.T, newStore func(t *testing.T) store.CodeStore) {
	t.Helper()
	key := store.CodeKey{Purpose: "UPDATE_EMAIL_EMS", Email: "alice@example.com"}
	right, wrong := hash("123456"), hash("654321")

	// put stores h under key for codeLife, or stops the subtest.
	put := func(t *testing.T, s store.CodeStore, key store.CodeKey, h []byte) {
		t.Helper()
		if err := s.Put(t.Context(), key, h, time.Now().Add(codeLife)); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	// verify checks one Verify call against the live code for key.
	verify := func(t *testing.T, s store.CodeStore, what string, key store.CodeKey, h []byte, want error) {
		t.Helper()
		checkErr(t, what, s.Verify(t.Context(), key, [][]byte{h}, maxTries, time.Now()), want)
	}

	t.Run("Verify without a code is ErrCodeInvalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		verify(t, s, "Verify(never put)", key, right, store.ErrCodeInvalid)
	})

	t.Run("the matching hash succeeds once", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		verify(t, s, "first Verify", key, right, nil)
		verify(t, s, "second Verify", key, right, store.ErrCodeInvalid)
	})

	t.Run("a code belongs to its purpose and address", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		for _, other := range []store.CodeKey{
			{Purpose: "LOGIN_EMS", Email: key.Email},
			{Purpose: key.Purpose, Email: "bob@example.com"},
			{Purpose: key.Purpose, Email: "Alice@Example.com"},
		} {
			verify(t, s, fmt.Sprintf("Verify(%+v)", other), other, right, store.ErrCodeInvalid)
		}
		verify(t, s, "Verify(own key)", key, right, nil)
	})

	// A store that keeps the caller's slice would see the code change under
	// it when the caller reuses its buffer.
	t.Run("Put keeps its own copy of the hash", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		h := hash("123456")
		put(t, s, key, h)
		h[0] ^= 0xff
		verify(t, s, "Verify after the caller changed its slice", key, right, nil)
	})

	// Hashes are binary; an engine that treats them as C strings would stop
	// at the first zero byte.
	t.Run("hashes are compared as bytes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, []byte{0, 0xff, 0, 'a'})
		verify(t, s, "Verify(differs after a zero byte)", key, []byte{0, 0xff, 0, 'b'}, store.ErrCodeInvalid)
		verify(t, s, "Verify(prefix)", key, []byte{0, 0xff, 0}, store.ErrCodeInvalid)
		verify(t, s, "Verify(same bytes)", key, []byte{0, 0xff, 0, 'a'}, nil)
	})

	t.Run("a code expires", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		expiresAt := time.Now().Add(300 * time.Millisecond)
		if err := s.Put(t.Context(), key, right, expiresAt); err != nil {
			t.Fatalf("Put: %v", err)
		}
		sleepUntil(expiresAt.Add(100 * time.Millisecond))
		verify(t, s, "Verify after expiry", key, right, store.ErrCodeInvalid)
	})

	t.Run("a code is dead at its expiry instant", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		expiresAt := time.Now().Add(codeLife)
		if err := s.Put(t.Context(), key, right, expiresAt); err != nil {
			t.Fatalf("Put: %v", err)
		}
		err := s.Verify(t.Context(), key, [][]byte{right}, maxTries, expiresAt)
		checkErr(t, "Verify(now = expiresAt)", err, store.ErrCodeInvalid)
	})

	t.Run("a wrong hash is ErrCodeInvalid and the code survives it", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		for i := range maxTries - 1 {
			verify(t, s, fmt.Sprintf("wrong try %d", i+1), key, wrong, store.ErrCodeInvalid)
		}
		verify(t, s, "right code after maxTries-1 wrong tries", key, right, nil)
	})

	t.Run("several hashes are one try and any of them matches", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		other := hash("under a retired secret")
		// maxTries-1 submissions of two wrong hashes each: one try each.
		for i := range maxTries - 1 {
			err := s.Verify(t.Context(), key, [][]byte{wrong, other}, maxTries, time.Now())
			checkErr(t, fmt.Sprintf("two wrong hashes, submission %d", i+1), err, store.ErrCodeInvalid)
		}
		// The right hash second of two: a match, and the code is spent.
		checkErr(t, "the right hash among others", s.Verify(t.Context(), key, [][]byte{other, right}, maxTries, time.Now()), nil)
		verify(t, s, "the right hash again", key, right, store.ErrCodeInvalid)
	})

	t.Run("maxTries wrong hashes kill the code", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		for i := range maxTries {
			verify(t, s, fmt.Sprintf("wrong try %d", i+1), key, wrong, store.ErrCodeInvalid)
		}
		verify(t, s, "right code after maxTries wrong tries", key, right, store.ErrCodeInvalid)
	})

	t.Run("Put replaces the code and resets its tries", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		resent := hash("111111")
		put(t, s, key, right)
		for i := range maxTries - 1 {
			verify(t, s, fmt.Sprintf("wrong try %d", i+1), key, wrong, store.ErrCodeInvalid)
		}
		put(t, s, key, resent)
		// The replaced code is now a wrong one and counts as the first try
		// against the new code.
		verify(t, s, "Verify(replaced code)", key, right, store.ErrCodeInvalid)
		for i := range maxTries - 2 {
			verify(t, s, fmt.Sprintf("wrong try %d after resend", i+2), key, wrong, store.ErrCodeInvalid)
		}
		verify(t, s, "Verify(new code)", key, resent, nil)
	})

	t.Run("of concurrent matching calls exactly one succeeds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		ctx, now := t.Context(), time.Now()
		errs := race(50, func(int) error { return s.Verify(ctx, key, [][]byte{right}, maxTries, now) })
		checkRace(t, "Verify", errs, 1, store.ErrCodeInvalid)
	})

	t.Run("concurrent wrong hashes count every try", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		ctx, now := t.Context(), time.Now()
		errs := race(50, func(int) error { return s.Verify(ctx, key, [][]byte{wrong}, maxTries, now) })
		checkRace(t, "Verify(wrong)", errs, 0, store.ErrCodeInvalid)
		// A store that loses counts under contention leaves the code alive
		// after more than maxTries guesses.
		verify(t, s, "right code after 50 concurrent wrong tries", key, right, store.ErrCodeInvalid)
	})

	t.Run("concurrent wrong hashes below the limit leave the code alive", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, key, right)
		ctx, now := t.Context(), time.Now()
		errs := race(maxTries-1, func(int) error { return s.Verify(ctx, key, [][]byte{wrong}, maxTries, now) })
		checkRace(t, "Verify(wrong)", errs, 0, store.ErrCodeInvalid)
		verify(t, s, "right code after maxTries-1 concurrent wrong tries", key, right, nil)
	})
}
