package selfservice

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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

// hashCode is the keyed hash a store keeps instead of the code: HMAC-SHA256
// under the integrator's secret over purpose, canonical address and code, so
// that a leaked store reveals no live code and a code binds to its address.
func hashCode(secret []byte, purpose, canonical, code string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(canonical))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}
