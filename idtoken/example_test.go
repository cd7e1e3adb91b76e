package idtoken_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/middleware"
)

func ExampleNew() {
	_, err := idtoken.New(idtoken.Options{
		JWKSURL: "https://id.example.com/api/v1/oauth2/keys", // no Issuer
	})
	fmt.Println(errors.Is(err, selfservice.ErrConfig))
	// Output:
	// true
}

func ExampleVerifier_VerifyToken() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v, err := idtoken.New(idtoken.Options{
		Issuer:          "https://id.example.com",
		Keyfunc:         func(*jwt.Token) (any, error) { return key.Public(), nil },
		RefusalLogLevel: slog.LevelDebug,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer v.Close()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "https://id.example.com", "sub": "u-1001", "aud": "another-app",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "2031-01"
	token, _ := tok.SignedString(key)

	_, err = v.VerifyToken(context.Background(), token, "app-1")
	fmt.Println(errors.Is(err, i18n.CodeTokenInvalid), errors.Is(err, idtoken.ErrTokenAudience))
	// Output:
	// true true
}

// A Verifier is the TokenVerifier of middleware.RequireBearer.
func ExampleVerifier_requireBearer() {
	// In production: JWKSURL: "https://id.example.com/api/v1/oauth2/keys".
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	v, err := idtoken.New(idtoken.Options{
		Issuer:  "https://id.example.com",
		Keyfunc: func(*jwt.Token) (any, error) { return key.Public(), nil },
		Now:     func() time.Time { return now },
		// Refused tokens are logged at Info by default; here at Debug,
		// which slog.Default() leaves out.
		RefusalLogLevel: slog.LevelDebug,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer v.Close()

	h := middleware.RequireBearer(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := middleware.IdentityFromContext(r.Context())
		fmt.Println("user", id.Subject, "token", id.Claims.(*idtoken.Claims).Issuer)
	}))
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "https://id.example.com", "sub": "u-1001", "aud": "app-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "2031-01"
	token, _ := tok.SignedString(key)

	for _, auth := range []string{"Bearer " + token, "Bearer " + token[:len(token)-2]} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("X-client-id", "app-1")
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			fmt.Print(w.Code, " ", w.Body)
		}
	}
	// Output:
	// user u-1001 token https://id.example.com
	// 400 {"error_code":"IDAAS.SDK.PARAM.0016","error_msg":"IdToken is invalid or expired"}
}
