package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

func ExampleLocalize() {
	h := middleware.Localize(i18n.Default())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		middleware.WriteError(w, r, i18n.CodeUserNotFound)
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

// sessions is a TokenVerifier over opaque session tokens: any scheme that
// can say which user a token signed in fits RequireBearer.
type sessions map[string]string // token -> user id

func (s sessions) VerifyToken(_ context.Context, token, _ string) (middleware.Identity, error) {
	if user, ok := s[token]; ok {
		return middleware.Identity{Subject: user}, nil
	}
	return middleware.Identity{}, i18n.CodeTokenInvalid
}

func ExampleRequireBearer() {
	v := sessions{"s3cr3t": "u-1001"} // an *idtoken.Verifier for OpenID Connect id_tokens
	h := middleware.RequireBearer(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := middleware.IdentityFromContext(r.Context())
		fmt.Println("user", id.Subject)
	}))
	for _, auth := range []string{"Bearer s3cr3t", "Bearer guess", ""} {
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

// An application that signs its users in itself hands the user to the
// handlers with WithIdentity, instead of RequireBearer.
func ExampleWithIdentity() {
	appAuth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Your session check; here every request is user u-1001's.
			ctx := middleware.WithIdentity(r.Context(), middleware.Identity{Subject: "u-1001", AuthTime: time.Now()})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	h := appAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := middleware.IdentityFromContext(r.Context())
		fmt.Println(id.Subject, ok)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	// Output:
	// u-1001 true
}

func ExampleAllowMethods() {
	h := middleware.AllowMethods(http.MethodPost)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Print(w.Code, " ", w.Header().Get("Allow"), " ", w.Body)
	// Output:
	// 405 POST {"error_code":"IDAAS.SDK.REQ.9101","error_msg":"Method not allowed, use POST"}
}

func ExampleChain() {
	h := middleware.Chain(middleware.ChainOptions{
		Methods:  []string{http.MethodPost},
		Clients:  memstore.NewClientRegistry(store.Client{ID: "app-1"}),
		Verifier: sessions{"s3cr3t": "u-1001"},
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := middleware.IdentityFromContext(r.Context())
		d, _ := middleware.DeviceFromContext(r.Context())
		fmt.Println(id.Subject, "on", d.OSVersion)
	}))
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("X-L", "zh")
	r.Header.Set("X-client-id", "app-1")
	r.Header.Set("Authorization", "Bearer s3cr3t")
	r.Header.Set("X-operating-sys-version", "windows10.1.1")
	r.Header.Set("X-device-fingerprint", "fp-0123")
	r.Header.Set("X-agent", "app/2.3")
	h.ServeHTTP(httptest.NewRecorder(), r)

	r.Header.Del("X-agent")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body)
	// Output:
	// u-1001 on windows10.1.1
	// 400 {"error_code":"IDAAS.SDK.PARAM.0001","error_msg":"设备信息不完整"}
}

func ExampleWriteError() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Causes stay in logs; the client sees the code and its message.
		middleware.WriteError(w, r, i18n.Wrap(i18n.CodeEmailExists, errors.New("users_email_key violated")))
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
	fmt.Print(w.Code, " ", w.Body)
	// Output:
	// 400 {"error_code":"IDAAS.SDK.USER.0036","error_msg":"E-mail already exists"}
}
