package idtoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// TestVerificationKey holds verificationKey, which the JWKS path calls once
// it has found a token's key, to keyfunc's own answer for the same key and
// token: the same key, or an error with the same text and sentinel.
func TestVerificationKey(t *testing.T) {
	t.Parallel()
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	storage := jwkset.NewMemoryStorage()
	var kids []string
	for _, k := range []struct {
		key crypto.PublicKey
		alg jwkset.ALG
	}{{&rs.PublicKey, jwkset.AlgRS256}, {&rs.PublicKey, ""}, {&es.PublicKey, jwkset.AlgES256}, {ed.Public(), jwkset.AlgEdDSA}} {
		for _, use := range []jwkset.USE{jwkset.UseSig, jwkset.UseEnc, ""} {
			kid := fmt.Sprintf("%s-%s-%d", k.alg, use, len(kids))
			jwk, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{
				Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: k.alg, USE: use},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := storage.KeyWrite(context.Background(), jwk); err != nil {
				t.Fatal(err)
			}
			kids = append(kids, kid)
		}
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: storage, UseWhitelist: keyUses})
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range kids {
		for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
			t.Run(kid+"/"+alg, func(t *testing.T) {
				tok := &jwt.Token{Header: map[string]any{"alg": alg, "kid": kid}}
				jwk, err := storage.KeyRead(context.Background(), kid)
				if err != nil {
					t.Fatal(err)
				}
				got, gotErr := verificationKey(jwk, tok)
				want, wantErr := kf.Keyfunc(tok)
				switch {
				case (gotErr == nil) != (wantErr == nil):
					t.Fatalf("verificationKey: %v, %v; keyfunc: %v, %v", got, gotErr, want, wantErr)
				case gotErr != nil && gotErr.Error() != wantErr.Error():
					t.Fatalf("verificationKey error %q, keyfunc's %q", gotErr, wantErr)
				case gotErr != nil && !errors.Is(gotErr, keyfunc.ErrKeyfunc):
					t.Fatalf("verificationKey error %v does not wrap keyfunc.ErrKeyfunc", gotErr)
				case gotErr == nil && !samePublicKey(got, want):
					t.Fatalf("verificationKey key %T, keyfunc's %T", got, want)
				}
			})
		}
	}
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b any) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
