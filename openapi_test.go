package selfservice_test

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/emailaddr"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
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
// YAML or OpenAPI library; only the tests load it, with kin-openapi and
// pb33f.
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
		if strings.Contains(dep, "kin-openapi") || strings.Contains(dep, "pb33f") || strings.Contains(strings.ToLower(dep), "yaml") {
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
		{name: "PUT", method: http.MethodPut, path: selfservice.RevertEmailPath, body: `{"revert_token":"x"}`, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "PATCH", method: http.MethodPatch, path: selfservice.SendCodePath, body: send, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "DELETE", method: http.MethodDelete, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "OPTIONS", method: http.MethodOptions, path: selfservice.RevertEmailPath, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "TRACE", method: http.MethodTrace, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "a method OpenAPI cannot name", method: "PURGE", path: selfservice.SendCodePath, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "wrong method, X-L repeated", method: http.MethodGet, header: func(h http.Header) { h.Add("X-L", "zh") }, status: 400, code: "IDAAS.SDK.REQ.9105"},
		{name: "HEAD, X-L repeated", method: http.MethodHead, path: selfservice.RevertEmailPath, header: func(h http.Header) { h.Add("X-L", "zh") }, status: 400},
		{name: "wrong method, no header at all", method: http.MethodGet, path: selfservice.RevertEmailPath,
			header: func(h http.Header) { clear(h) }, status: 405, code: "IDAAS.SDK.REQ.9101"},
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

// schemaOf returns the schema at path in the document: a component
// parameter ("parameters", name) or a member of a component schema
// ("schemas", schema, member).
func schemaOf(t testing.TB, path ...string) *openapi3.Schema {
	t.Helper()
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	var s *openapi3.Schema
	switch {
	case len(path) == 2 && path[0] == "parameters":
		if p := doc.Components.Parameters[path[1]]; p != nil && p.Value != nil && p.Value.Schema != nil {
			s = p.Value.Schema.Value
		}
	case len(path) == 3 && path[0] == "schemas":
		if c := doc.Components.Schemas[path[1]]; c != nil && c.Value != nil && c.Value.Properties[path[2]] != nil {
			s = c.Value.Properties[path[2]].Value
		}
	}
	if s == nil {
		t.Fatalf("no schema at %v", path)
	}
	return s
}

// TestOpenAPIBounds: the lengths the document states are the server's.
// The server counts bytes, JSON Schema characters: for the ASCII values
// these are (addresses aside) the counts are the same, and every accepted
// address has at most as many characters as bytes.
func TestOpenAPIBounds(t *testing.T) {
	t.Parallel()
	revertTokenLen := base64.RawURLEncoding.EncodedLen(32) // revert.go: 32 random bytes
	tests := []struct {
		path     []string
		min, max int // min 0: not checked
	}{
		{[]string{"parameters", "XOperatingSysVersion"}, 1, middleware.MaxOSVersionLen},
		{[]string{"parameters", "XDeviceFingerprint"}, 1, middleware.MaxFingerprintLen},
		{[]string{"parameters", "XAgent"}, 1, middleware.MaxAgentLen},
		{[]string{"parameters", "XClientID"}, 1, middleware.MaxClientIDLen},
		{[]string{"parameters", "XDeviceIP"}, 0, 64}, // middleware/device.go: maxIPLen
		{[]string{"schemas", "SendCodeRequest", "email"}, 1, emailaddr.MaxLen},
		{[]string{"schemas", "SendCodeRequest", "type"}, 0, len(selfservice.PurposeUpdateEmail)},
		{[]string{"schemas", "SendCodeRequest", "captcha_token"}, 1, 4096}, // Config.MaxBodyBytes' default
		{[]string{"schemas", "UpdateEmailRequest", "email"}, 1, emailaddr.MaxLen},
		{[]string{"schemas", "UpdateEmailRequest", "verify_code"}, 1, 4096}, // not CodeLen: the own address succeeds without a look at the code
		{[]string{"schemas", "RevertEmailRequest", "revert_token"}, revertTokenLen, revertTokenLen},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.path[1:], "."), func(t *testing.T) {
			t.Parallel()
			s := schemaOf(t, tt.path...)
			if s.MaxLength == nil || *s.MaxLength != uint64(tt.max) {
				t.Errorf("maxLength %v, want %d", s.MaxLength, tt.max)
			}
			if tt.min != 0 && s.MinLength != uint64(tt.min) {
				t.Errorf("minLength %d, want %d", s.MinLength, tt.min)
			}
		})
	}
}

// TestOpenAPIStringsBounded: every string a request carries, header or
// body member, has a maxLength, but X-L, which the server does not bound
// (an unknown value falls back to Accept-Language). No string has a
// format: the one the document needs, "IPv4 or IPv6", is not standard,
// and a pattern says it instead.
func TestOpenAPIStringsBounded(t *testing.T) {
	t.Parallel()
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range doc.Components.Parameters {
		s := p.Value.Schema.Value
		if s.Format != "" {
			t.Errorf("parameter %s: format %q", name, s.Format)
		}
		if s.MaxLength == nil && name != "XL" {
			t.Errorf("parameter %s: no maxLength", name)
		}
	}
	for name, c := range doc.Components.Schemas {
		for member, m := range c.Value.Properties {
			if m.Value.Format != "" {
				t.Errorf("%s.%s: format %q", name, member, m.Value.Format)
			}
			if strings.HasSuffix(name, "Request") && m.Value.MaxLength == nil {
				t.Errorf("%s.%s: no maxLength", name, member)
			}
		}
	}
}

// deviceIPPattern is the pattern of X-device-ip with its maxLength.
func deviceIPPattern(t testing.TB) (*regexp.Regexp, int) {
	t.Helper()
	s := schemaOf(t, "parameters", "XDeviceIP")
	rx, err := regexp.Compile(s.Pattern)
	if err != nil || s.MaxLength == nil {
		t.Fatalf("X-device-ip: pattern %v, maxLength %v", err, s.MaxLength)
	}
	return rx, int(*s.MaxLength)
}

// checkDeviceIP compares what the document and the server say of v as
// X-device-ip. The server reads it with middleware.ParseDevice (trimmed,
// at most 64 bytes, no control character, net/netip); the document with
// its pattern and maxLength (characters). Values with surrounding white
// space, which the server trims and HTTP strips, and invalid UTF-8, which
// JSON Schema has no string for, are left out. The two may differ only
// where a zone of non-ASCII characters is within 64 characters but not
// 64 bytes: the description gives the byte limit.
func checkDeviceIP(t *testing.T, rx *regexp.Regexp, maxLen int, v string) {
	t.Helper()
	if v != strings.TrimSpace(v) || !utf8.ValidString(v) {
		return
	}
	h := testkit.Headers("")
	h.Set("X-device-ip", v)
	_, err := middleware.ParseDevice(h)
	server := err == nil
	document := rx.MatchString(v) && utf8.RuneCountInString(v) <= maxLen
	if server != document && !(document && len(v) > maxLen) {
		t.Errorf("X-device-ip %q: the server accepts it: %v, the document: %v", v, server, document)
	}
}

// TestOpenAPIDeviceIPPattern: the pattern of X-device-ip accepts what
// the server does.
func TestOpenAPIDeviceIPPattern(t *testing.T) {
	t.Parallel()
	rx, maxLen := deviceIPPattern(t)
	for _, v := range deviceIPSeeds {
		checkDeviceIP(t, rx, maxLen, v)
	}
}

var deviceIPSeeds = []string{
	"", "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.4%eth0",
	"::", "::1", "1::", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8",
	"1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", ":::", "1:::2", "1::2::3", "12345::", "ABCD:ef01::", "2001:db8::1",
	"::ffff:1.2.3.4", "::ffff:01.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6::1.2.3.4",
	"1:2:3:4:5:1.2.3.4", "1::1.2.3", "fe80::1%eth0", "fe80::1%", "%eth0", "::1%a%b", "::1%\x7f", "::1% x", "::1%é",
	"fe80::1%" + strings.Repeat("z", 56), "fe80::1%" + strings.Repeat("z", 57), "fe80::1%" + strings.Repeat("é", 56),
}

func FuzzOpenAPIDeviceIPPattern(f *testing.F) {
	for _, v := range deviceIPSeeds {
		f.Add(v)
	}
	rx, maxLen := deviceIPPattern(f)
	f.Fuzz(func(t *testing.T, v string) { checkDeviceIP(t, rx, maxLen, v) })
}

// revertTokenSchema is the schema of revert_token with its pattern.
func revertTokenSchema(t testing.TB) (*openapi3.Schema, *regexp.Regexp) {
	t.Helper()
	s := schemaOf(t, "schemas", "RevertEmailRequest", "revert_token")
	rx, err := regexp.Compile(s.Pattern)
	if err != nil || s.MaxLength == nil {
		t.Fatalf("revert_token: pattern %v, maxLength %v", err, s.MaxLength)
	}
	return s, rx
}

// checkRevertToken compares the document's revert_token with what the
// server takes for a token: 43 characters of base64url without padding
// that decode strictly to 32 bytes.
func checkRevertToken(t *testing.T, s *openapi3.Schema, rx *regexp.Regexp, v string) {
	t.Helper()
	server := selfservice.WellFormedRevertToken(v)
	n := uint64(utf8.RuneCountInString(v))
	document := rx.MatchString(v) && n >= s.MinLength && n <= *s.MaxLength
	if server != document {
		t.Errorf("revert_token %q: the server takes it for a token: %v, the document: %v", v, server, document)
	}
}

// TestOpenAPIRevertTokenPattern: revert_token's pattern is exactly the
// server's form of a token, down to the two zero bits of its last
// character.
func TestOpenAPIRevertTokenPattern(t *testing.T) {
	t.Parallel()
	s, rx := revertTokenSchema(t)
	for _, v := range revertTokenSeeds {
		checkRevertToken(t, s, rx, v)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, c := range alphabet + "+/=." {
		checkRevertToken(t, s, rx, revertTokenSeeds[1][:42]+string(c))
		checkRevertToken(t, s, rx, string(c)+revertTokenSeeds[1][1:])
	}
}

var revertTokenSeeds = []string{
	"", "3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA", "3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpB",
	"3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA=", "3q2+7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA", "3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNp",
	// The decoder skips line breaks: 43 characters, fewer than 32 bytes.
	"3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYo\n\r\n",
}

func FuzzOpenAPIRevertTokenPattern(f *testing.F) {
	for _, v := range revertTokenSeeds {
		f.Add(v)
	}
	s, rx := revertTokenSchema(f)
	f.Fuzz(func(t *testing.T, v string) { checkRevertToken(t, s, rx, v) })
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
