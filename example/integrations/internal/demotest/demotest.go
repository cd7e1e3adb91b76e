// Package demotest is the suite every framework program runs against the
// handler it serves, in the spirit of testing/fstest.TestFS: Run drives the
// whole flow over HTTP, sends every endpoint the wrong methods, checks an
// answer in Chinese, and replays a table of faulty requests against both
// the program's handler and the package's own (Service.Handler) on the same
// Service, requiring the same status, body and headers.
package demotest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demo"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/selfservicetest"
	"github.com/ciamkit/selfservice/store"
)

// The user of every Server.
const (
	User      = "alice"
	UserEmail = "alice@example.com"
)

// Server is a program's handler on httptest over a Service of its own.
type Server struct {
	// URL is the handler's server.
	URL    string
	Issuer *selfservicetest.Issuer
	Mail   *selfservicetest.Mailer
	// Config is what Service was built from; Config.Users holds User.
	Config  selfservice.Config
	Service *selfservice.Service
}

// Start serves the handler build returns for a Service over
// selfservicetest.Config (in-memory stores holding User, an Issuer, a
// capturing Mailer), changed by configure when it is not nil. The server
// stops and the Service shuts down when t ends.
func Start(t *testing.T, build demo.Build, configure func(*selfservice.Config)) *Server {
	t.Helper()
	iss, mail := selfservicetest.NewIssuer(t), &selfservicetest.Mailer{}
	cfg := selfservicetest.Config(t, iss, mail, store.User{ID: User, Email: UserEmail})
	if configure != nil {
		configure(&cfg)
	}
	svc, err := selfservice.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(build(svc, cfg))
	t.Cleanup(func() {
		srv.Close()
		if err := svc.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &Server{URL: srv.URL, Issuer: iss, Mail: mail, Config: cfg, Service: svc}
}

// Client returns a client of s that sends X-L lang ("" for none).
func (s *Server) Client(lang string) *selfservicetest.Client {
	c := selfservicetest.NewClient(s.URL, s.Issuer.ClientID)
	c.Lang = lang
	return c
}

// Email returns the address User holds now.
func (s *Server) Email(t testing.TB) string {
	t.Helper()
	u, err := s.Config.Users.User(context.Background(), User)
	if err != nil {
		t.Fatal(err)
	}
	return u.Email
}

// Do sends a request to s and returns the answer, which must be what the
// OpenAPI document says (both of internal/openapitest's validators check
// it). A body that is JSON is also read into the Reply's Code and Message;
// any other is left in Body.
func (s *Server) Do(t testing.TB, method, path string, h http.Header, body string) *selfservicetest.Reply {
	t.Helper()
	return do(t, &http.Client{Transport: openapitest.Transport(t, nil)}, s.URL, method, path, h, body)
}

// DoFramework is Do for an answer the framework gives itself (its own 404
// or 405 to a method it does not route), which the document does not
// describe.
func (s *Server) DoFramework(t testing.TB, method, path string, h http.Header, body string) *selfservicetest.Reply {
	t.Helper()
	return do(t, http.DefaultClient, s.URL, method, path, h, body)
}

func do(t testing.TB, client *http.Client, base, method, path string, h http.Header, body string) *selfservicetest.Reply {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		req.Header = h.Clone()
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	r := &selfservicetest.Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(raw)}
	var e struct {
		Code string `json:"error_code"`
		Msg  string `json:"error_msg"`
	}
	if json.Unmarshal(raw, &e) == nil {
		r.Code, r.Message = e.Code, e.Msg
	}
	return r
}

// ExpectError fails t unless r is what the package answers code with in the
// language lang ("" for the default): the code's status, exactly the body
// {"error_code","error_msg"} of i18n.Default(), Content-Type
// application/json, Cache-Control no-store and Content-Language.
func ExpectError(t testing.TB, r *selfservicetest.Reply, code i18n.Code, lang string) {
	t.Helper()
	loc := i18n.Default().Match(lang, "")
	want := string(loc.ErrorBody(code))
	if r.Status != code.Status() || r.Body != want {
		t.Fatalf("got %d %q, want %d %q", r.Status, r.Body, code.Status(), want)
	}
	expectHeaders(t, r, loc)
}

// ExpectOK fails t unless r is the package's success: 200, no body,
// Content-Type application/json, Cache-Control no-store.
func ExpectOK(t testing.TB, r *selfservicetest.Reply) {
	t.Helper()
	if r.Status != http.StatusOK || r.Body != "" {
		t.Fatalf("got %d %q, want 200 and no body", r.Status, r.Body)
	}
	expectHeaders(t, r, nil)
}

func expectHeaders(t testing.TB, r *selfservicetest.Reply, loc *i18n.Locale) {
	t.Helper()
	want := map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"}
	if loc != nil {
		want["Content-Language"] = loc.ContentLanguage()[0]
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// Run runs the suite against the handler build returns. known names the
// parity cases in which the handler is known to answer otherwise than the
// package's own, with the reason; they are skipped with it.
func Run(t *testing.T, build demo.Build, known map[string]string) {
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		testFlow(t, build)
	})
	t.Run("wrong method", func(t *testing.T) {
		t.Parallel()
		testWrongMethod(t, build)
	})
	t.Run("Chinese", func(t *testing.T) {
		t.Parallel()
		testChinese(t, build)
	})
	t.Run("parity", func(t *testing.T) {
		t.Parallel()
		testParity(t, build, known)
	})
}

// testFlow: a code is mailed, the email changed with it, and the user store
// holds the new address.
func testFlow(t *testing.T, build demo.Build) {
	s := Start(t, build, nil)
	c := s.Client("en")
	const newEmail = "alice.new@example.com"
	ExpectOK(t, c.SendCode(t, newEmail))
	code := s.Mail.Code(t, newEmail)
	ExpectOK(t, c.UpdateEmail(t, s.Issuer.Token(t, User), newEmail, code))
	if got := s.Email(t); got != newEmail {
		t.Errorf("the user store holds %q, want %q", got, newEmail)
	}
}

// testWrongMethod: every method but POST, at both paths, is answered by the
// package's guard: 405 IDAAS.SDK.REQ.9101 with Allow: POST, before any other
// check (the requests carry no header at all, so a device or client check
// that ran first would answer PARAM.0001 or PARAM.0002).
func testWrongMethod(t *testing.T, build demo.Build) {
	s := Start(t, build, nil)
	for _, path := range []string{selfservice.SendCodePath, selfservice.UpdateEmailPath} {
		for _, tt := range []struct{ method, lang string }{
			{http.MethodGet, ""}, {http.MethodGet, "zh"}, {http.MethodPut, ""}, {http.MethodDelete, "zh"},
			{http.MethodPatch, ""}, {http.MethodOptions, ""}, {http.MethodHead, ""},
		} {
			t.Run(tt.method+" "+path+" "+tt.lang, func(t *testing.T) {
				t.Parallel()
				h := http.Header{}
				if tt.lang != "" {
					h.Set("X-L", tt.lang)
				}
				r := s.Do(t, tt.method, path, h, "")
				if got := r.Header.Values("Allow"); len(got) != 1 || got[0] != http.MethodPost {
					t.Errorf("Allow: %q, want POST", got)
				}
				if tt.method == http.MethodHead {
					if r.Status != http.StatusMethodNotAllowed || r.Body != "" {
						t.Errorf("got %d %q, want 405 and no body", r.Status, r.Body)
					}
					return
				}
				ExpectError(t, r, i18n.CodeMethodNotAllowed, tt.lang)
			})
		}
	}
}

// testChinese: a wrong code, asked in Chinese, is answered in Chinese, and
// the email stays.
func testChinese(t *testing.T, build demo.Build) {
	s := Start(t, build, nil)
	c := s.Client("zh")
	const newEmail = "alice.new@example.com"
	ExpectOK(t, c.SendCode(t, newEmail))
	wrong := "000000"
	if s.Mail.Code(t, newEmail) == wrong {
		wrong = "111111"
	}
	r := c.UpdateEmail(t, s.Issuer.Token(t, User), newEmail, wrong)
	ExpectError(t, r, i18n.CodeVerifyCodeIncorrect, "zh")
	if r.Message != "验证码不正确" {
		t.Errorf("error_msg %q, want 验证码不正确", r.Message)
	}
	if got := s.Email(t); got != UserEmail {
		t.Errorf("the user store holds %q, want %q", got, UserEmail)
	}
}

// testParity replays faulty requests (and one that succeeds without
// changing anything) against the program's handler and the package's own
// on one Service.
func testParity(t *testing.T, build demo.Build, known map[string]string) {
	s := Start(t, build, nil)
	ref := httptest.NewServer(s.Service.Handler())
	t.Cleanup(ref.Close)

	token := "Bearer " + s.Issuer.Token(t, User)
	headers := func(lang string, change func(http.Header)) http.Header {
		h := selfservicetest.Headers(s.Issuer.ClientID, lang)
		if change != nil {
			change(h)
		}
		return h
	}
	signedIn := func(lang string, change func(http.Header)) http.Header {
		return headers(lang, func(h http.Header) {
			h.Set("Authorization", token)
			if change != nil {
				change(h)
			}
		})
	}
	del := func(keys ...string) func(http.Header) {
		return func(h http.Header) {
			for _, k := range keys {
				h.Del(k)
			}
		}
	}
	set := func(k string, vs ...string) func(http.Header) {
		return func(h http.Header) { h[http.CanonicalHeaderKey(k)] = vs }
	}
	const (
		send     = selfservice.SendCodePath
		update   = selfservice.UpdateEmailPath
		sendBody = `{"email":"alice.new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`
		// wrongUpdate fails on the code's form after every other check,
		// so that no budget or code is touched.
		wrongUpdate = `{"email":"alice.new@example.com","verify_code":"x"}`
	)
	device := []string{"X-Operating-Sys-Version", "X-Device-Fingerprint", "X-Agent"}
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
	}{
		{"GET without headers", http.MethodGet, send, nil, ""},
		{"DELETE in Chinese", http.MethodDelete, update, http.Header{"X-L": {"zh"}}, ""},
		{"no device headers", http.MethodPost, send, headers("", del(device...)), sendBody},
		{"no device headers and a malformed body", http.MethodPost, send, headers("", del(device...)), `{`},
		{"X-device-ip not an address", http.MethodPost, send, headers("", set("X-Device-Ip", "300.1.1.1")), sendBody},
		{"X-device-ip blank", http.MethodPost, send, headers("", set("X-Device-Ip", " ")), sendBody},
		{"X-agent repeated", http.MethodPost, send, headers("", set("X-Agent", "a", "b")), sendBody},
		{"X-L repeated", http.MethodPost, send, headers("", set("X-L", "zh", "en")), sendBody},
		{"X-client-id repeated", http.MethodPost, send, headers("zh", set("X-Client-Id", "a", "b")), sendBody},
		{"X-client-id blank, in Chinese", http.MethodPost, send, headers("zh", set("X-Client-Id", " ")), sendBody},
		{"unknown client", http.MethodPost, update, signedIn("", set("X-Client-Id", "nope")), wrongUpdate},
		{"unknown client and a malformed body", http.MethodPost, send, headers("", set("X-Client-Id", "nope")), `{`},
		{"no token", http.MethodPost, update, headers("", nil), wrongUpdate},
		{"Basic authorization", http.MethodPost, update, headers("", set("Authorization", "Basic dXNlcjpwYXNz")), wrongUpdate},
		{"invalid token, in Chinese", http.MethodPost, update, headers("zh", set("Authorization", "Bearer not-a-jwt")), wrongUpdate},
		{"Authorization repeated", http.MethodPost, update, signedIn("", set("Authorization", token, token)), wrongUpdate},
		{"invalid token and text/plain", http.MethodPost, update, headers("", func(h http.Header) {
			h.Set("Authorization", "Bearer not-a-jwt")
			h.Set("Content-Type", "text/plain")
		}), wrongUpdate},
		{"text/plain", http.MethodPost, send, headers("", set("Content-Type", "text/plain")), sendBody},
		{"no Content-Type", http.MethodPost, send, headers("", del("Content-Type")), sendBody},
		{"a parameter other than charset", http.MethodPost, send, headers("", set("Content-Type", "application/json; boundary=x")), sendBody},
		{"malformed JSON", http.MethodPost, send, headers("", nil), `{"email":`},
		{"an unknown member", http.MethodPost, send, headers("", nil), `{"email":"a@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t","x":"1"}`},
		{"an array", http.MethodPost, send, headers("", nil), `[]`},
		{"no body", http.MethodPost, send, headers("", nil), ``},
		{"a $schema member", http.MethodPost, send, headers("", nil), `{"$schema":"x","email":"a@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`},
		{"an error asked for in HTML", http.MethodPost, send, headers("", set("Accept", "text/html")), `{"email":"a@example.com","type":"LOGIN_EMS","captcha_token":"t"}`},
		{"a number where a string goes", http.MethodPost, update, signedIn("", nil), `{"email":"a@example.com","verify_code":123456}`},
		{"body over 4 KiB", http.MethodPost, send, headers("", nil), `{"email":"` + strings.Repeat("a", 5000) + `@example.com"}`},
		{"type unsupported", http.MethodPost, send, headers("", nil), `{"email":"a@example.com","type":"LOGIN_EMS","captcha_token":"t"}`},
		{"email invalid, in Chinese", http.MethodPost, send, headers("zh", nil), `{"email":"not an address","type":"UPDATE_EMAIL_EMS","captcha_token":"t"}`},
		{"captcha_token empty", http.MethodPost, send, headers("", nil), `{"email":"a@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":""}`},
		{"captcha_token absent", http.MethodPost, send, headers("", nil), `{"email":"a@example.com","type":"UPDATE_EMAIL_EMS"}`},
		{"verify_code empty", http.MethodPost, update, signedIn("", nil), `{"email":"a@example.com","verify_code":""}`},
		{"verify_code absent", http.MethodPost, update, signedIn("", nil), `{"email":"a@example.com"}`},
		{"email null", http.MethodPost, update, signedIn("", nil), `{"email":null,"verify_code":"123456"}`},
		{"a repeated member", http.MethodPost, update, signedIn("", nil), `{"email":"a@example.com","email":"b@example.com","verify_code":""}`},
		{"the user's own address: done at once", http.MethodPost, update, signedIn("", nil), `{"email":"ALICE@example.com","verify_code":"x"}`},
	}
	compared := []string{"Content-Type", "Cache-Control", "Content-Language", "Allow", "Retry-After", "WWW-Authenticate"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if why, ok := known[tt.name]; ok {
				t.Skip("known difference: " + why)
			}
			want := do(t, &http.Client{Transport: openapitest.Transport(t, nil)}, ref.URL, tt.method, tt.path, tt.header, tt.body)
			got := s.Do(t, tt.method, tt.path, tt.header, tt.body)
			if got.Status != want.Status || got.Body != want.Body {
				t.Errorf("got %d %q, the package answers %d %q", got.Status, got.Body, want.Status, want.Body)
			}
			for _, k := range compared {
				if g, w := got.Header.Values(k), want.Header.Values(k); strings.Join(g, "\n") != strings.Join(w, "\n") {
					t.Errorf("%s: %q, the package answers %q", k, g, w)
				}
			}
		})
	}
	for name := range known {
		found := false
		for _, tt := range tests {
			found = found || tt.name == name
		}
		if !found {
			t.Errorf("known difference %q names no case", name)
		}
	}
}
