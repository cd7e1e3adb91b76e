package selfservice

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
)

// CodeLen is the number of decimal digits in a verification code.
const CodeLen = 6

// codeSpace is 10^CodeLen; codeBound is the largest multiple of it that
// fits in a uint32, so that drawing below it and reducing is unbiased.
const (
	codeSpace = 1_000_000
	codeBound = (1 << 32) / codeSpace * codeSpace
)

// newCode returns CodeLen random decimal digits from crypto/rand, drawn by
// rejection sampling so that every code is equally likely.
func newCode() string {
	var b [4]byte
	for {
		// crypto/rand.Read never fails on supported platforms.
		_, _ = rand.Read(b[:])
		if n := binary.BigEndian.Uint32(b[:]); n < codeBound {
			return formatCode(n % codeSpace)
		}
	}
}

func formatCode(n uint32) string {
	var d [CodeLen]byte
	for i := CodeLen - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return string(d[:])
}

// wellFormedCode reports whether s is exactly CodeLen ASCII digits: anything
// else is wrong without asking a store.
func wellFormedCode(s string) bool {
	if len(s) != CodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// codeHasher makes the keyed hash a store keeps instead of the code:
// HMAC-SHA256 under the integrator's secret over purpose, canonical address
// and code, so that a leaked store reveals no live code and a code binds to
// its address. Keyed HMAC states are pooled, each with the buffer its input
// is assembled in: keying a state costs more than hashing a code, and a
// buffer on the stack would escape through the hash.Hash interface, one
// heap allocation per hash.
type codeHasher struct{ macs sync.Pool }

// codeMAC is one pooled HMAC state and its input buffer.
type codeMAC struct {
	mac hash.Hash
	buf []byte
}

// codeMACBuf is the usual largest input: a purpose of up to 62 bytes, an
// address of MaxEmailLen and a code; a longer one grows the buffer once.
const codeMACBuf = 64 + MaxEmailLen + 1 + CodeLen

func newCodeHasher(secret []byte) *codeHasher {
	secret = append([]byte(nil), secret...)
	return &codeHasher{macs: sync.Pool{New: func() any {
		return &codeMAC{mac: hmac.New(sha256.New, secret), buf: make([]byte, 0, codeMACBuf)}
	}}}
}

// codeHashers hash under the current code secret first, then under the
// previous ones.
type codeHashers []*codeHasher

func newCodeHashers(current []byte, previous [][]byte) codeHashers {
	hs := codeHashers{newCodeHasher(current)}
	for _, p := range previous {
		hs = append(hs, newCodeHasher(p))
	}
	return hs
}

// hash is what a new code is stored as: its hash under the current secret.
func (hs codeHashers) hash(purpose, canonical, code string) []byte {
	return hs[0].hash(purpose, canonical, code)
}

// candidates are what a submitted code is checked against: its hash under
// every accepted secret, so that a code stored before a rotation still
// verifies after it.
func (hs codeHashers) candidates(purpose, canonical, code string) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h.hash(purpose, canonical, code)
	}
	return out
}

func (h *codeHasher) hash(purpose, canonical, code string) []byte {
	m := h.macs.Get().(*codeMAC)
	defer h.macs.Put(m)
	m.mac.Reset()
	m.buf = append(append(append(append(append(m.buf[:0], purpose...), 0), canonical...), 0), code...)
	m.mac.Write(m.buf)
	return m.mac.Sum(make([]byte, 0, sha256.Size))
}
