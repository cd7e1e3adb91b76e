package paired_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/internal/paired"
)

var garbage [][]byte

func BenchmarkGCProbe(b *testing.B) {
	key := rsaKey(b)
	raw, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(key)
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}))
	keyfunc := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
	verify := func(int) error {
		_, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc)
		return err
	}
	garbage = make([][]byte, 64)
	i := 0
	alloc := func(w int) error {
		for range 8 {
			garbage[i%64] = make([]byte, 4<<10)
			i++
		}
		return verify(w)
	}
	b.Run("alloc32k", func(b *testing.B) { paired.Run(b, paired.Pair{Floor: verify, Impl: alloc}) })
}
