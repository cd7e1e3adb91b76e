package middleware_test

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

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

func ExampleLocalize() {
	h := middleware.Localize(i18n.Default())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		middleware.WriteError(w, r, i18n.ErrUserNotFound)
	}))

	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("X-L", "zh_CN")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("Content-Language"))
	fmt.Print(w.Body)
	// Output:
	// 400 zh
	// {"error_code":"IDAAS.SDK.USER.0001","error_msg":"用户未找到"}
}

func ExampleDeviceHeaders() {
	h := middleware.DeviceHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := middleware.DeviceFromContext(r.Context())
		fmt.Printf("%s on %s from %v\n", d.Agent, d.OSVersion, d.IP)
	}))

	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("X-operating-sys-version", "windows10.1.1")
	r.Header.Set("X-device-fingerprint", "fp-0123")
	r.Header.Set("X-agent", "app/2.3")
	r.Header.Set("X-device-ip", "2001:db8::7")
	h.ServeHTTP(httptest.NewRecorder(), r)

	r.Header.Del("X-agent")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body)
	// Output:
	// app/2.3 on windows10.1.1 from 2001:db8::7
	// 400 {"error_code":"IDAAS.SDK.PARAM.0001","error_msg":"Device information is incomplete"}
}

func ExampleRequireClientID() {
	clients := memstore.NewClientRegistry(store.Client{ID: "app-1", Name: "Shop"})
	h := middleware.RequireClientID(clients, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := middleware.ClientFromContext(r.Context())
		fmt.Println("hello,", c.Name)
	}))

	for _, id := range []string{"app-1", "app-2", ""} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("X-client-id", id)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			fmt.Print(w.Code, " ", w.Body)
		}
	}
	// Output:
	// hello, Shop
	// 400 {"error_code":"IDAAS.SDK.PARAM.0003","error_msg":"The app is not registered, please register the app first"}
	// 400 {"error_code":"IDAAS.SDK.PARAM.0002","error_msg":"clientId cannot be empty"}
}

func ExampleRequireBearer() {
	// In production: JWKSURL: "https://id.example.com/api/v1/oauth2/keys".
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	v, err := middleware.NewVerifier(middleware.VerifierOptions{
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
		fmt.Println("user", middleware.ClaimsFromContext(r.Context()).Subject)
	}))
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "https://id.example.com", "sub": "u-1001", "aud": "app-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "2031-01"
	token, _ := tok.SignedString(key)

	for _, auth := range []string{"Bearer " + token, "Bearer " + token[:len(token)-2], ""} {
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
	// user u-1001
	// 400 {"error_code":"IDAAS.SDK.PARAM.0016","error_msg":"IdToken is invalid or expired"}
	// 400 {"error_code":"IDAAS.SDK.PARAM.0015","error_msg":"IdToken cannot be empty"}
}

func ExampleNewVerifier() {
	_, err := middleware.NewVerifier(middleware.VerifierOptions{
		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
	})
	fmt.Println(errors.Is(err, middleware.ErrConfig))
	// Output:
	// true
}

func ExampleVerifier_Verify() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v, err := middleware.NewVerifier(middleware.VerifierOptions{
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

	_, err = v.Verify(context.Background(), token, "app-1")
	fmt.Println(errors.Is(err, i18n.ErrTokenInvalid), errors.Is(err, middleware.ErrTokenAudience))
	// Output:
	// true true
}

func ExampleWriteError() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Causes stay in logs; the client sees the code and its message.
		middleware.WriteError(w, r, i18n.ErrEmailExists.WithCause(errors.New("users_email_key violated")))
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
	fmt.Print(w.Code, " ", w.Body)
	// Output:
	// 400 {"error_code":"IDAAS.SDK.USER.0036","error_msg":"E-mail already exists"}
}
