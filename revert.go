package selfservice

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"sync"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

// RevertEmailPath is the endpoint that undoes a change of email with the
// token of the notice mailed to the old address. It is this package's own:
// the API family has no such endpoint.
const RevertEmailPath = "/api/v2/sdk/profile/revert-email"

// RevertEmailRequest is a request to undo a change of email: the body of
// POST /api/v2/sdk/profile/revert-email and its caller. There is no user:
// the token names the change, and its owner may have lost every session.
type RevertEmailRequest struct {
	Caller
	// RevertToken is the token of the notice mailed to the old address
	// (Message.RevertToken).
	RevertToken string
}

// RevertEmail undoes a change of email, running the checks of the HTTP
// endpoint in the same order: device, client id empty, client registered,
// revert_token empty, the per-IP budget of undo attempts, then the token
// (a live token is honoured even when the budget is spent: see below).
// A live token puts the address it was mailed to back on the account,
// voids the undo tokens of the account's later changes (so that a chain
// A->B->C goes straight back to A) and locks the account's email changes
// for Config.RevertCoolOff, longer than any code lives, so no code pending
// at the undo can be used to change it again. The application learns of it
// through EventEmailReverted, on which it should end the account's
// sessions. Errors are as for SendCode: IDAAS.SDK.REVERT.9302 for a token
// that is unknown, expired, used or voided, IDAAS.SDK.REVERT.9303 when
// another account holds the old address now (the token stays live).
func (s *Service) RevertEmail(ctx context.Context, req RevertEmailRequest) (err error) {
	defer s.tel.endOperation(ctx, s.tel.revertEmail, s.tel.startOperation(ctx), &err)
	c, err := s.checkCaller(ctx, req.Caller)
	if err != nil {
		return err
	}
	return s.revertEmail(ctx, c, req.RevertToken)
}

func (s *Service) serveRevertEmail(w http.ResponseWriter, r *http.Request) {
	var token string
	err := readFields(w, r, s.cfg.MaxBodyBytes, []field{{"revert_token", &token}})
	if err == nil {
		err = s.revertEmail(r.Context(), s.httpCaller(r), token)
	}
	s.answer(w, r, err)
}

// revertEmail runs RevertEmail's checks after the caller's.
func (s *Service) revertEmail(ctx context.Context, c caller, token string) error {
	token = strings.TrimSpace(token)
	if token == "" {
		return i18n.CodeRevertTokenEmpty
	}
	// The slot is taken before the token is looked at, so that concurrent
	// guesses cannot overdraw the budget; a token that works gives it back.
	taken, err := s.reserve(ctx, c, "",
		budget{BudgetRevertsPerIP, revertsPerIPKey(c), s.cfg.Budgets.RevertsPerIP, i18n.CodeRevertLimited})
	// A spent budget still lets a live token through: the budget only
	// bounds guesses, which 256 bits make hopeless anyway, and a thief who
	// shares the owner's address (a NAT, a proxy) could otherwise spend it
	// with junk and keep the undo from the owner for the token's whole
	// life. A token that fails is answered with the refusal.
	var limited error
	if err != nil {
		if !errors.Is(err, i18n.CodeRevertLimited) {
			return err
		}
		limited = err
	}
	rejected := func() error {
		s.event(ctx, c, EventRevertRejected, "", "", "")
		if limited != nil {
			return limited
		}
		return i18n.CodeRevertTokenInvalid
	}
	if !wellFormedRevertToken(token) {
		return rejected()
	}
	now := s.cfg.Now()
	req := store.EmailRevert{Now: now, LockUntil: now.Add(s.cfg.RevertCoolOff)}
	var done store.Reverted
	// A token made before a rotation of CodeSecret is hashed under the
	// secret of its time.
	for _, k := range s.keys {
		req.TokenHash = k.revertHash(token)
		if done, err = s.cfg.Users.RevertEmail(ctx, req); !errors.Is(err, store.ErrRevertInvalid) {
			break
		}
	}
	switch {
	case errors.Is(err, store.ErrRevertInvalid):
		return rejected()
	case errors.Is(err, store.ErrEmailExists):
		s.cancel(ctx, taken)
		return i18n.CodeRevertEmailTaken
	case err != nil:
		return i18n.Wrap(i18n.CodeInternal, err)
	}
	s.cancel(ctx, taken)
	s.tel.reverted(ctx)
	s.event(ctx, c, EventEmailReverted, done.UserID, done.Email, done.From)
	return nil
}

// revertTokenBytes is the size of an undo token's random part: 256 bits,
// twice what guessing needs, written as 43 characters of unpadded
// base64url.
const revertTokenBytes = 32

var revertTokenLen = base64.RawURLEncoding.EncodedLen(revertTokenBytes)

// newRevertToken returns a fresh undo token from crypto/rand.
func newRevertToken() string {
	var b [revertTokenBytes]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// wellFormedRevertToken reports whether s could be a token newRevertToken
// made: anything else is refused without asking a store. The decoded
// length is checked too, because the decoder skips '\r' and '\n': 43
// characters with a line break in them decode to fewer than 32 bytes.
func wellFormedRevertToken(s string) bool {
	if len(s) != revertTokenLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == revertTokenBytes
}

// secretKey is what one code secret keys: the hash under which undo tokens
// are stored, and the cipher that seals a token inside its notice until the
// notice is delivered.
type secretKey struct {
	secret []byte
	aead   cipher.AEAD
	macs   sync.Pool // of hash.Hash: HMAC-SHA256 keyed with secret
}

// newSecretKey derives the keys of secret, each for one purpose only.
func newSecretKey(secret []byte) (*secretKey, error) {
	k := &secretKey{secret: append([]byte(nil), secret...)}
	k.macs.New = func() any { return hmac.New(sha256.New, k.secret) }
	block, err := aes.NewCipher(k.derive("selfservice notice seal"))
	if err != nil {
		return nil, err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	return k, nil
}

// derive returns a 32-byte key for purpose: HMAC-SHA256 under the secret.
func (k *secretKey) derive(purpose string) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// revertHash is what a store keeps of an undo token: a keyed hash, so that a
// leaked store reveals no usable token.
func (k *secretKey) revertHash(token string) []byte {
	m := k.macs.Get().(hash.Hash)
	defer k.macs.Put(m)
	m.Reset()
	m.Write([]byte("selfservice revert token\x00"))
	m.Write([]byte(token))
	return m.Sum(make([]byte, 0, sha256.Size))
}

// seal encrypts token for the notice of userID's change. The notice must
// carry the token to the old address, possibly days later from another
// replica, yet a store must not hold it usable: sealed, it opens only under
// the code secret, and it is gone with the notice once delivered.
func (k *secretKey) seal(token, userID string) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(token)+k.aead.Overhead())
	_, _ = rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, []byte(token), []byte(userID))
}

// open returns the token seal made for userID's notice.
func (k *secretKey) open(sealed []byte, userID string) (string, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("selfservice: sealed token too short")
	}
	token, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(userID))
	if err != nil {
		return "", err
	}
	return string(token), nil
}

// secretKeys are the keys of the current code secret and of the previous
// ones, the current first.
type secretKeys []*secretKey

func newSecretKeys(current []byte, previous [][]byte) (secretKeys, error) {
	var keys secretKeys
	for i, secret := range append([][]byte{current}, previous...) {
		if len(secret) < MinCodeSecretLen {
			if i == 0 {
				return nil, fmt.Errorf("%w: CodeSecret must hold at least %d bytes", ErrConfig, MinCodeSecretLen)
			}
			return nil, fmt.Errorf("%w: PreviousCodeSecrets[%d] must hold at least %d bytes", ErrConfig, i-1, MinCodeSecretLen)
		}
		k, err := newSecretKey(secret)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// open opens a sealed token with whichever secret sealed it.
func (ks secretKeys) open(sealed []byte, userID string) (string, error) {
	for _, k := range ks {
		if token, err := k.open(sealed, userID); err == nil {
			return token, nil
		}
	}
	return "", errors.New("selfservice: the sealed undo token opens under no code secret")
}
