package selfservice_test

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
)

func TestOpenAPICopy(t *testing.T) {
	t.Parallel()
	a := selfservice.OpenAPI()
	if !bytes.Contains(a, []byte("\nopenapi: 3.1.")) {
		t.Fatal("the document does not declare OpenAPI 3.1")
	}
	clear(a)
	if b := selfservice.OpenAPI(); bytes.Equal(a, b) {
		t.Fatal("OpenAPI returned the embedded bytes, not a copy")
	}
}

func TestOpenAPIHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(selfservice.OpenAPIHandler())
	t.Cleanup(srv.Close)
	doc := selfservice.OpenAPI()

	first := fetchDoc(t, srv.URL, http.MethodGet, nil)
	etag := first.Header.Get("ETag")
	if etag == "" || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag %q, want a strong validator", etag)
	}
	tests := []struct {
		name        string
		method      string
		header      http.Header
		status      int
		contentType string
		body        []byte
		allow       string
	}{
		{name: "GET", method: http.MethodGet, status: 200, contentType: "application/yaml", body: doc},
		{name: "GET asking for JSON still gets YAML", method: http.MethodGet, header: http.Header{"Accept": {"application/json"}},
			status: 200, contentType: "application/yaml", body: doc},
		{name: "HEAD", method: http.MethodHead, status: 200, contentType: "application/yaml", body: []byte{}},
		{name: "revalidation", method: http.MethodGet, header: http.Header{"If-None-Match": {etag}}, status: 304, body: []byte{}},
		{name: "stale copy", method: http.MethodGet, header: http.Header{"If-None-Match": {`"old"`}},
			status: 200, contentType: "application/yaml", body: doc},
		{name: "POST", method: http.MethodPost, status: 405, allow: "GET, HEAD"},
		{name: "DELETE", method: http.MethodDelete, status: 405, allow: "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := fetchDoc(t, srv.URL, tt.method, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.contentType != "" && resp.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tt.contentType)
			}
			if tt.body != nil && !bytes.Equal(resp.body, tt.body) {
				t.Errorf("body of %d bytes, want %d", len(resp.body), len(tt.body))
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if tt.status < 300 && (resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") != "no-cache") {
				t.Errorf("ETag %q, Cache-Control %q: want %q and no-cache", resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"), etag)
			}
		})
	}
}

type docResponse struct {
	*http.Response
	body []byte
}

func fetchDoc(t *testing.T, url, method string, h http.Header) docResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return docResponse{resp, body}
}

// TestOpenAPIAddsNoDependency: embedding the document costs importers no
// YAML or OpenAPI library; only the tests load it with kin-openapi.
func TestOpenAPIAddsNoDependency(t *testing.T) {
	t.Parallel()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the imports with")
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		if strings.Contains(dep, "kin-openapi") || strings.Contains(strings.ToLower(dep), "yaml") {
			t.Errorf("the root package imports %s", strings.TrimSpace(dep))
		}
	}
}

// TestOpenAPIDocumentsCatalog: every code of the catalog is documented with
// its status and its English and Chinese messages, and the document shows
// no code the catalog does not have.
func TestOpenAPIDocumentsCatalog(t *testing.T) {
	t.Parallel()
	examples, err := openapitest.ErrorExamples()
	if err != nil {
		t.Fatal(err)
	}
	bundle := i18n.Default()
	locales := map[string]*i18n.Locale{"en": bundle.Match("en", ""), "zh": bundle.Match("zh", "")}
	documented := map[string]bool{}
	for _, ex := range examples {
		where := fmt.Sprintf("%s %s %d example %s", ex.Method, ex.Path, ex.Status, ex.Name)
		c := i18n.Code(ex.Code)
		if !slices.Contains(i18n.Codes(), c) {
			t.Errorf("%s: %s is not in i18n.Codes", where, ex.Code)
			continue
		}
		documented[ex.Code] = true
		if ex.Status != c.Status() {
			t.Errorf("%s: the catalog answers %s with %d", where, ex.Code, c.Status())
		}
		loc, ok := locales[ex.Language]
		if !ok {
			t.Errorf("%s: language %q is neither en nor zh", where, ex.Language)
			continue
		}
		if want := loc.Message(i18n.Code(ex.Code)); ex.Message != want {
			t.Errorf("%s: message %q, the catalog says %q", where, ex.Message, want)
		}
	}
	for _, c := range i18n.Codes() {
		if !documented[string(c)] {
			t.Errorf("%s (%d) is in i18n.Codes but no operation documents it", c, c.Status())
		}
	}
}

// TestOpenAPIDescribesHandlers sends requests that produce every status
// the document lists, through the standard chain, and validates each
// exchange against the document.
func TestOpenAPIDescribesHandlers(t *testing.T) {
	t.Parallel()
	const userID = "openapi-user"
	wrong := `{"email":"new@example.com","verify_code":"000000"}`
	send := `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`
	tests := []struct {
		name   string
		config func(*selfservice.Config)
		setup  func(*fixture)
		method string
		path   string
		header func(http.Header)
		body   string
		repeat int // send the request this many times; the last answer is checked
		status int
		code   string
	}{
		{name: "send", path: selfservice.SendCodePath, body: send, status: 200},
		{name: "update to the own address", body: `{"email":"old@example.com","verify_code":"123456"}`, status: 200},
		{name: "device header missing", header: func(h http.Header) { h.Del("X-agent") }, body: wrong, status: 400, code: "IDAAS.SDK.PARAM.0001"},
		{name: "client id missing", path: selfservice.SendCodePath, header: func(h http.Header) { h.Del("X-client-id") }, body: send, status: 400, code: "IDAAS.SDK.PARAM.0002"},
		{name: "client unknown", header: func(h http.Header) { h.Set("X-client-id", "nobody") }, body: wrong, status: 400, code: "IDAAS.SDK.PARAM.0003"},
		{name: "token missing", header: func(h http.Header) { h.Del("Authorization") }, body: wrong, status: 400, code: "IDAAS.SDK.PARAM.0015"},
		{name: "token invalid", header: func(h http.Header) { h.Set("Authorization", "Bearer x.y.z") }, body: wrong, status: 400, code: "IDAAS.SDK.PARAM.0016"},
		{name: "X-L repeated", header: func(h http.Header) { h.Add("X-L", "zh") }, body: wrong, status: 400, code: "IDAAS.SDK.REQ.9105"},
		{name: "body malformed", body: `{"email":"new@example.com","verify_code":"000000","x":"y"}`, status: 400, code: "IDAAS.SDK.REQ.9104"},
		{name: "code empty", body: `{"email":"new@example.com","verify_code":""}`, status: 400, code: "IDAAS.SDK.PARAM.0009"},
		{name: "email invalid", path: selfservice.SendCodePath, body: `{"email":"not an address","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`, status: 400, code: "IDAAS.SDK.USER.0021"},
		{name: "type unsupported", path: selfservice.SendCodePath, body: `{"email":"new@example.com","type":"LOGIN_EMS","captcha_token":"ok"}`, status: 400, code: "IDAAS.SDK.PARAM.9203"},
		{name: "captcha refused", path: selfservice.SendCodePath, body: `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":" "}`, status: 400, code: "IDAAS.SDK.CAPTCHA.9202"},
		{name: "code incorrect", body: wrong, status: 400, code: "IDAAS.SDK.CAPTCHA.0007"},
		{name: "sign-in too old", config: func(c *selfservice.Config) { c.MaxAuthAge = time.Minute }, body: wrong, status: 401, code: "IDAAS.SDK.PARAM.9204"},
		{name: "wrong method", method: http.MethodGet, body: wrong, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "HEAD", method: http.MethodHead, path: selfservice.SendCodePath, status: 405},
		{name: "body too large", path: selfservice.SendCodePath, body: `{"email":"` + strings.Repeat("a", 5000) + `"}`, status: 413, code: "IDAAS.SDK.REQ.9103"},
		{name: "content type", header: func(h http.Header) { h.Set("Content-Type", "text/plain") }, body: wrong, status: 415, code: "IDAAS.SDK.REQ.9102"},
		{name: "sends too often", path: selfservice.SendCodePath, body: send, repeat: 2, status: 429, code: "IDAAS.SDK.CAPTCHA.9201"},
		{name: "wrong-code budget spent", config: func(c *selfservice.Config) {
			c.Budgets.WrongCodesPerUser = []store.Limit{{N: 1, Window: time.Hour}}
		}, body: wrong, repeat: 2, status: 429, code: "IDAAS.SDK.CAPTCHA.9205"},
		{name: "store down", setup: func(f *fixture) { f.fusers.fail(errors.New("down")) }, body: wrong, status: 500, code: "IDAAS.SDK.SYS.9001"},
		{name: "mail failed", setup: func(f *fixture) { f.mail.fail(errors.New("smtp down")) }, path: selfservice.SendCodePath, body: send, status: 500, code: "IDAAS.SDK.CAPTCHA.0006"},
	}
	for _, lang := range []string{"en", "zh"} {
		for _, tt := range tests {
			t.Run(lang+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				f := newFixtureWith(t, tt.config, mustUser(t, userID, "old@example.com"))
				if tt.setup != nil {
					tt.setup(f)
				}
				method, path := cmp.Or(tt.method, http.MethodPost), cmp.Or(tt.path, selfservice.UpdateEmailPath)
				h := baseHeaders(lang)
				if path == selfservice.UpdateEmailPath {
					h.Set("Authorization", "Bearer "+token(t, userID, nil))
				}
				if tt.header != nil {
					tt.header(h)
				}
				var status int
				var body []byte
				for range max(tt.repeat, 1) {
					status, body = checkedExchange(t, f.srv, method, path, h, tt.body)
				}
				if status != tt.status || (tt.code != "" && !bytes.Contains(body, []byte(`"`+tt.code+`"`))) {
					t.Errorf("answered %d %s, want %d %s", status, body, tt.status, tt.code)
				}
			})
		}
	}
}

// checkedExchange sends one request through testkit.Do, which checks the
// exchange against the document.
func checkedExchange(t *testing.T, srv *httptest.Server, method, path string, h http.Header, body string) (int, []byte) {
	t.Helper()
	r := testkit.Do(t, srv.Client(), method, srv.URL+path, h.Clone(), body)
	return r.Status, []byte(r.Raw)
}

func ExampleOpenAPI() {
	for line := range strings.Lines(string(selfservice.OpenAPI())) {
		if strings.HasPrefix(line, "openapi:") {
			fmt.Print(line)
		}
	}
	// Output:
	// openapi: 3.1.0
}

// OpenAPIHandler serves the document next to the API, for client
// generators and API browsers.
func ExampleOpenAPIHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.yaml", selfservice.OpenAPIHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/openapi.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	// Output:
	// 200 application/yaml
}
