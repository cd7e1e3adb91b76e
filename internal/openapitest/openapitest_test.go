package openapitest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/openapitest"
)

const (
	sendPath     = selfservice.SendCodePath
	updatePath   = selfservice.UpdateEmailPath
	revertPath   = selfservice.RevertEmailPath
	sendBody     = `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`
	updateBody   = `{"email":"new@example.com","verify_code":"123456"}`
	revertBody   = `{"revert_token":"3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA"}`
	methodNotAll = `{"error_code":"IDAAS.SDK.REQ.9101","error_msg":"Method not allowed, use POST"}`
)

// otherMethods are the methods OpenAPI 3.1 can name that the endpoints
// refuse.
var otherMethods = []string{
	http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete,
	http.MethodHead, http.MethodOptions, http.MethodTrace,
}

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
	switch path {
	case updatePath:
		return updateBody
	case revertPath:
		return revertBody
	}
	return sendBody
}

// TestDocumentLoads: the embedded document is OpenAPI 3.1 and valid,
// examples included, for kin-openapi and for pb33f (Document fails
// otherwise). Each path lists POST and every other method OpenAPI 3.1 can
// name, which only answer 405, or 400 for a repeated X-L.
func TestDocumentLoads(t *testing.T) {
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPIMajorMinor() != "3.1" {
		t.Errorf("openapi: %q, want 3.1.x", doc.OpenAPI)
	}
	for _, p := range []string{sendPath, updatePath, revertPath} {
		item := doc.Paths.Value(p)
		if item == nil || item.Post == nil {
			t.Errorf("%s: no POST", p)
			continue
		}
		if len(item.Operations()) != 1+len(otherMethods) {
			t.Errorf("%s: %d operations, want POST and %v", p, len(item.Operations()), otherMethods)
		}
		for _, m := range otherMethods {
			op := item.GetOperation(m)
			if op == nil {
				t.Errorf("%s: no %s", p, m)
				continue
			}
			var statuses []string
			for code := range op.Responses.Map() {
				statuses = append(statuses, code)
			}
			slices.Sort(statuses)
			if fmt.Sprint(statuses) != "[400 405]" || !slices.Equal(op.Tags, []string{"other-methods"}) {
				t.Errorf("%s %s: statuses %v, tags %v; want [400 405] and other-methods", m, p, statuses, op.Tags)
			}
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
	langs := map[string][]string{} // "method path status code" -> languages
	for _, ex := range examples {
		if ex.Name != ex.Code+"."+ex.Language {
			t.Errorf("%s %d: example %q should be named %q", ex.Path, ex.Status, ex.Name, ex.Code+"."+ex.Language)
		}
		k := fmt.Sprintf("%s %s %d %s", ex.Method, ex.Path, ex.Status, ex.Code)
		langs[k] = append(langs[k], ex.Language)
	}
	for k, ls := range langs {
		if strings.Join(ls, ",") != "en,zh" {
			t.Errorf("%s: languages %v, want en and zh", k, ls)
		}
	}
}

// exchange is one case of TestConforming: a request to path with method
// (default POST), its headers edited, reqBody (default bodyOf(path)),
// answered status with header and body.
type exchange struct {
	name    string
	method  string
	path    string
	edit    func(http.Header)
	reqBody string
	status  int
	header  http.Header
	body    []byte
}

// TestConforming: answers the document allows, including deliberately bad
// requests answered with an error, and paths it does not describe.
func TestConforming(t *testing.T) {
	tests := []exchange{
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
		{name: "revert 200", path: revertPath, status: 200, header: answer(200, "en")},
		{name: "update to the own address with any code", path: updatePath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"own@example.com","verify_code":"x"}`},
		{name: "IPv6 device ip with a zone", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "fe80::1%eth0") }},
		{name: "IPv4-mapped device ip", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "::ffff:192.0.2.1") }},
		{name: "email of 254 characters", path: sendPath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"` + strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + `.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`},
		{name: "HEAD answered 405 without body", method: http.MethodHead, path: updatePath, status: 405, header: answer(405, "en")},
		{name: "PURGE answered as GET", method: "PURGE", path: revertPath, status: 405, header: answer(405, "zh"),
			body: errorBody("IDAAS.SDK.REQ.9101", "请求方法不被允许,请使用POST")},
		{name: "GET with X-L repeated answered 400", method: http.MethodGet, path: sendPath, status: 400, header: answer(400, "en"),
			edit: func(h http.Header) { h.Add("X-L", "zh") },
			body: errorBody("IDAAS.SDK.REQ.9105", "A request header that may appear only once is repeated")},
		{name: "HEAD with X-L repeated answered 400 without body", method: http.MethodHead, path: revertPath, status: 400,
			header: answer(400, "en"), edit: func(h http.Header) { h.Add("X-L", "zh") }},
		{name: "429 send", path: sendPath, status: 429, header: answer(429, "zh"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9201", "验证码发送过于频繁,请稍后重试")},
		{name: "another language is held to the schema only", path: sendPath, status: 400,
			header: answer(400, "fr"), body: errorBody("IDAAS.SDK.PARAM.0001", "Informations sur l'appareil incomplètes")},
		{name: "undocumented path", path: "/readyz", method: http.MethodGet, status: 200,
			header: http.Header{"Content-Type": {"text/plain"}}, body: []byte("ok\n")},
	}
	for _, path := range []string{sendPath, updatePath, revertPath} {
		for _, m := range otherMethods {
			tt := exchange{name: m + " " + path + " answered 405", method: m, path: path, status: 405, header: answer(405, "en"), body: []byte(methodNotAll + "\n")}
			if m == http.MethodHead {
				tt.body = nil
			}
			tests = append(tests, tt)
		}
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
// one way, and the error says which. Where a schema of the document states
// the rule broken, pb33f objects too, on its own reading of the document
// (pb); the package's own rules (an empty body, exhaustive examples) are
// kin-openapi's side only.
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
		pb      string // in pb33f's error, when it must object too
	}{
		{name: "undocumented status", path: updatePath, status: 404, header: answer(404, "en"),
			body: errorBody("IDAAS.SDK.USER.0001", "User not found"), want: "status is not supported", pb: "response code '404' does not exist"},
		{name: "401 on send", path: sendPath, status: 401, header: answer(401, "en"),
			body: errorBody("IDAAS.SDK.PARAM.9204", "Please sign in again to change your email"), want: "status is not supported", pb: "response code '401' does not exist"},
		{name: "429 without Retry-After", path: sendPath, status: 429, header: without(429, "en", "Retry-After"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9201", "Verification codes are requested too often, please try again later"), want: `"Retry-After" missing`, pb: "Required header 'Retry-After'"},
		{name: "429 with a date for Retry-After", path: updatePath, status: 429,
			header: with(429, "en", "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
			body:   errorBody("IDAAS.SDK.CAPTCHA.9205", "Too many incorrect verification codes, please try again later"), want: "Retry-After", pb: "retry-after"},
		{name: "429 with Retry-After 0", path: updatePath, status: 429, header: with(429, "en", "Retry-After", "0"),
			body: errorBody("IDAAS.SDK.CAPTCHA.9205", "Too many incorrect verification codes, please try again later"), want: "Retry-After", pb: "retry-after"},
		{name: "405 without Allow", method: http.MethodPut, path: sendPath, status: 405, header: without(405, "en", "Allow"),
			body: errorBody("IDAAS.SDK.REQ.9101", "Method not allowed, use POST"), want: `"Allow" missing`, pb: "Required header 'Allow'"},
		{name: "401 without WWW-Authenticate", path: updatePath, status: 401, header: without(401, "en", "WWW-Authenticate"),
			body: errorBody("IDAAS.SDK.PARAM.9204", "Please sign in again to change your email"), want: `"WWW-Authenticate" missing`, pb: "Required header 'WWW-Authenticate'"},
		{name: "missing Cache-Control", path: updatePath, status: 400, header: without(400, "en", "Cache-Control"),
			body: badCode, want: `"Cache-Control" missing`, pb: "Required header 'Cache-Control'"},
		{name: "200 without Cache-Control", path: sendPath, status: 200, header: without(200, "en", "Cache-Control"),
			want: `"Cache-Control" missing`, pb: "Required header 'Cache-Control'"},
		{name: "cacheable", path: updatePath, status: 400, header: with(400, "en", "Cache-Control", "max-age=60"),
			body: badCode, want: "Cache-Control", pb: "cache-control"},
		{name: "missing Content-Language", path: updatePath, status: 400, header: without(400, "en", "Content-Language"),
			body: badCode, want: `"Content-Language" missing`, pb: "Required header 'Content-Language'"},
		{name: "extra body field", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":"IDAAS.SDK.CAPTCHA.0007","error_msg":"Incorrect verification code","detail":"x"}`), want: "additional properties", pb: "additional properties 'detail'"},
		{name: "missing error_msg", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":"IDAAS.SDK.CAPTCHA.0007"}`), want: "error_msg", pb: "missing property 'error_msg'"},
		{name: "error_code not a string", path: updatePath, status: 400, header: answer(400, "en"),
			body: []byte(`{"error_code":7,"error_msg":"Incorrect verification code"}`), want: "error_code", pb: "error_code"},
		{name: "error body not JSON", path: updatePath, status: 500, header: answer(500, "en"),
			body: []byte("internal error\n"), want: "failed to decode response body", pb: "cannot be decoded"},
		{name: "text/plain error", path: updatePath, status: 400, header: with(400, "en", "Content-Type", "text/plain; charset=utf-8"),
			body: badCode, want: "Content-Type", pb: "content type 'text/plain'"},
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
			edit: func(h http.Header) { h.Del("X-agent") }, want: "the document refuses the request", pb: "X-agent"},
		{name: "refused request answered 200: device ip", path: updatePath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "300.1.1.1") }, want: "the document refuses the request", pb: "X-device-ip"},
		{name: "refused request answered 200: device ip with a leading zero", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "192.168.01.2") }, want: "the document refuses the request", pb: "X-device-ip"},
		{name: "refused request answered 200: IPv4 with a zone", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("X-device-ip", "192.168.1.2%eth0") }, want: "the document refuses the request", pb: "X-device-ip"},
		{name: "refused request answered 200: email of 255 characters", path: sendPath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"` + strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + `.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`,
			want:    "the document refuses the request", pb: "maxLength: got 255, want 254"},
		{name: "refused request answered 200: captcha token over 4096", path: sendPath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"` + strings.Repeat("t", 4097) + `"}`,
			want:    "the document refuses the request", pb: "captcha_token: maxLength"},
		{name: "refused request answered 200: code over 4096", path: updatePath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","verify_code":"` + strings.Repeat("1", 4097) + `"}`, want: "the document refuses the request", pb: "verify_code: maxLength"},
		{name: "refused request answered 200: revert token with bits past its bytes", path: revertPath, status: 200, header: answer(200, "en"),
			reqBody: `{"revert_token":"3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpB"}`, want: "the document refuses the request", pb: "revert_token"},
		{name: "refused request answered 200: padded revert token", path: revertPath, status: 200, header: answer(200, "en"),
			reqBody: `{"revert_token":"3q2-7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA="}`, want: "the document refuses the request", pb: "revert_token"},
		{name: "refused request answered 200: standard base64 revert token", path: revertPath, status: 200, header: answer(200, "en"),
			reqBody: `{"revert_token":"3q2+7wQn0Xy5fFv4c8PZgk1mB9sJtL6aRhUeDiYoNpA"}`, want: "the document refuses the request", pb: "revert_token"},
		{name: "refused request answered 200: unknown field", path: updatePath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","verify_code":"123456","admin":true}`, want: "the document refuses the request", pb: "additional properties 'admin'"},
		{name: "refused request answered 200: other type", path: sendPath, status: 200, header: answer(200, "en"),
			reqBody: `{"email":"a@example.com","type":"LOGIN_EMS","captcha_token":"x"}`, want: "the document refuses the request", pb: "UPDATE_EMAIL_EMS"},
		{name: "refused request answered 200: content type", path: sendPath, status: 200, header: answer(200, "en"),
			edit: func(h http.Header) { h.Set("Content-Type", "text/plain") }, want: "the document refuses the request", pb: "content type 'text/plain'"},
		{name: "GET answered 200", method: http.MethodGet, path: sendPath, status: 200, header: answer(200, "en"),
			want: "status is not supported", pb: "response code '200' does not exist"},
		{name: "PURGE answered 200", method: "PURGE", path: updatePath, status: 200, header: answer(200, "en"),
			want: "status is not supported", pb: "GET operation request response code '200'"},
		{name: "a CORS preflight's answer", method: http.MethodOptions, path: sendPath, status: 204, header: answer(204, "en"),
			want: "status is not supported", pb: "response code '204'"},
		{name: "POST answered 405", path: sendPath, status: 405, header: answer(405, "en"),
			body: errorBody("IDAAS.SDK.REQ.9101", "Method not allowed, use POST"), want: "status is not supported", pb: "response code '405'"},
		{name: "405 with another code", method: http.MethodDelete, path: revertPath, status: 405, header: answer(405, "en"),
			body: errorBody("IDAAS.SDK.REQ.9104", "Request body is not a valid JSON object"), want: "not documented for this status"},
		{name: "HEAD answered 405 without Allow", method: http.MethodHead, path: sendPath, status: 405,
			header: without(405, "en", "Allow"), want: `"Allow" missing`, pb: "Required header 'Allow'"},
		{name: "HEAD answered 405 with a body", method: http.MethodHead, path: sendPath, status: 405,
			header: answer(405, "en"), body: []byte(methodNotAll), want: "no body"},
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
			_, pbErr, _ := strings.Cut(err.Error(), "pb33f libopenapi-validator: ")
			if tt.pb != "" && !strings.Contains(pbErr, tt.pb) {
				t.Errorf("pb33f's error does not mention %q:\n%v", tt.pb, err)
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

// TestTransport: a client with Transport checks every exchange with a
// documented path and counts it in Validated; the server gets the request's
// body and the caller the response's, both unchanged.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		status := http.StatusOK
		if r.Method != http.MethodPost {
			status = http.StatusMethodNotAllowed
		}
		maps.Copy(w.Header(), answer(status, "en"))
		w.WriteHeader(status)
		switch {
		case status == http.StatusMethodNotAllowed:
			_, _ = io.WriteString(w, methodNotAll+"\n")
		case string(body) != sendBody:
			_, _ = io.WriteString(w, "{}") // a 200 with a body breaks the document
		}
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{TB: t}
	client := &http.Client{Transport: openapitest.Transport(rec, nil)}
	do := func(method, path, body string) string {
		t.Helper()
		req := request(t, method, path, nil)
		req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
		req.Host = req.URL.Host
		req.Body = io.NopCloser(strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	before := openapitest.Validated()
	if got := do(http.MethodPost, sendPath, sendBody); got != "" || len(rec.errors) != 0 {
		t.Fatalf("POST: body %q, reported %q; want nothing", got, rec.errors)
	}
	if got := do(http.MethodGet, updatePath, ""); got != methodNotAll+"\n" || len(rec.errors) != 0 {
		t.Fatalf("GET: body %q, reported %q; want the 405 and nothing", got, rec.errors)
	}
	do(http.MethodPost, sendPath, `{"email":"other@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "no body") {
		t.Fatalf("reported %q, want the 200 with a body", rec.errors)
	}
	do(http.MethodGet, "/readyz", "")
	if n := openapitest.Validated() - before; n != 3 || len(rec.errors) != 1 {
		t.Errorf("Validated counted %d exchanges and %d were reported, want 3 and 1 (the undocumented path is neither)", n, len(rec.errors))
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
