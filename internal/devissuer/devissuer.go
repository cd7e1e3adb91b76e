// Package devissuer is an OpenID issuer for development and tests: one
// RS256 key made at start-up, published as a JWKS, that signs id_tokens. The
// example server, its load generator and package selfservicetest serve it.
package devissuer

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

// Issuer is the key, its key id and its JWKS. The zero value is not ready;
// use New.
type Issuer struct {
	url  string
	kid  string
	key  *rsa.PrivateKey
	jwks []byte
}

// New makes a key for the issuer url (the iss of its tokens).
func New(url string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	iss := &Issuer{url: url, kid: hex.EncodeToString(id[:]), key: key}
	b64 := base64.RawURLEncoding.EncodeToString
	iss.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": iss.kid,
		"n": b64(key.N.Bytes()),
		"e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	return iss, err
}

// URL returns the issuer.
func (iss *Issuer) URL() string { return iss.url }

// ServeHTTP serves the JWKS.
func (iss *Issuer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(iss.jwks)
}

// Sign signs claims with the key, naming it in the header's kid.
func (iss *Issuer) Sign(claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = iss.kid
	return t.SignedString(iss.key)
}

// IDToken returns an id_token for subject, issued to clientID now and
// valid for ttl.
func (iss *Issuer) IDToken(subject, clientID string, ttl time.Duration) (string, error) {
	now := time.Now()
	return iss.Sign(jwt.RegisteredClaims{
		Issuer:    iss.url,
		Subject:   subject,
		Audience:  jwt.ClaimStrings{clientID},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
}
