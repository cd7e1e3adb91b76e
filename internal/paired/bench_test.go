package paired_test

import (
	"crypto/rand"
	"crypto/rsa"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/internal/paired"
)

// BenchmarkFloorVsFloor validates the harness on this machine with the floor of
// BENCHMARKS.md, golang-jwt parsing and verifying an RS256 token:
//
//	impl=same      the floor against itself: x-wall and x-cpu must be 1, and
//	               their ± column is the noise the method leaves
//	impl=plus5pct  every 20th operation verifies the token twice: exactly 5 %
//	               more of the same work, so the ratios must be 1.05
//
// each with one worker and with one per core. Run it with
//
//	go test -run '^$' -bench FloorVsFloor -benchtime 100x -count 10 ./internal/paired | tee paired.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' paired.txt
func BenchmarkFloorVsFloor(b *testing.B) {
	key := rsaKey(b)
	raw, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    "https://issuer.example",
		Subject:   "user-1",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}))
	keyfunc := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
	verify := func(int) error {
		_, err := parser.ParseWithClaims(raw, &jwt.RegisteredClaims{}, keyfunc)
		return err
	}

	workers := []int{1}
	if n := runtime.GOMAXPROCS(0); n > 1 {
		workers = append(workers, n)
	}
	for _, w := range workers {
		b.Run("workers="+strconv.Itoa(w)+"/impl=same", func(b *testing.B) {
			paired.Run(b, paired.Pair{Floor: verify, Impl: verify, Workers: w})
		})
		b.Run("workers="+strconv.Itoa(w)+"/impl=plus5pct", func(b *testing.B) {
			calls := make([]counter, w)
			plus5pct := func(w int) error {
				calls[w].n++
				if calls[w].n%20 == 0 {
					if err := verify(w); err != nil {
						return err
					}
				}
				return verify(w)
			}
			paired.Run(b, paired.Pair{Floor: verify, Impl: plus5pct, Workers: w})
		})
	}
}

// counter is a per-worker count on a cache line of its own, so that the
// workers of plus5pct do not share one.
type counter struct {
	n int
	_ [56]byte
}

var rsaKeyOnce = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// rsaKey is one 2048-bit key for every round: generating it takes longer
// than a round.
func rsaKey(b *testing.B) *rsa.PrivateKey {
	b.Helper()
	k, err := rsaKeyOnce()
	if err != nil {
		b.Fatal(err)
	}
	return k
}
