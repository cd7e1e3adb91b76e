// Package openapitest checks HTTP exchanges with the package's endpoints
// against its OpenAPI 3.1 document (selfservice.OpenAPI), with kin-openapi's
// request and response validation, so that the document cannot drift from
// what the handlers do. It is for tests only: the library never imports it.
//
// Quick start, in a test that has sent req with body reqBody and read the
// answer:
//
//	openapitest.Check(t, req, reqBody, resp.StatusCode, resp.Header, respBody)
//
// Check fails t (with t.Errorf, so it is safe from any goroutine) when the
// answer breaks the document. The document is loaded and validated once per
// process; Check and Validate are safe for concurrent use.
//
// What is checked, for a request to a path the document describes (other
// paths are ignored):
//
//   - the response, always: its status must be documented for the
//     operation (there is no default response), its documented headers
//     present and valid (Cache-Control, Content-Language, Retry-After on
//     429, Allow on 405, WWW-Authenticate on 401), its Content-Type one the
//     document lists, its body valid against the schema (exactly
//     error_code and error_msg);
//   - a response the document gives no content (the 200) must have an
//     empty body, and the Content-Type its x-content-type extension names;
//   - an error's examples are exhaustive: error_code must be one of the
//     codes the examples of that operation and status show, and when an
//     example of that code exists in the language of Content-Language
//     (example names end in ".en", ".zh"), the body must equal it. Another
//     language (an integrator's own bundle) is only held to the schema;
//   - the request: tests send deliberately bad requests (a missing header,
//     a wrong content type) to see the server's own JSON error, so a request
//     the document refuses is not a failure by itself; it is one when the
//     server answers it with a success, since the server then accepted what
//     the document says it refuses;
//   - a method the document does not list for a path must be answered as
//     the document's 405 for that path.
package openapitest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/netip"
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

	"github.com/ciamkit/selfservice"
)

// ContentTypeExtension names the response extension that states the
// Content-Type of a response without a body (OpenAPI ignores a
// Content-Type entry among a response's headers).
const ContentTypeExtension = "x-content-type"

// spec is the loaded document with what validation needs, built once.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	cache  sync.Map     // cacheKey -> cached: response validation results
	cached atomic.Int64 // entries stored in cache, at most maxCached
}

var load = sync.OnceValues(func() (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(selfservice.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapitest: loading openapi.yaml: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapitest: openapi.yaml is OpenAPI %s, not 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("openapitest: openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapitest: routing openapi.yaml: %w", err)
	}
	return &spec{doc: doc, router: router}, nil
})

// Document returns the embedded document, loaded and validated (examples
// included) once per process. It is shared: do not modify it.
func Document() (*openapi3.T, error) {
	s, err := load()
	if err != nil {
		return nil, err
	}
	return s.doc, nil
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

// Validate returns why one exchange breaks the document (see the package
// comment for the rules), or nil when it conforms or its path is not in
// the document. req.Body is not read: the body is reqBody.
func Validate(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	what := fmt.Sprintf("openapitest: %s %s answered %d", req.Method, req.URL.Path, status)

	route, _, err := s.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return nil
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return s.validateOtherMethod(ctx, what, req, status, header, respBody)
	case err != nil:
		return fmt.Errorf("%s: routing: %w", what, err)
	}

	// Whether the document accepts the request matters only when the
	// server accepted it too: deliberately bad requests are answered with
	// errors, which the response validation below holds to the document.
	if status >= 200 && status < 300 {
		err := openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
			Request: withBody(req, reqBody),
			Route:   route,
			Options: requestOptions,
		})
		if err != nil {
			return fmt.Errorf("%s, but the document refuses the request: %w", what, err)
		}
	}
	if err := s.validateResponse(ctx, route, req.Method, status, header, respBody); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// validateOtherMethod holds an answer to a method the document does not
// list for a documented path to the document's 405 for that path.
func (s *spec) validateOtherMethod(ctx context.Context, what string, req *http.Request, status int, header http.Header, respBody []byte) error {
	var route *routers.Route
	found := s.doc.Paths.Find(req.URL.Path)
	for path, item := range s.doc.Paths.Map() {
		if item != found {
			continue
		}
		ops := item.Operations()
		for _, m := range slices.Sorted(maps.Keys(ops)) {
			if ops[m].Responses.Status(http.StatusMethodNotAllowed) != nil {
				route = &routers.Route{Spec: s.doc, Path: path, PathItem: item, Method: m, Operation: ops[m]}
				break
			}
		}
	}
	if route == nil {
		return fmt.Errorf("%s: the document lists no %s for this path, and no 405 either", what, req.Method)
	}
	if status != http.StatusMethodNotAllowed {
		return fmt.Errorf("%s: the document lists no %s for this path, so the answer must be 405", what, req.Method)
	}
	// The answer is held to the documented operation's 405; a HEAD answer
	// has no body, so only to its headers.
	if err := s.validateResponse(ctx, route, req.Method, status, header, respBody); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// requestOptions validate a request: a Bearer token must be present where
// the document asks for one, and the IP formats are asserted (kin-openapi
// leaves them off by default).
var requestOptions = &openapi3filter.Options{
	MultiError:              true,
	AuthenticationFunc:      bearerPresent,
	SchemaValidationOptions: formats,
}

// formats asserts the document's own format "ip" (X-device-ip: an IPv4
// or IPv6 address, as the server parses it) and the standard IP formats.
// A plain string with a format, rather than anyOf ipv4/ipv6, lets client
// generators give the header a plain string type.
var formats = []openapi3.SchemaValidationOption{
	openapi3.WithStringFormatValidators(map[string]openapi3.StringFormatValidator{
		"ip":   openapi3.NewCallbackValidator(func(s string) error { _, err := netip.ParseAddr(s); return err }),
		"ipv4": openapi3.NewIPValidator(true),
		"ipv6": openapi3.NewIPValidator(false),
	}),
}

// bearerPresent is the AuthenticationFunc of request validation: the
// document's only scheme is an HTTP Bearer id_token, and what can be
// checked without the issuer's keys is that exactly one non-empty token
// is sent.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	ss := in.SecurityScheme
	if ss == nil || ss.Type != "http" || !strings.EqualFold(ss.Scheme, "bearer") {
		return in.NewError(fmt.Errorf("openapitest: unexpected security scheme %q", in.SecuritySchemeName))
	}
	vs := in.RequestValidationInput.Request.Header.Values("Authorization")
	if len(vs) != 1 {
		return in.NewError(fmt.Errorf("%d Authorization headers, want 1", len(vs)))
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vs[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return in.NewError(errors.New("no Bearer token in Authorization"))
	}
	return nil
}

// validateResponse applies kin-openapi's response validation to an answer
// to method on route, and the rules it has no notion of: an empty body
// where no content is documented, and exhaustive error examples. Results
// are cached: suites repeat the same few answers many times, and
// kin-openapi compiles a JSON Schema validator for every value it checks.
func (s *spec) validateResponse(ctx context.Context, route *routers.Route, method string, status int, header http.Header, body []byte) error {
	resp := route.Operation.Responses.Status(status)
	key := cacheKey(route, method, status, resp, header, body)
	if err, ok := s.cache.Load(key); ok {
		return err.(cached).err
	}
	err := validateResponse(ctx, route, method, status, header, body)
	if s.cached.Add(1) <= maxCached {
		s.cache.Store(key, cached{err})
	}
	return err
}

// maxCached bounds the cache of validation results.
const maxCached = 10_000

// cached is an entry of spec.cache (sync.Map cannot store a nil error).
type cached struct{ err error }

// cacheKey names everything a response's validation reads: the operation,
// the method (HEAD answers have no body), the status, the headers the
// document describes for it, Content-Type, Content-Language and the body.
func cacheKey(route *routers.Route, method string, status int, resp *openapi3.ResponseRef, header http.Header, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%d", route.Path, route.Method, method, status)
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

func validateResponse(ctx context.Context, route *routers.Route, method string, status int, header http.Header, body []byte) error {
	req, err := http.NewRequest(method, route.Path, nil)
	if err != nil {
		return err
	}
	if method == http.MethodHead {
		// kin-openapi skips HEAD answers altogether; they are held to
		// the documented operation's headers.
		req.Method = route.Method
	}
	err = openapi3filter.ValidateResponse(ctx, (&openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: requestOptions},
		Status:                 status,
		Header:                 header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus:   true,
			MultiError:              true,
			ExcludeResponseBody:     method == http.MethodHead,
			SchemaValidationOptions: formats,
		},
	}).SetBodyBytes(body))
	if err != nil || method == http.MethodHead {
		return err
	}
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
