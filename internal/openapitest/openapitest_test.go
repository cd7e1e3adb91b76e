package openapitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/openapitest"
)

const (
	sendPath   = selfservice.SendCodePath
	updatePath = selfservice.UpdateEmailPath
	sendBody   = `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`
	updateBody = `{"email":"new@example.com","verify_code":"123456"}`
)

// request is a request the document accepts, to path, with edit applied
// to its headers.
func request(t testing.TB, method, path string, edit func(http.Header)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://127.0.0.1:8080"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("X-operating-sys-version", "windows10.1.1")
	h.Set("X-device-fingerprint", "156aysdna213sc50")
	h.Set("X-device-ip", "192.168.1.2")
	h.Set("X-agent", "Mozilla/5.0")
	h.Set("X-L", "en")
	h.Set("X-client-id", "client-1")
	if path == updatePath {
		h.Set("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	}
	if edit != nil {
		edit(h)
	}
	return req
}

// answer is the headers the document asks for with status, in lang.
func answer(status int, lang string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Language", lang)
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer error="insufficient_user_authentication", max_age=300`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", "POST")
	case http.StatusTooManyRequests:
		h.Set("Retry-After", "42")
	}
	return h
}

func errorBody(code, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error_code": code, "error_msg": msg})
	return append(b, '\n')
}

func bodyOf(path string) string {
	if path == updatePath {
		return updateBody
	}
	return sendBody
}

// TestDocumentLoads: the embedded document is OpenAPI 3.1 and valid,
// examples included, for kin-openapi.
func TestDocumentLoads(t *testing.T) {
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPIMajorMinor() != "3.1" {
		t.Errorf("openapi: %q, want 3.1.x", doc.OpenAPI)
	}
	for _, p := range []string{sendPath, updatePath} {
		if item := doc.Paths.Value(p); item == nil || item.Post == nil || len(item.Operations()) != 1 {
			t.Errorf("%s: want exactly one operation, POST", p)
		}
	}
}

// TestEveryExampleValidates feeds every documented error example back as
// an answer, with the headers its status needs, and every request example
// as a request answered 200.
func TestEveryExampleValidates(t *testing.T) {
	examples, err := openapitest.ErrorExamples()
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		t.Fatal("no error examples")
	}
	for _, ex := range examples {
		t.Run(fmt.Sprintf("%s %d %s", ex.Path, ex.Status, ex.Name), func(t *testing.T) {
			t.Parallel()
			req := request(t, ex.Method, ex.Path, nil)
			err := openapitest.Validate(req, []byte(bodyOf(ex.Path)), ex.Status,
				answer(ex.Status, ex.Language), errorBody(ex.Code, ex.Message))
			if err != nil {
				t.Error(err)
			}
		})
	}

	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths.Map() {
		for name, ex := range item.Post.RequestBody.Value.Content.Get("application/json").Examples {
			t.Run(path+" request "+name, func(t *testing.T) {
				body, err := json.Marshal(ex.Value.Value)
				if err != nil {
					t.Fatal(err)
				}
				if err := openapitest.Validate(request(t, http.MethodPost, path, nil), body, http.StatusOK, answer(http.StatusOK, "en"), nil); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestErrorExamplesComplete: every error example comes in English and
// Chinese, and every status above 400 documents at least one code.
func TestErrorExamplesComplete(t *testing.T) {
	examples, err := openapitest.ErrorExamples()
	if err != nil {
		t.Fatal(err)
	}
	langs := map[string][]string{} // "path status code" -> languages
	for _, ex := range examples {
		if ex.Name != ex.Code+"."+ex.Language {
			t.Errorf("%s %d: example %q should be named %q", ex.Path, ex.Status, ex.Name, ex.Code+"."+ex.Language)
		}
		k := fmt.Sprintf("%s %d %s", ex.Path, ex.Status, ex.Code)
		langs[k] = append(langs[k], ex.Language)
	}
	for k, ls := range langs {
		if strings.Join(ls, ",") != "en,zh" {
			t.Errorf("%s: languages %v, want en and zh", k, ls)
		}
	}
}

// TestConforming: answers the document allows, including deliberately bad
// requests answered with an error, and paths it does not describe.
func TestConforming(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		path    string
		edit    func(http.Header)
		reqBody string
		status  int
		header  http.Header
		body    []byte
	}{
		{name: "send 200", path: sendPath, status: 200, header: answer(200, "en")},
		{name: "update 200", path: updatePath, status: 200, header: answer(200, "zh")},
		{name: "200 with a charset", path: sendPath, status: 200, header: func() http.Header {
			h := answer(200, "en")
			h.Set("Content-Type", "application/json; charset=utf-8")
			return h
		}()},
		{name: "request charset and no optional headers", path: updatePath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) {
				h.Set("Content-Type", "application/json; charset=UTF-8")
				h.Del("X-L")
				h.Del("X-device-ip")
			}},
		{name: "IPv6 device ip", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "2001:db8::1") }},
		{name: "zh message", path: updatePath, status: 400, header: answer(400, "zh"),
			body: errorBody("IDAAS.SDK.CAPTCHA.0007", "验证码不正确")},
		{name: "missing device header answered 400", path: updatePath, status: 400, header: answer(400, "en"),
			edit: func(h http.Header) { h.Del("X-agent") }, body: errorBody("IDAAS.SDK.PARAM.0001", "Device information is incomplete")},
		{name: "missing token answered 400", path: updatePath, status: 400, header: answer(400, "en"),
			edit: func(h http.Header) { h.Del("Authorization") }, body: errorBody("IDAAS.SDK.PARAM.0015", "IdToken cannot be empty")},
		{name: "unknown field answered 400", path: sendPath, status: 400, header: answer(400, "en"),
			reqBody: `{"email":"a@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"x","admin":"1"}`,
			body:    errorBody("IDAAS.SDK.REQ.9104", "Request body is not a valid JSON object")},
		{name: "other send type answered 400", path: sendPath, status: 400, header: answer(400, "en"),
			reqBody: `{"email":"a@example.com","type":"REGISTER_EMS","captcha_token":"x"}`,
			body:    errorBody("IDAAS.SDK.PARAM.9203", "Unsupported verification code type")},
		{name: "text/plain request answered 415", path: sendPath, status: 415, header: answer(415, "en"),
			edit: func(h http.Header) { h.Set("Content-Type", "text/plain") },
			body: errorBody("IDAAS.SDK.REQ.9102", "Content-Type must be application/json")},
		{name: "GET answered 405", method: http.MethodGet, path: sendPath, status: 405, header: answer(405, "en"),
			body: errorBody("IDAAS.SDK.REQ.9101", "Method not allowed, use POST")},
		{name: "HEAD answered 405 without body", method: http.MethodHead, path: updatePath, status: 405, header: answer(405, "en")},
		{name: "429 send", path: sendPath, status: 429, header: answer(429, "zh"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9201", "验证码发送过于频繁,请稍后重试")},
		{name: "another language is held to the schema only", path: sendPath, status: 400,
			header: answer(400, "fr"), body: errorBody("IDAAS.SDK.PARAM.0001", "Informations sur l'appareil incomplètes")},
		{name: "undocumented path", path: "/readyz", method: http.MethodGet, status: 200,
			header: http.Header{"Content-Type": {"text/plain"}}, body: []byte("ok\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			reqBody := tt.reqBody
			if reqBody == "" {
				reqBody = bodyOf(tt.path)
			}
			if err := openapitest.Validate(request(t, method, tt.path, tt.edit), []byte(reqBody), tt.status, tt.header, tt.body); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestBreaking: the checker can fail. Each answer breaks the document in
// one way, and the error says which.
func TestBreaking(t *testing.T) {
	without := func(status int, lang, key string) http.Header {
		h := answer(status, lang)
		h.Del(key)
		return h
	}
	with := func(status int, lang, key, value string) http.Header {
		h := answer(status, lang)
		h.Set(key, value)
		return h
	}
	badCode := errorBody("IDAAS.SDK.CAPTCHA.0007", "Incorrect verification code")
	tests := []struct {
		name    string
		method  string
		path    string
		edit    func(http.Header)
		reqBody string
		status  int
		header  http.Header
		body    []byte
		want    string // in the error
	}{
		{name: "undocumented status", path: updatePath, status: 404, header: answer(404, "en"),
			body: errorBody("IDAAS.SDK.USER.0001", "User not found"), want: "status is not supported"},
		{name: "401 on send", path: sendPath, status: 401, header: answer(401, "en"),
			body: errorBody("IDAAS.SDK.PARAM.9204", "Please sign in again to change your email"), want: "status is not supported"},
		{name: "429 without Retry-After", path: sendPath, status: 429, header: without(429, "en", "Retry-After"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9201", "Verification codes are requested too often, please try again later"), want: `"Retry-After" missing`},
		{name: "429 with a date for Retry-After", path: updatePath, status: 429,
			header: with(429, "en", "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
			body:   errorBody("IDAAS.SDK.CAPTCHA.9205", "Too many incorrect verification codes, please try again later"), want: "Retry-After"},
		{name: "429 with Retry-After 0", path: updatePath, status: 429, header: with(429, "en", "Retry-After", "0"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9205", "Too many incorrect verification codes, please try again later"), want: "Retry-After"},
		{name: "405 without Allow", method: http.MethodPut, path: sendPath, status: 405, header: without(405, "en", "Allow"),
			body: errorBody("IDAAS.SDK.REQ.9101", "Method not allowed, use POST"), want: `"Allow" missing`},
		{name: "401 without WWW-Authenticate", path: updatePath, status: 401, header: without(401, "en", "WWW-Authenticate"),
			body: errorBody("IDAAS.SDK.PARAM.9204", "Please sign in again to change your email"), want: `"WWW-Authenticate" missing`},
		{name: "missing Cache-Control", path: updatePath, status: 400, header: without(400, "en", "Cache-Control"),
			body: badCode, want: `"Cache-Control" missing`},
		{name: "200 without Cache-Control", path: sendPath, status: 200, header: without(200, "en", "Cache-Control"),
			want: `"Cache-Control" missing`},
		{name: "cacheable", path: updatePath, status: 400, header: with(400, "en", "Cache-Control", "max-age=60"),
			body: badCode, want: "Cache-Control"},
		{name: "missing Content-Language", path: updatePath, status: 400, header: without(400, "en", "Content-Language"),
			body: badCode, want: `"Content-Language" missing`},
		{name: "extra body field", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":"IDAAS.SDK.CAPTCHA.0007","error_msg":"Incorrect verification code","detail":"x"}`), want: "additional properties"},
		{name: "missing error_msg", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":"IDAAS.SDK.CAPTCHA.0007"}`), want: "error_msg"},
		{name: "error_code not a string", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":7,"error_msg":"Incorrect verification code"}`), want: "error_code"},
		{name: "error body not JSON", path: updatePath, status: 500, header: answer(500, "en"),
			body: []byte("internal error\n"), want: "failed to decode response body"},
		{name: "text/plain error", path: updatePath, status: 400, header: with(400, "en", "Content-Type", "text/plain; charset=utf-8"),
			body: badCode, want: "Content-Type"},
		{name: "200 with a body", path: updatePath, status: 200, header: answer(200, "en"),
			body: []byte("{}"), want: "no body"},
		{name: "200 as text/plain", path: sendPath, status: 200, header: with(200, "en", "Content-Type", "text/plain"),
			want: `Content-Type "text/plain"`},
		{name: "code undocumented for the status", path: sendPath, status: 400, header: answer(400, "en"),
			body: errorBody("IDAAS.SDK.USER.0036", "E-mail already exists"), want: "not documented for this status"},
		{name: "code of another status", path: sendPath, status: 400, header: answer(400, "en"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9201", "Verification codes are requested too often, please try again later"), want: "not documented for this status"},
		{name: "message drifted", path: updatePath, status: 400, header: answer(400, "en"),
			body: errorBody("IDAAS.SDK.CAPTCHA.0007", "Wrong code"), want: "is not the documented"},
		{name: "message in the other language", path: updatePath, status: 400, header: answer(400, "en"),
			body: errorBody("IDAAS.SDK.CAPTCHA.0007", "验证码不正确"), want: "is not the documented"},
		{name: "refused request answered 200: no X-agent", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Del("X-agent") }, want: "the document refuses the request"},
		{name: "refused request answered 200: no token", path: updatePath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Del("Authorization") }, want: "the document refuses the request"},
		{name: "refused request answered 200: blank token", path: updatePath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("Authorization", "Bearer  ") }, want: "the document refuses the request"},
		{name: "refused request answered 200: device ip", path: updatePath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "300.1.1.1") }, want: "the document refuses the request"},
		{name: "refused request answered 200: unknown field", path: updatePath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","verify_code":"123456","admin":true}`, want: "the document refuses the request"},
		{name: "refused request answered 200: other type", path: sendPath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","type":"LOGIN_EMS","captcha_token":"x"}`, want: "the document refuses the request"},
		{name: "refused request answered 200: content type", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("Content-Type", "text/plain") }, want: "the document refuses the request"},
		{name: "GET answered 200", method: http.MethodGet, path: sendPath, status: 200, header: answer(200, "en"),
			want: "must be 405"},
		{name: "HEAD answered 405 without Allow", method: http.MethodHead, path: sendPath, status: 405,
			header: without(405, "en", "Allow"), want: `"Allow" missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			reqBody := tt.reqBody
			if reqBody == "" {
				reqBody = bodyOf(tt.path)
			}
			err := openapitest.Validate(request(t, method, tt.path, tt.edit), []byte(reqBody), tt.status, tt.header, tt.body)
			if err == nil {
				t.Fatal("Validate passed an answer that breaks the document")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// recorder is a testing.TB that records what Check reports.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestCheckReports: Check fails its test, without stopping it, exactly
// when Validate finds a fault, also from many goroutines at once.
func TestCheckReports(t *testing.T) {
	rec := &recorder{TB: t}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			status, body := 200, []byte(nil)
			if i%2 == 1 {
				body = []byte("{}") // a 200 with a body
			}
			openapitest.Check(rec, request(t, http.MethodPost, sendPath, nil), []byte(sendBody), status, answer(200, "en"), body)
		})
	}
	wg.Wait()
	if len(rec.errors) != 10 {
		t.Fatalf("Check reported %d failures, want 10: %q", len(rec.errors), rec.errors)
	}
}

// TestValidateLeavesRequest: the caller's request is neither read nor
// changed.
func TestValidateLeavesRequest(t *testing.T) {
	req := request(t, http.MethodPost, sendPath, nil)
	req.Body = http.NoBody
	before := req.Header.Clone()
	if err := openapitest.Validate(req, []byte(sendBody), 200, answer(200, "en"), nil); err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.Body != http.NoBody || fmt.Sprint(req.Header) != fmt.Sprint(before) {
		t.Errorf("request changed: %s %v %v", req.Method, req.Body, req.Header)
	}
}

func BenchmarkValidate(b *testing.B) {
	req := request(b, http.MethodPost, updatePath, nil)
	h := answer(400, "en")
	body := errorBody("IDAAS.SDK.CAPTCHA.0007", "Incorrect verification code")
	b.ReportAllocs()
	for b.Loop() {
		if err := openapitest.Validate(req, []byte(updateBody), 400, h, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateSuccess(b *testing.B) {
	h := answer(200, "en")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req := request(b, http.MethodPost, updatePath, nil)
		body := fmt.Sprintf(`{"email":"user%d@example.com","verify_code":"123456"}`, i)
		if err := openapitest.Validate(req, []byte(body), 200, h, nil); err != nil {
			b.Fatal(err)
		}
	}
}
