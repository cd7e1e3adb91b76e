// Command huma serves the self-service API as two huma v2 operations that
// call the package's Go-level API, Service.SendCode and Service.UpdateEmail:
// huma routes, decodes and validates typed inputs and documents both
// operations in its OpenAPI (/openapi.json, /docs); the package's HTTP
// handlers are not used.
//
//	go run ./huma [-addr 127.0.0.1:8084]
//
// Every answer is the package's: the status of the error's code, exactly
// its {"error_code","error_msg"} body in the request's language, and its
// headers (Cache-Control: no-store, Content-Language, Retry-After on a 429,
// WWW-Authenticate on PARAM.9204); a success is 200 with
// Content-Type: application/json and no body. Three pieces make it so:
//
//   - apiError, which the operations return, is a huma.StatusError and a
//     huma.HeadersError whose JSON is the package's body;
//   - huma.NewErrorWithContext is replaced, for these two operations only,
//     so that what huma refuses by itself (a body too large, not JSON, not
//     the schema's) is answered IDAAS.SDK.REQ.9103, 9102 or 9104;
//   - huma routes POST only, so every other method at the two paths is
//     routed, on the same ServeMux, to the package's exported guard
//     (middleware.AllowMethods behind middleware.Localize), which answers
//     its 405 with Allow: POST.
//
// The order of checks differs from the package's handlers in one way: huma
// reads, decodes and validates the body before the handler runs, so a body
// fault is answered before the client id and the token are checked (the
// device headers, a repeated header and the Content-Type are checked by a
// huma resolver, which runs first).
package main

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demo"
	"github.com/ciamkit/selfservice/i18n"
	ssmw "github.com/ciamkit/selfservice/middleware"
)

func main() {
	demo.Main("huma", "127.0.0.1:8084", newAPI)
}

// defaultMaxBodyBytes is the default of selfservice.Config.MaxBodyBytes.
const defaultMaxBodyBytes = 4096

// front is what the operations need besides the Service: the settings of
// the Config it was built from that its HTTP handlers apply and the Go
// API leaves to its caller.
type front struct {
	svc    *selfservice.Service
	bundle *i18n.Bundle
	logger *slog.Logger
}

// frontKey is where an operation's Metadata holds its front, for the
// resolver and the error constructor, which huma gives no other way in.
const frontKey = "selfservice.front"

func frontOf(op *huma.Operation) *front {
	if op == nil {
		return nil
	}
	f, _ := op.Metadata[frontKey].(*front)
	return f
}

// newAPI returns a ServeMux serving the two operations, registered with
// huma for svc, which was built from cfg, and huma's OpenAPI and docs.
func newAPI(svc *selfservice.Service, cfg selfservice.Config) http.Handler {
	f := &front{svc: svc, bundle: cfg.Bundle, logger: cfg.Logger}
	if f.bundle == nil {
		f.bundle = i18n.Default()
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody == 0 {
		maxBody = defaultMaxBodyBytes
	}

	mux := http.NewServeMux()
	config := huma.DefaultConfig("Self-service email change", "2.0.0")
	// No $schema links: the package's answers carry none, and a body's
	// $schema member, which the links make huma accept, is one the
	// package refuses.
	config.CreateHooks = nil
	config.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"idToken": {Type: "http", Scheme: "bearer", BearerFormat: "JWT", Description: "The user's OpenID Connect id_token, issued to X-client-id."},
	}
	api := humago.New(mux, config)
	errSchema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[errorBody](), true, "Error")
	operation := func(id, path, summary string) huma.Operation {
		return huma.Operation{
			OperationID:   id,
			Method:        http.MethodPost,
			Path:          path,
			Summary:       summary,
			DefaultStatus: http.StatusOK,
			MaxBodyBytes:  maxBody,
			Responses: map[string]*huma.Response{"default": {
				Description: "The package's error: the status of error_code, error_msg in the language of X-L.",
				Content:     map[string]*huma.MediaType{"application/json": {Schema: errSchema}},
			}},
			Metadata: map[string]any{frontKey: f},
		}
	}
	huma.Register(api, operation("send-code", selfservice.SendCodePath, "Mail a verification code to a new address"), f.sendCode)
	update := operation("update-email", selfservice.UpdateEmailPath, "Change the signed-in user's email")
	update.Security = []map[string][]string{{"idToken": {}}}
	huma.Register(api, update, f.updateEmail)

	// huma registered "POST <path>"; the method-less patterns take every
	// other method, so the guard never lets a request through.
	guard := ssmw.Localize(f.bundle)(ssmw.AllowMethods(http.MethodPost)(http.NotFoundHandler()))
	mux.Handle(selfservice.SendCodePath, guard)
	mux.Handle(selfservice.UpdateEmailPath, guard)
	return mux
}

// CallerHeaders are the request headers both operations read, huma
// parameters so that its OpenAPI documents them. None is marked required,
// and none has a length limit, so that huma never refuses them with its
// own 422: the Go API (or Resolve) answers a missing or bad one, as the
// package does.
type CallerHeaders struct {
	OSVersion      string `header:"X-operating-sys-version" doc:"Required: the client's operating system and version; at most 128 bytes." example:"windows10.1.1"`
	Fingerprint    string `header:"X-device-fingerprint" doc:"Required: the device's fingerprint; at most 256 bytes." example:"156aysdna213sc50"`
	Agent          string `header:"X-agent" doc:"Required: the client's user agent; at most 512 bytes." example:"app/1.0"`
	DeviceIP       string `header:"X-device-ip" doc:"The client's address as it sees it; recorded, never trusted. When present, an IPv4 or IPv6 address." example:"192.168.1.2"`
	ClientID       string `header:"X-client-id" doc:"Required: the registered application's id." example:"demo-app"`
	Lang           string `header:"X-L" doc:"The language of error_msg: en or zh (zh-CN, zh_CN, en-US...)." example:"zh"`
	AcceptLanguage string `header:"Accept-Language" doc:"The language of error_msg when X-L is absent or unknown."`

	// Resolve sets these from what the typed fields cannot tell: the
	// connection's address and whether a header came more than once.
	caller       selfservice.Caller
	locale       *i18n.Locale
	authRepeated bool
}

// Resolve runs the checks of the package's middleware chain that need no
// store, through Service.CallerOf (X-L once, the device headers, X-client-id
// once, the client IP as Config.ClientIP gives it: humago.Unwrap hands over
// the *http.Request), then the Content-Type.
func (c *CallerHeaders) Resolve(ctx huma.Context) []error {
	f := frontOf(ctx.Operation())
	r, _ := humago.Unwrap(ctx)
	caller, err := f.svc.CallerOf(r)
	c.locale = f.bundle.Match(caller.Language.String(), "")
	if err != nil {
		return []error{f.fail(c.locale, err)}
	}
	if !isJSON(ctx.Header("Content-Type")) {
		return []error{f.fail(c.locale, i18n.CodeContentType)}
	}
	c.caller = caller
	c.authRepeated = len(r.Header.Values("Authorization")) > 1
	return nil
}

// isJSON reports whether a Content-Type is one the package takes:
// application/json with at most a charset=utf-8 parameter. huma would take
// any JSON type, with any charset, or none.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// SendCodeBody is the body of send-code. The members are optional to huma:
// the Go API answers a missing one as empty, with the member's own code.
type SendCodeBody struct {
	Email        string `json:"email" required:"false" doc:"The address to mail the code to, as the user typed it." example:"new.address@example.com"`
	Type         string `json:"type" required:"false" doc:"What the code is for; only UPDATE_EMAIL_EMS." example:"UPDATE_EMAIL_EMS"`
	CaptchaToken string `json:"captcha_token" required:"false" doc:"The captcha service's token." example:"dev"`
}

// UpdateEmailBody is the body of update-email.
type UpdateEmailBody struct {
	Email      string `json:"email" required:"false" doc:"The new address, as the user typed it." example:"new.address@example.com"`
	VerifyCode string `json:"verify_code" required:"false" doc:"The code mailed to email." example:"123456"`
}

type sendCodeInput struct {
	CallerHeaders
	Body SendCodeBody
}

type updateEmailInput struct {
	CallerHeaders
	Authorization string `header:"Authorization" doc:"Bearer <id_token>." example:"Bearer eyJ..."`
	Body          UpdateEmailBody
}

// success is the answer of a request that succeeded, as the package's:
// 200, Content-Type: application/json and no body.
type success struct {
	ContentType     string `header:"Content-Type"`
	CacheControl    string `header:"Cache-Control"`
	ContentLanguage string `header:"Content-Language"`
}

// errorBody is the package's error, for huma's OpenAPI; apiError writes it.
type errorBody struct {
	ErrorCode string `json:"error_code" doc:"The stable code, such as IDAAS.SDK.CAPTCHA.0007." example:"IDAAS.SDK.CAPTCHA.0007"`
	ErrorMsg  string `json:"error_msg" doc:"The message, in the language of X-L." example:"Incorrect verification code"`
}

func (f *front) sendCode(ctx context.Context, in *sendCodeInput) (*success, error) {
	err := f.svc.SendCode(ctx, selfservice.SendCodeRequest{
		Caller:       in.caller,
		Email:        in.Body.Email,
		Type:         in.Body.Type,
		CaptchaToken: in.Body.CaptchaToken,
	})
	return f.answer(ctx, in.locale, err)
}

func (f *front) updateEmail(ctx context.Context, in *updateEmailInput) (*success, error) {
	if in.authRepeated {
		return f.answer(ctx, in.locale, i18n.CodeHeaderRepeated)
	}
	err := f.svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{
		Caller:     in.caller,
		IDToken:    bearerToken(in.Authorization),
		Email:      in.Body.Email,
		VerifyCode: in.Body.VerifyCode,
	})
	return f.answer(ctx, in.locale, err)
}

// bearerToken returns the token of "Bearer <token>" (the scheme in any
// case), or "" for any other authorization, which the Go API answers
// IDAAS.SDK.PARAM.0015.
func bearerToken(auth string) string {
	auth = strings.TrimSpace(auth)
	i := strings.IndexAny(auth, " \t")
	if i < 0 || !strings.EqualFold(auth[:i], "Bearer") {
		return ""
	}
	return strings.TrimSpace(auth[i:])
}

func (f *front) answer(ctx context.Context, loc *i18n.Locale, err error) (*success, error) {
	if err == nil {
		return &success{ContentType: "application/json", CacheControl: "no-store", ContentLanguage: loc.ContentLanguage()[0]}, nil
	}
	e := f.fail(loc, err)
	if e.GetStatus() >= http.StatusInternalServerError {
		f.logger.ErrorContext(ctx, "selfservice: request failed", "error", err)
	}
	return nil, e
}

// apiError is a failure as the package answers it. huma writes it as it
// is: GetStatus is the status of its code, GetHeaders the package's
// headers, MarshalJSON the package's body in the request's language, and
// ContentType keeps application/json whatever the request's Accept.
type apiError struct {
	err    *i18n.Error
	body   []byte
	header http.Header
}

// fail returns err as the package answers it in the language loc.
func (f *front) fail(loc *i18n.Locale, err error) *apiError {
	e := i18n.ErrorOf(err)
	h := http.Header{
		"Cache-Control":    {"no-store"},
		"Content-Language": {loc.ContentLanguage()[0]},
	}
	if e.RetryAfter > 0 {
		// Whole seconds, rounded up, as the package writes them.
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	if c := f.svc.Failure(e, loc.Tag()).Challenge; c != "" {
		h.Set("WWW-Authenticate", c)
	}
	return &apiError{err: e, body: loc.ErrorBody(e.Code), header: h}
}

func (e *apiError) Error() string                { return e.err.Error() }
func (e *apiError) Unwrap() error                { return e.err }
func (e *apiError) GetStatus() int               { return e.err.Code.Status() }
func (e *apiError) GetHeaders() http.Header      { return e.header }
func (e *apiError) MarshalJSON() ([]byte, error) { return e.body, nil }
func (e *apiError) ContentType(string) string    { return "application/json" }

var (
	_ huma.StatusError       = (*apiError)(nil)
	_ huma.HeadersError      = (*apiError)(nil)
	_ huma.ContentTypeFilter = (*apiError)(nil)
	_ huma.Resolver          = (*CallerHeaders)(nil)
)

// huma builds the errors it answers by itself (and the resolver's) with
// NewErrorWithContext, a package variable: it is replaced once, before any
// API exists, and hands the operations of other APIs back to huma's own.
func init() {
	next := huma.NewErrorWithContext
	huma.NewErrorWithContext = func(ctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
		var f *front
		if ctx != nil {
			f = frontOf(ctx.Operation())
		}
		if f == nil {
			return next(ctx, status, msg, errs...)
		}
		e := f.refused(ctx, status, msg, errs)
		// huma reads no headers off the errors it builds: set them here.
		for k, vs := range e.header {
			ctx.SetHeader(k, vs[0])
		}
		return e
	}
}

// refused returns the answer of a request huma refused before the handler
// ran: the resolver's error when it found one, else the package's code for
// what huma found wrong with the body.
func (f *front) refused(ctx huma.Context, status int, msg string, errs []error) *apiError {
	for _, err := range errs {
		if e, ok := errors.AsType[*apiError](err); ok {
			return e
		}
	}
	var code i18n.Code
	switch status {
	case http.StatusRequestEntityTooLarge:
		code = i18n.CodeBodyTooLarge
	case http.StatusUnsupportedMediaType:
		code = i18n.CodeContentType
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		code = i18n.CodeBodyMalformed
	default:
		code = i18n.CodeInternal
		f.logger.ErrorContext(ctx.Context(), "selfservice: huma failed", "status", status, "error", errors.Join(append([]error{errors.New(msg)}, errs...)...))
	}
	loc := f.bundle.DefaultLocale()
	xl := 0
	ctx.EachHeader(func(name, _ string) {
		if http.CanonicalHeaderKey(name) == "X-L" {
			xl++
		}
	})
	if xl <= 1 {
		loc = f.bundle.Match(ctx.Header("X-L"), ctx.Header("Accept-Language"))
	}
	return f.fail(loc, code)
}
