// Package handlertest holds what the tests of the middlewares and of the
// id_token verifier share: a complete set of device headers, a next handler
// that records what it saw, assertions on the package's error answers, and
// registries and a log sink to watch the code under test with.
package handlertest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ciamkit/selfservice/store"
)

// Exact English and Chinese messages, and codes, of what the middlewares
// answer.
const (
	MsgDevice           = "Device information is incomplete"
	MsgDeviceZH         = "设备信息不完整"
	MsgClientEmpty      = "clientId cannot be empty"
	MsgClientEmptyZH    = "clientId不能为空"
	MsgClientUnknown    = "The app is not registered, please register the app first"
	MsgClientUnknownZH  = "应用未注册,请先注册应用"
	MsgTokenEmpty       = "IdToken cannot be empty"
	MsgTokenEmptyZH     = "IdToken不能为空"
	MsgTokenInvalid     = "IdToken is invalid or expired"
	MsgTokenInvalidZH   = "IdToken无效或已过期"
	MsgInternal         = "System busy, please try again later"
	MsgInternalZH       = "系统繁忙,请稍后重试"
	MsgHeaderRepeated   = "A request header that may appear only once is repeated"
	MsgHeaderRepeatedZH = "请求头重复,该请求头只能出现一次"

	CodeDevice         = "IDAAS.SDK.PARAM.0001"
	CodeClientEmpty    = "IDAAS.SDK.PARAM.0002"
	CodeClientUnknown  = "IDAAS.SDK.PARAM.0003"
	CodeTokenEmpty     = "IDAAS.SDK.PARAM.0015"
	CodeTokenInvalid   = "IDAAS.SDK.PARAM.0016"
	CodeInternal       = "IDAAS.SDK.SYS.9001"
	CodeHeaderRepeated = "IDAAS.SDK.REQ.9105"
)

// DeviceHeaders returns a complete, valid set of device headers.
func DeviceHeaders() http.Header {
	return http.Header{
		"X-Operating-Sys-Version": {"windows10.1.1"},
		"X-Device-Fingerprint":    {"fp-0123456789abcdef"},
		"X-Agent":                 {"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
		"X-Device-Ip":             {"203.0.113.7"},
	}
}

// NewRequest returns a POST request carrying h.
func NewRequest(h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v2/sdk/profile/update-email", nil)
	for k, v := range h {
		r.Header[k] = v
	}
	return r
}

// Recorder is a next handler that records whether it ran and with which
// request context. It answers 200 {"ok":true}.
type Recorder struct {
	calls atomic.Int32
	ctx   atomic.Pointer[context.Context]
}

// ServeHTTP records the call.
func (h *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	ctx := r.Context()
	h.ctx.Store(&ctx)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// Calls returns how many times the handler ran.
func (h *Recorder) Calls() int { return int(h.calls.Load()) }

// Context returns the context the handler saw; it fails t when the handler
// did not run.
func (h *Recorder) Context(t testing.TB) context.Context {
	t.Helper()
	p := h.ctx.Load()
	if p == nil {
		t.Fatal("next handler did not run")
	}
	return *p
}

// Serve runs h on r and returns the recorded response.
func Serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// AssertPassed checks that the request went through to next.
func AssertPassed(t testing.TB, w *httptest.ResponseRecorder, next *Recorder) {
	t.Helper()
	if w.Code != http.StatusOK || next.Calls() != 1 {
		t.Fatalf("got status %d, next called %d times, body %s; want 200 from next", w.Code, next.Calls(), w.Body)
	}
}

// AssertError checks that the response is exactly the API error code with
// message msg and status, not cacheable, and that next (when given) did not
// run.
func AssertError(t testing.TB, w *httptest.ResponseRecorder, next *Recorder, status int, code, msg string) {
	t.Helper()
	if next != nil && next.Calls() != 0 {
		t.Errorf("next handler ran %d times, want 0", next.Calls())
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

// AssertPanics checks that f panics.
func AssertPanics(t testing.TB, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}

// CountingRegistry wraps a ClientRegistry and counts lookups.
type CountingRegistry struct {
	store.ClientRegistry
	calls atomic.Int32
}

// Client counts the lookup and asks the wrapped registry.
func (r *CountingRegistry) Client(ctx context.Context, id string) (store.Client, error) {
	r.calls.Add(1)
	return r.ClientRegistry.Client(ctx, id)
}

// Calls returns how many lookups there were.
func (r *CountingRegistry) Calls() int { return int(r.calls.Load()) }

// FailingRegistry is a registry whose backend is down: every lookup
// returns Err.
type FailingRegistry struct{ Err error }

// Client returns r.Err.
func (r FailingRegistry) Client(context.Context, string) (store.Client, error) {
	return store.Client{}, r.Err
}

// LogSink collects what a logger writes, as JSON lines, at every level.
type LogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// Logger returns a logger writing to s, with Debug enabled.
func (s *LogSink) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Text returns everything written so far.
func (s *LogSink) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Records returns the records written so far, one map per line.
func (s *LogSink) Records() []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(s.Text()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			panic("LogSink: " + err.Error())
		}
		out = append(out, rec)
	}
	return out
}
