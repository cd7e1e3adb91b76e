package idtoken_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// Two applications whose users sign in through two issuers: each client's
// registration names its issuer and JWKS, and a token is accepted for the
// clients of its own issuer only. Give the Issuers to the Service as
// Config.Verifier.
func ExampleNewIssuers() {
	// Two OpenID providers, each publishing its key under the same kid
	// (in production their JWKS URLs are https).
	shopKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	partnerKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	shopJWKS, partnerJWKS := serveJWKS(shopKey), serveJWKS(partnerKey)
	defer shopJWKS.Close()
	defer partnerJWKS.Close()

	clients := memstore.NewClientRegistry(
		store.Client{ID: "shop-app", Issuer: "https://id.shop.example", JWKSURL: shopJWKS.URL},
		store.Client{ID: "partner-app", Issuer: "https://id.partner.example", JWKSURL: partnerJWKS.URL},
	)
	issuers, err := idtoken.NewIssuers(idtoken.IssuersOptions{
		Clients: clients,
		// Default: a *Verifier for the clients registered without an
		// issuer; without one, their tokens are refused.
		Options: idtoken.Options{RefusalLogLevel: slog.LevelDebug},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer issuers.Close()

	sign := func(key ed25519.PrivateKey, iss, sub, aud string) string {
		t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
			"iss": iss, "sub": sub, "aud": aud,
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		})
		t.Header["kid"] = "2031-01"
		raw, _ := t.SignedString(key)
		return raw
	}
	tries := []struct{ client, token string }{
		{"shop-app", sign(shopKey, "https://id.shop.example", "u-1001", "shop-app")},
		{"partner-app", sign(shopKey, "https://id.shop.example", "u-1001", "partner-app")},
		{"partner-app", sign(partnerKey, "https://id.partner.example", "u-2002", "partner-app")},
	}
	for _, try := range tries {
		id, err := issuers.VerifyToken(context.Background(), try.token, try.client)
		if err != nil {
			fmt.Println(try.client, "refused")
			continue
		}
		fmt.Println(try.client, "user", id.Subject)
	}
	// Output:
	// shop-app user https://id.shop.example#u-1001
	// partner-app refused
	// partner-app user https://id.partner.example#u-2002
}

// serveJWKS publishes key's public half under the kid "2031-01".
func serveJWKS(key ed25519.PrivateKey) *httptest.Server {
	jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: "2031-01", ALG: jwkset.AlgEdDSA, USE: jwkset.UseSig},
	})
	if err != nil {
		panic(err)
	}
	body, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		panic(err)
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
}
