// Package openapitest checks HTTP exchanges with the package's endpoints
// against its OpenAPI 3.1 document (selfservice.OpenAPI) with two
// validators written apart, kin-openapi and pb33f libopenapi-validator:
// the document cannot drift from what the handlers do, and it cannot lean
// on one implementation's reading of it. It is for tests only: the library
// never imports it.
//
// Quick start, in a test that has sent req with body reqBody and read the
// answer:
//
//	openapitest.Check(t, req, reqBody, resp.StatusCode, resp.Header, respBody)
//
// or, for a client whose exchanges should all be checked,
//
//	client := &http.Client{Transport: openapitest.Transport(t, nil)}
//
// Check fails t (with t.Errorf, so it is safe from any goroutine) when the
// answer breaks the document. The document is loaded and validated once per
// process, by both validators; Check, Validate and Transport are safe for
// concurrent use.
//
// What is checked, for a request to a path the document describes (other
// paths are ignored). Both validators check:
//
//   - the response, always: its status must be documented for the
//     operation (there is no default response), its documented headers
//     present and valid (Cache-Control, Content-Language, Retry-After on
//     429, Allow on 405, WWW-Authenticate on 401), its Content-Type one the
//     document lists, its body valid against the schema (exactly
//     error_code and error_msg);
//   - the request: tests send deliberately bad requests (a missing header,
//     a wrong content type) to see the server's own JSON error, so a request
//     the document refuses is not a failure by itself; it is one when the
//     server answers it with a success, since the server then accepted what
//     the document says it refuses;
//   - the method: the document lists, for each path, every method OpenAPI
//     3.1 can name, the ones the server refuses with 405 included; a method
//     it cannot name (PURGE, QUERY, ...) is held to what the document says
//     of GET, whose answer the server gives to every method but POST.
//
// And the package's own rules, which no validator knows:
//
//   - a response the document gives no content (the 200, the answers to
//     HEAD) must have an empty body, and the Content-Type its
//     x-content-type extension names;
//   - an error's examples are exhaustive: error_code must be one of the
//     codes the examples of that operation and status show, and when an
//     example of that code exists in the language of Content-Language
//     (example names end in ".en", ".zh"), the body must equal it. Another
//     language (an integrator's own bundle) is only held to the schema.
package openapitest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	pberrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/ciamkit/selfservice"
)

// ContentTypeExtension names the response extension that states the
// Content-Type of a response without a body (OpenAPI ignores a
// Content-Type entry among a response's headers).
const ContentTypeExtension = "x-content-type"

// spec is the loaded document with what validation needs, built once.
type spec struct {
	doc       *openapi3.T
	router    routers.Router
	pb        validator.Validator
	cache     sync.Map     // cacheKey -> cached: response validation results
	cached    atomic.Int64 // entries stored in cache, at most maxCached
	validated atomic.Int64 // exchanges with a documented path checked
}

var load = sync.OnceValues(func() (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(selfservice.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapitest: kin-openapi loading openapi.yaml: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapitest: openapi.yaml is OpenAPI %s, not 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("openapitest: openapi.yaml is not a valid OpenAPI document for kin-openapi: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapitest: routing openapi.yaml: %w", err)
	}
	pb, err := loadPB33F()
	if err != nil {
		return nil, err
	}
	return &spec{doc: doc, router: router, pb: pb}, nil
})

// loadPB33F builds the second validator. Format assertions are on, so
// that a format the document may name is checked, not just noted; the
// authentication function is the same check as kin-openapi's.
func loadPB33F() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(selfservice.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapitest: pb33f loading openapi.yaml: %w", err)
	}
	v, errs := validator.NewValidator(doc,
		config.WithFormatAssertions(),
		config.WithRegexCache(&sync.Map{}),
		config.WithAuthenticationFunc(pbBearerPresent),
	)
	if len(errs) > 0 {
		return nil, fmt.Errorf("openapitest: pb33f building a validator of openapi.yaml: %w", errors.Join(errs...))
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("openapitest: openapi.yaml is not a valid OpenAPI document for pb33f: %w", pbError(verrs))
	}
	return v, nil
}

// Document returns the embedded document, loaded and validated (examples
// included) once per process. It is shared: do not modify it.
func Document() (*openapi3.T, error) {
	s, err := load()
	if err != nil {
		return nil, err
	}
	return s.doc, nil
}

// Validated returns how many exchanges to a path of the document Validate
// has checked in this process (Check and Transport call it), for reports
// of what the suites cover.
func Validated() int64 {
	s, err := load()
	if err != nil {
		return 0
	}
	return s.validated.Load()
}

// Check validates one exchange with Validate and reports a failure with
// t.Errorf. req is the request as sent, reqBody its body (req.Body is not
// read), status, header and respBody the answer.
func Check(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	if err := Validate(req, reqBody, status, header, respBody); err != nil {
		t.Errorf("%v", err)
	}
}

// Transport returns a RoundTripper that sends each request with base
// (nil: http.DefaultTransport) and checks each exchange with Check,
// reporting to t: a client with it checks every exchange of a suite
// without a change to the suite's code. It reads the request's body to
// check it and sends what it read; it reads the response's body in full
// and hands it on.
func Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &checkingTransport{t: t, base: base}
}

type checkingTransport struct {
	t    testing.TB
	base http.RoundTripper
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("openapitest: reading the request body: %w", err)
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("openapitest: reading the response body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	Check(c.t, req, reqBody, resp.StatusCode, resp.Header, respBody)
	return resp, nil
}

// Validate returns why one exchange breaks the document (see the package
// comment for the rules), or nil when it conforms or its path is not in
// the document. req.Body is not read: the body is reqBody. The error says
// which validator objects: both must accept the exchange.
func Validate(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	what := fmt.Sprintf("openapitest: %s %s answered %d", req.Method, req.URL.Path, status)

	method := documentedMethod(req.Method)
	route, _, err := s.router.FindRoute(withMethod(req, method))
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return nil
	case errors.Is(err, routers.ErrMethodNotAllowed):
		s.validated.Add(1)
		return fmt.Errorf("%s: the document lists no %s for this path", what, method)
	case err != nil:
		return fmt.Errorf("%s: routing: %w", what, err)
	}
	s.validated.Add(1)

	// Whether the document accepts the request matters only when the
	// server accepted it too: deliberately bad requests are answered with
	// errors, which the response validation below holds to the document.
	if status >= 200 && status < 300 {
		var errs []error
		err := openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
			Request: withMethod(withBody(req, reqBody), method),
			Route:   route,
			Options: requestOptions,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("kin-openapi: %w", err))
		}
		if ok, verrs := s.pb.ValidateHttpRequestSync(withMethod(withBody(req, reqBody), method)); !ok {
			errs = append(errs, pbError(verrs))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%s, but the document refuses the request: %w", what, err)
		}
	}
	if err := s.validateResponse(ctx, route, status, header, respBody); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// openAPIMethods are the methods an OpenAPI 3.1 path item can list.
var openAPIMethods = []string{
	http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete,
	http.MethodOptions, http.MethodHead, http.MethodPatch, http.MethodTrace,
}

// documentedMethod is the method whose operation describes the answer to
// method: itself when OpenAPI 3.1 can name it, else GET, whose answer the
// server gives to every method but POST (the document says so in its
// conventions).
func documentedMethod(method string) string {
	if slices.Contains(openAPIMethods, method) {
		return method
	}
	return http.MethodGet
}

// withMethod returns req, or a shallow copy of it with another method.
func withMethod(req *http.Request, method string) *http.Request {
	if req.Method == method {
		return req
	}
	r := req.WithContext(req.Context())
	r.Method = method
	return r
}

// requestOptions validate a request with kin-openapi: a Bearer token must
// be present where the document asks for one.
var requestOptions = &openapi3filter.Options{
	MultiError:         true,
	AuthenticationFunc: kinBearerPresent,
}

// bearerPresent is the authentication check of request validation, for
// both validators: the document's only scheme is an HTTP Bearer id_token,
// and what can be checked without the issuer's keys is that exactly one
// non-empty token is sent.
func bearerPresent(name, typ, scheme string, h http.Header) error {
	if typ != "http" || !strings.EqualFold(scheme, "bearer") {
		return fmt.Errorf("openapitest: unexpected security scheme %q", name)
	}
	vs := h.Values("Authorization")
	if len(vs) != 1 {
		return fmt.Errorf("%d Authorization headers, want 1", len(vs))
	}
	s, token, ok := strings.Cut(strings.TrimSpace(vs[0]), " ")
	if !ok || !strings.EqualFold(s, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no Bearer token in Authorization")
	}
	return nil
}

func kinBearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	ss := in.SecurityScheme
	if ss == nil {
		return in.NewError(fmt.Errorf("openapitest: no security scheme %q", in.SecuritySchemeName))
	}
	if err := bearerPresent(in.SecuritySchemeName, ss.Type, ss.Scheme, in.RequestValidationInput.Request.Header); err != nil {
		return in.NewError(err)
	}
	return nil
}

func pbBearerPresent(_ context.Context, in *config.AuthenticationInput) error {
	ss := in.SecurityScheme
	if ss == nil {
		return fmt.Errorf("openapitest: no security scheme %q", in.SecuritySchemeName)
	}
	return bearerPresent(in.SecuritySchemeName, ss.Type, ss.Scheme, in.Request.Header)
}

// validateResponse holds an answer on route to the document: kin-openapi's
// and pb33f's response validation, then the rules neither has a notion
// of (validateOwnRules). Results are cached: suites repeat the same few
// answers many times, and both validators do real work for every value
// they check.
func (s *spec) validateResponse(ctx context.Context, route *routers.Route, status int, header http.Header, body []byte) error {
	resp := route.Operation.Responses.Status(status)
	key := cacheKey(route, status, resp, header, body)
	if err, ok := s.cache.Load(key); ok {
		return err.(cached).err
	}
	kinErr := validateResponseKin(ctx, route, status, header, body)
	if kinErr == nil {
		kinErr = validateOwnRules(route, status, header, body)
	}
	err := errors.Join(kinErr, s.validateResponsePB33F(route, status, header, body))
	if s.cached.Add(1) <= maxCached {
		s.cache.Store(key, cached{err})
	}
	return err
}

// maxCached bounds the cache of validation results.
const maxCached = 10_000

// cached is an entry of spec.cache (sync.Map cannot store a nil error).
type cached struct{ err error }

// cacheKey names everything a response's validation reads: the operation
// (path and documented method), the status, the headers the document
// describes for it, Content-Type, Content-Language and the body.
func cacheKey(route *routers.Route, status int, resp *openapi3.ResponseRef, header http.Header, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%d", route.Path, route.Method, status)
	names := []string{"Content-Type", "Content-Language"}
	if resp != nil && resp.Value != nil {
		for name := range resp.Value.Headers {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		fmt.Fprintf(&b, "\x00%s=%q", name, header.Values(name))
	}
	b.WriteString("\x00")
	b.Write(body)
	return b.String()
}

func validateResponseKin(ctx context.Context, route *routers.Route, status int, header http.Header, body []byte) error {
	method := route.Method
	if method == http.MethodHead {
		// kin-openapi skips every answer to HEAD; the route names the
		// HEAD operation already, so the request only needs another
		// method.
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, route.Path, nil)
	if err != nil {
		return err
	}
	err = openapi3filter.ValidateResponse(ctx, (&openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: requestOptions},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}).SetBodyBytes(body))
	if err != nil {
		return fmt.Errorf("kin-openapi: %w", err)
	}
	return nil
}

func (s *spec) validateResponsePB33F(route *routers.Route, status int, header http.Header, body []byte) error {
	req, err := http.NewRequest(route.Method, route.Path, nil)
	if err != nil {
		return err
	}
	resp := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	if ok, verrs := s.pb.ValidateHttpResponse(req, resp); !ok {
		return pbError(verrs)
	}
	return nil
}

// pbError makes one error of pb33f's validation errors and the schema
// failures each carries.
func pbError(verrs []*pberrors.ValidationError) error {
	errs := make([]error, 0, len(verrs))
	for _, e := range verrs {
		var b strings.Builder
		b.WriteString(e.Message)
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "; %s: %s", cmp.Or(f.FieldPath, f.KeywordLocation), f.Reason)
		}
		errs = append(errs, errors.New(b.String()))
	}
	return fmt.Errorf("pb33f libopenapi-validator: %w", errors.Join(errs...))
}

// validateOwnRules applies the package's own rules to an answer the
// schemas accept: an empty body where no content is documented, and
// exhaustive error examples.
func validateOwnRules(route *routers.Route, status int, header http.Header, body []byte) error {
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	resp := ref.Value
	if len(resp.Content) == 0 {
		return validateNoContent(resp, header, body)
	}
	if status >= 400 {
		return validateErrorExample(resp, header, body)
	}
	return nil
}

// validateNoContent holds a response the document gives no content to an
// empty body and to the Content-Type of its x-content-type extension.
func validateNoContent(resp *openapi3.Response, header http.Header, body []byte) error {
	if len(body) != 0 {
		return fmt.Errorf("the document gives this response no body, got %q", truncate(body))
	}
	want, _ := resp.Extensions[ContentTypeExtension].(string)
	if want == "" {
		return nil
	}
	got, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(got, want) {
		return fmt.Errorf("Content-Type %q, the document says %q", header.Get("Content-Type"), want)
	}
	return nil
}

// validateErrorExample holds an error body to the documented examples of
// its response, which list every code and message it may carry.
func validateErrorExample(resp *openapi3.Response, header http.Header, body []byte) error {
	mt := resp.Content.Get(header.Get("Content-Type"))
	if mt == nil || len(mt.Examples) == 0 {
		return nil
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("error body %q: %w", truncate(body), err)
	}
	lang := header.Get("Content-Language")
	var codes []string
	var sameCode, sameLang []any
	for name, ref := range mt.Examples {
		if ref == nil || ref.Value == nil {
			continue
		}
		v, _ := ref.Value.Value.(map[string]any)
		code, _ := v["error_code"].(string)
		codes = append(codes, code)
		if code != got["error_code"] {
			continue
		}
		sameCode = append(sameCode, v)
		if exampleLanguage(name) == lang {
			sameLang = append(sameLang, v)
		}
	}
	if len(sameCode) == 0 {
		slices.Sort(codes)
		return fmt.Errorf("error_code %v is not documented for this status (documented: %s)",
			got["error_code"], strings.Join(slices.Compact(codes), ", "))
	}
	if len(sameLang) == 0 || slices.ContainsFunc(sameLang, func(v any) bool { return reflect.DeepEqual(v, any(got)) }) {
		return nil
	}
	return fmt.Errorf("body %s is not the documented %q example of %v: %v",
		truncate(body), lang, got["error_code"], sameLang)
}

// exampleLanguage is the language of an example named "<code>.<lang>".
func exampleLanguage(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

// Example is one documented error answer.
type Example struct {
	Method, Path string // the operation
	Status       int
	Name         string // the example's name: "<code>.<lang>"
	Code         string // error_code
	Language     string // "en", "zh"
	Message      string // error_msg
}

// ErrorExamples lists every documented error example, by path, method,
// status and name.
func ErrorExamples() ([]Example, error) {
	doc, err := Document()
	if err != nil {
		return nil, err
	}
	var out []Example
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, ref := range op.Responses.Map() {
				status, err := strconv.Atoi(code)
				if err != nil {
					return nil, fmt.Errorf("openapitest: %s %s: response %q is not a status", method, path, code)
				}
				if status < 400 || ref.Value == nil {
					continue
				}
				for _, mt := range ref.Value.Content {
					for name, ex := range mt.Examples {
						v, _ := ex.Value.Value.(map[string]any)
						c, _ := v["error_code"].(string)
						m, _ := v["error_msg"].(string)
						out = append(out, Example{method, path, status, name, c, exampleLanguage(name), m})
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Example) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method),
			cmp.Compare(a.Status, b.Status), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// withBody returns a copy of req with a fresh reader over body, so that
// validation neither consumes nor changes the caller's request.
func withBody(req *http.Request, body []byte) *http.Request {
	r := req.Clone(context.Background())
	r.ContentLength = int64(len(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r
}

// truncate keeps error texts readable when a body is large.
func truncate(b []byte) []byte {
	const limit = 200
	if len(b) > limit {
		return append(b[:limit:limit], "..."...)
	}
	return b
}
