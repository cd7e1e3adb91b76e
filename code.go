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
// its address. Keyed HMAC states are pooled: keying one costs more than
// hashing a code.
type codeHasher struct{ macs sync.Pool }

func newCodeHasher(secret []byte) *codeHasher {
	secret = append([]byte(nil), secret...)
	return &codeHasher{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

func (h *codeHasher) hash(purpose, canonical, code string) []byte {
	m := h.macs.Get().(hash.Hash)
	defer h.macs.Put(m)
	m.Reset()
	var buf [2*MaxEmailLen + 2 + CodeLen]byte
	b := append(append(append(append(append(buf[:0], purpose...), 0), canonical...), 0), code...)
	m.Write(b)
	return m.Sum(nil)
}
