package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const jwksPath = "/api/v1/oauth2/keys"

// issuer is the built-in identity provider of the example: one RS256 key
// made at start-up, published as a JWKS, used to sign demo id_tokens.
type issuer struct {
	url  string
	kid  string
	key  *rsa.PrivateKey
	jwks []byte
}

func newIssuer(url string) (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	iss := &issuer{url: url, kid: hex.EncodeToString(id[:]), key: key}
	b64 := base64.RawURLEncoding.EncodeToString
	iss.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": iss.kid,
		"n": b64(key.N.Bytes()),
		"e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	return iss, err
}

func (iss *issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(iss.jwks)
}

// sign returns an id_token for subject, issued to clientID.
func (iss *issuer) sign(subject, clientID string, ttl time.Duration) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    iss.url,
		Subject:   subject,
		Audience:  jwt.ClaimStrings{clientID},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	t.Header["kid"] = iss.kid
	return t.SignedString(iss.key)
}
