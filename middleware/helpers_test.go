package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// Exact English and Chinese messages of the codes the middlewares answer.
const (
	msgDevice           = "Device information is incomplete"
	msgDeviceZH         = "设备信息不完整"
	msgClientEmpty      = "clientId cannot be empty"
	msgClientEmptyZH    = "clientId不能为空"
	msgClientUnknown    = "The app is not registered, please register the app first"
	msgClientUnknownZH  = "应用未注册,请先注册应用"
	msgTokenEmpty       = "IdToken cannot be empty"
	msgTokenEmptyZH     = "IdToken不能为空"
	msgTokenInvalid     = "IdToken is invalid or expired"
	msgTokenInvalidZH   = "IdToken无效或已过期"
	msgInternal         = "System busy, please try again later"
	msgInternalZH       = "系统繁忙,请稍后重试"
	msgHeaderRepeated   = "A request header that may appear only once is repeated"
	msgHeaderRepeatedZH = "请求头重复,该请求头只能出现一次"

	codeDevice         = "IDAAS.SDK.PARAM.0001"
	codeClientEmpty    = "IDAAS.SDK.PARAM.0002"
	codeClientUnknown  = "IDAAS.SDK.PARAM.0003"
	codeTokenEmpty     = "IDAAS.SDK.PARAM.0015"
	codeTokenInvalid   = "IDAAS.SDK.PARAM.0016"
	codeInternal       = "IDAAS.SDK.SYS.9001"
	codeHeaderRepeated = "IDAAS.SDK.REQ.9105"
)

// The client and user of the tests.
const (
	testClient = "app-1"
	testUser   = "user-42"
)

// discard is a logger that drops everything.
var discard = slog.New(slog.DiscardHandler)

// deviceHeaders returns a complete, valid set of device headers.
func deviceHeaders() http.Header {
	return http.Header{
		"X-Operating-Sys-Version": {"windows10.1.1"},
		"X-Device-Fingerprint":    {"fp-0123456789abcdef"},
		"X-Agent":                 {"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
		"X-Device-Ip":             {"203.0.113.7"},
	}
}

// newRequest returns a POST request carrying h.
func newRequest(h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/sdk/profile/update-email", nil)
	for k, v := range h {
		r.Header[k] = v
	}
	return r
}

// recorder is a next handler that records whether it ran and with which
// request context. It answers 200 {"ok":true}.
type recorder struct {
	calls atomic.Int32
	ctx   atomic.Pointer[context.Context]
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	ctx := r.Context()
	h.ctx.Store(&ctx)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// context returns the context next saw; it fails the test when next did not
// run.
func (h *recorder) context(t *testing.T) context.Context {
	t.Helper()
	p := h.ctx.Load()
	if p == nil {
		t.Fatal("next handler did not run")
	}
	return *p
}

// serve runs h on r and returns the recorded response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// assertPassed checks that the middleware let the request through to next.
func assertPassed(t *testing.T, w *httptest.ResponseRecorder, next *recorder) {
	t.Helper()
	if w.Code != http.StatusOK || next.calls.Load() != 1 {
		t.Fatalf("got status %d, next called %d times, body %s; want 200 from next", w.Code, next.calls.Load(), w.Body)
	}
}

// assertError checks that the response is exactly the API error code with
// message msg and status, and that next did not run.
func assertError(t *testing.T, w *httptest.ResponseRecorder, next *recorder, status int, code, msg string) {
	t.Helper()
	if next != nil && next.calls.Load() != 0 {
		t.Errorf("next handler ran %d times, want 0", next.calls.Load())
	}
	if w.Code != status {
		t.Errorf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", w.Body, err)
	}
	if len(body) != 2 {
		t.Errorf("body %s has %d fields, want error_code and error_msg only", w.Body, len(body))
	}
	if body["error_code"] != code || body["error_msg"] != msg {
		t.Errorf("body = %s, want error_code %q, error_msg %q", strings.TrimSpace(w.Body.String()), code, msg)
	}
}

// countingRegistry wraps a ClientRegistry and counts lookups.
type countingRegistry struct {
	store.ClientRegistry
	calls atomic.Int32
}

func (r *countingRegistry) Client(ctx context.Context, id string) (store.Client, error) {
	r.calls.Add(1)
	return r.ClientRegistry.Client(ctx, id)
}

// failingRegistry is a registry whose backend is down.
type failingRegistry struct{ err error }

func (r failingRegistry) Client(context.Context, string) (store.Client, error) {
	return store.Client{}, r.err
}

// foldingRegistry finds clients whatever the case of the id, so that the
// client it returns has an ID that differs from the header.
type foldingRegistry struct{ clients map[string]store.Client }

func (r foldingRegistry) Client(_ context.Context, id string) (store.Client, error) {
	if c, ok := r.clients[strings.ToLower(id)]; ok {
		return c, nil
	}
	return store.Client{}, store.ErrNotFound
}

// assertPanics checks that f panics.
func assertPanics(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}

// logSink collects what a logger writes, as JSON lines, at every level.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// logger returns a logger writing to s, with Debug enabled.
func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// text returns everything written so far.
func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// records returns the records written so far, one map per line.
func (s *logSink) records() []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(s.text()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			panic("logSink: " + err.Error())
		}
		out = append(out, rec)
	}
	return out
}

// tokens is the TokenVerifier of the middleware tests: "SUB@CLIENT" signs SUB
// in for the client CLIENT (and only for it), "down" cannot be decided, as
// when no key can be loaded, and anything else is refused.
type tokens struct{}

func (tokens) VerifyToken(_ context.Context, token, clientID string) (middleware.Identity, error) {
	sub, client, ok := strings.Cut(token, "@")
	switch {
	case token == "down":
		return middleware.Identity{}, i18n.Wrap(i18n.CodeInternal, errors.New("no key loaded"))
	case ok && sub != "" && client == clientID:
		return middleware.Identity{Subject: sub}, nil
	}
	return middleware.Identity{}, i18n.Wrap(i18n.CodeTokenInvalid, errors.New("not a token of tokens"))
}

// subjectOf returns the subject of the identity in ctx, or "".
func subjectOf(ctx context.Context) string {
	id, _ := middleware.IdentityFromContext(ctx)
	return id.Subject
}
