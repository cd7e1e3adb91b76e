package selfservice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

// ScopeName is the instrumentation scope of the Service's meter and tracer:
// the package's import path, as OpenTelemetry asks of libraries.
const ScopeName = "github.com/ciamkit/selfservice"

// The values of the "operation" attribute of selfservice.request.duration.
const (
	opSendCode    = "send_code"
	opUpdateEmail = "update_email"
	opRevertEmail = "revert_email"
)

// The values of the "reason" attribute of selfservice.notice.failed.
const (
	// noticeSendFailed: an attempt failed; the notice is retried.
	noticeSendFailed = "send_failed"
	// noticeExpired: the notice was given up after NoticeMaxAge.
	noticeExpired = "expired"
)

// dependencyDescription describes selfservice.dependency.duration, which
// package idtoken records too (its JWKS fetches), in words it repeats: one
// metric of two scopes must describe itself alike to be exported as one.
const dependencyDescription = "Duration of calls to dependencies: the stores, the mailer, the captcha verifier and the JWKS."

// durationBuckets are the histograms' bucket bounds in seconds, from under
// 100 µs (an in-memory store, a Redis on the same host) to the seconds of
// a mail server or a JWKS that hangs. OpenTelemetry's default bounds are
// meant for milliseconds.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// telemetry holds the Service's instruments and tracer, and every attribute
// set they record with, built once in New: recording allocates nothing.
// With the global providers and no SDK installed, each instrument is a no-op
// whose Enabled is false and no context carries a sampled span, so a request
// pays for those checks only, tens of nanoseconds per dependency call.
type telemetry struct {
	// off: both providers are OpenTelemetry's no-op ones, given
	// explicitly, so nothing is wrapped at all. untraced: the tracer
	// provider is, so no context is searched for a span.
	off, untraced bool
	// unsetGlobal is the global tracer provider as OpenTelemetry hands it
	// out before an SDK is installed, when that is the Service's: while
	// otel.GetTracerProvider still returns it, no span can be recorded.
	unsetGlobal trace.TracerProvider

	meter           metric.Meter
	tracer          trace.Tracer
	requestDuration metric.Float64Histogram
	dependency      metric.Float64Histogram
	codesSent       metric.Int64Counter
	codesRejected   metric.Int64Counter
	emailChanged    metric.Int64Counter
	budgetRefused   metric.Int64Counter
	noticeFailed    metric.Int64Counter
	noticeSent      metric.Int64Counter
	emailReverted   metric.Int64Counter

	sendCode, updateEmail, revertEmail *operationTelemetry
	budgets                            map[string][]metric.AddOption
	notices                            map[string][]metric.AddOption

	users struct {
		user, updateEmail, changeEmail, revertEmail *dependencyCall
	}
	outbox struct {
		lease, retry, delete, backlog *dependencyCall
	}
	codes   struct{ put, verify, check *dependencyCall }
	limiter struct{ reserve, cancel, reserveAll, cancelAll *dependencyCall }
	clients struct{ client *dependencyCall }
	mailer  struct{ send *dependencyCall }
	captcha struct{ verify *dependencyCall }
}

// operationTelemetry is what one operation's requests are recorded with:
// an attribute set for success, one per code of the catalog, and one per
// status class for any other code.
type operationTelemetry struct {
	ok     []metric.RecordOption
	byCode map[i18n.Code][]metric.RecordOption
	other  [6][]metric.RecordOption
}

// dependencyCall is one method of one dependency: its span's name and
// options, its attribute sets, and the errors that are answers rather than
// failures (store.ErrNotFound from UserStore.User, ...).
type dependencyCall struct {
	span     string
	start    []trace.SpanStartOption
	ok, fail []metric.RecordOption
	answers  []error
}

func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) *telemetry {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	meter := mp.Meter(ScopeName)
	t := &telemetry{meter: meter, tracer: tp.Tracer(ScopeName)}
	_, unmetered := mp.(metricnoop.MeterProvider)
	_, t.untraced = tp.(tracenoop.TracerProvider)
	t.off = unmetered && t.untraced
	if isUnsetGlobal(tp) {
		t.unsetGlobal = tp
	}
	var errs []error
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, desc, unit string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return c
	}
	t.requestDuration = histogram("selfservice.request.duration",
		"Duration of send-code and update-email requests, middlewares included, by outcome.")
	t.dependency = histogram("selfservice.dependency.duration", dependencyDescription)
	t.codesSent = counter("selfservice.codes.sent", "Verification codes stored and handed to the Mailer.", "{code}")
	t.codesRejected = counter("selfservice.codes.rejected", "Verification codes checked and found wrong, expired, used or dead.", "{code}")
	t.emailChanged = counter("selfservice.email.changed", "Email changes committed.", "{change}")
	t.budgetRefused = counter("selfservice.budget.refused", "Sends and codes refused by a budget, by budget.", "{refusal}")
	t.noticeFailed = counter("selfservice.notice.failed",
		"Notices to the old address not sent: attempts that failed (retried) and notices given up, by reason.", "{notice}")
	t.noticeSent = counter("selfservice.notice.delivered", "Notices to the old address delivered to the Mailer.", "{notice}")
	t.emailReverted = counter("selfservice.email.reverted", "Changes of email undone with the token of their notice.", "{change}")
	if err := errors.Join(errs...); err != nil {
		// The instruments returned with an error still work (the SDK
		// names the problem); OpenTelemetry's handler reports it.
		otel.Handle(err)
	}

	t.sendCode = newOperationTelemetry(opSendCode)
	t.updateEmail = newOperationTelemetry(opUpdateEmail)
	t.revertEmail = newOperationTelemetry(opRevertEmail)
	t.budgets = make(map[string][]metric.AddOption)
	for _, b := range []string{BudgetSendsPerEmail, BudgetSendsPerIP, BudgetWrongCodesPerUser, BudgetWrongCodesPerIP,
		BudgetChangesPerUser, BudgetRevertsPerIP} {
		t.budgets[b] = addOptions(attribute.String("budget", b))
	}
	t.notices = map[string][]metric.AddOption{
		noticeSendFailed: addOptions(attribute.String("reason", noticeSendFailed)),
		noticeExpired:    addOptions(attribute.String("reason", noticeExpired)),
	}
	t.users.user = newDependencyCall("users", "User", store.ErrNotFound)
	t.users.updateEmail = newDependencyCall("users", "UpdateEmail", store.ErrNotFound, store.ErrEmailExists)
	t.users.changeEmail = newDependencyCall("users", "ChangeEmail", store.ErrNotFound, store.ErrEmailExists, store.ErrChangeLocked)
	t.users.revertEmail = newDependencyCall("users", "RevertEmail", store.ErrRevertInvalid, store.ErrEmailExists)
	t.outbox.lease = newDependencyCall("outbox", "LeaseNotices")
	t.outbox.retry = newDependencyCall("outbox", "RetryNotice")
	t.outbox.delete = newDependencyCall("outbox", "DeleteNotice")
	t.outbox.backlog = newDependencyCall("outbox", "NoticeBacklog")
	t.codes.put = newDependencyCall("codes", "Put")
	t.codes.verify = newDependencyCall("codes", "Verify", store.ErrCodeInvalid)
	t.limiter.reserve = newDependencyCall("limiter", "Reserve", store.ErrRateLimited)
	t.limiter.cancel = newDependencyCall("limiter", "Cancel")
	t.limiter.reserveAll = newDependencyCall("limiter", "ReserveAll", store.ErrRateLimited)
	t.limiter.cancelAll = newDependencyCall("limiter", "CancelAll")
	t.codes.check = newDependencyCall("codes", "CheckCode", store.ErrCodeInvalid, store.ErrRateLimited)
	t.clients.client = newDependencyCall("clients", "Client", store.ErrNotFound)
	t.mailer.send = newDependencyCall("mailer", "Send")
	t.captcha.verify = newDependencyCall("captcha", "VerifyCaptcha", ErrCaptchaRejected)
	return t
}

func addOptions(attrs ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

func recordOptions(attrs ...attribute.KeyValue) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

func newOperationTelemetry(op string) *operationTelemetry {
	o := &operationTelemetry{byCode: make(map[i18n.Code][]metric.RecordOption)}
	operation := attribute.String("operation", op)
	o.ok = recordOptions(operation, attribute.String("status_class", "2xx"))
	for _, c := range i18n.Codes() {
		o.byCode[c] = recordOptions(operation, attribute.String("error_code", string(c)), statusClass(c.Status()))
	}
	for class := range o.other {
		o.other[class] = recordOptions(operation, attribute.String("error_code", "other"), statusClass(class*100))
	}
	return o
}

func statusClass(status int) attribute.KeyValue {
	return attribute.String("status_class", fmt.Sprintf("%dxx", status/100))
}

// options returns the attribute set of an outcome: the code answered, if
// any, and the HTTP status it was answered with. A code outside the catalog
// (an application's TokenVerifier may have its own) is "other", so that
// no caller can grow the number of series.
func (o *operationTelemetry) options(code i18n.Code, status int) []metric.RecordOption {
	if code == "" && status < http.StatusBadRequest {
		return o.ok
	}
	if opts, ok := o.byCode[code]; ok {
		return opts
	}
	return o.other[min(max(status/100, 0), len(o.other)-1)]
}

func newDependencyCall(dependency, operation string, answers ...error) *dependencyCall {
	dep, op := attribute.String("dependency", dependency), attribute.String("operation", operation)
	return &dependencyCall{
		span:    dependency + "." + operation,
		start:   []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(dep, op)},
		ok:      recordOptions(dep, op, attribute.Bool("error", false)),
		fail:    recordOptions(dep, op, attribute.Bool("error", true)),
		answers: answers,
	}
}

// call is one dependency call in flight: its context (the span's, when
// there is one), its span and when it started, each only when recorded.
type call struct {
	ctx      context.Context
	d        *dependencyCall
	span     trace.Span
	start    time.Time
	recorded bool // timed or traced
}

// begin starts a call of d. It is timed when the histogram is enabled, and
// traced when the context carries a sampled span, the request's (otelhttp's,
// the integrator's own): a span of a dependency call with no request span
// to belong to would be a root of its own in a trace backend, and an
// application without tracing then pays one context lookup, not a span.
func (t *telemetry) begin(ctx context.Context, d *dependencyCall) call {
	c := call{ctx: ctx, d: d}
	if t.dependency.Enabled(ctx) {
		c.start, c.recorded = time.Now(), true
	}
	if t.tracing() && trace.SpanContextFromContext(ctx).IsSampled() {
		c.ctx, c.span = t.tracer.Start(ctx, d.span, d.start...)
		c.recorded = true
	}
	return c
}

// tracing reports whether a span could be recorded at all. The metric
// API's instruments have Enabled for this; the trace API (v1.47) has no
// Tracer.Enabled yet, and looking for a span in the context is most of
// what the instrumentation costs a request when nothing is installed (a
// context made by context.WithoutCancel even allocates on every lookup).
// So the lookup is skipped while the provider is the global one and no
// SDK has been installed there: otel.GetTracerProvider then still returns
// the placeholder it returned to New.
func (t *telemetry) tracing() bool {
	return !t.untraced && (t.unsetGlobal == nil || otel.GetTracerProvider() != t.unsetGlobal)
}

// isUnsetGlobal reports whether tp is OpenTelemetry's placeholder global
// provider, which otel.GetTracerProvider returns until SetTracerProvider
// is called. Should a later version name it otherwise, the answer is
// false and every call is looked up in its context: slower, still right.
func isUnsetGlobal(tp trace.TracerProvider) bool {
	typ := reflect.TypeOf(tp)
	return typ != nil && typ.Kind() == reflect.Pointer && typ.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global"
}

// end records the call's outcome, if the call is recorded at all; kept
// small enough to be inlined.
func (t *telemetry) end(c call, err error) {
	if c.recorded {
		t.record(c, err)
	}
}

// record records a call that returned err, which fails the call unless it
// is one of the dependency's answers (not found, code invalid, rate
// limited, ...). The span's status carries no text: a mail server's or a
// store's error may quote an address; error.type names the error's Go type
// instead.
func (t *telemetry) record(c call, err error) {
	failed := err != nil
	for _, a := range c.d.answers {
		if failed && errors.Is(err, a) {
			failed = false
			break
		}
	}
	if !c.start.IsZero() {
		opts := c.d.ok
		if failed {
			opts = c.d.fail
		}
		t.dependency.Record(c.ctx, time.Since(c.start).Seconds(), opts...)
	}
	if c.span != nil {
		if failed {
			c.span.SetStatus(codes.Error, "")
			c.span.SetAttributes(attribute.String("error.type", errorType(err)))
		}
		c.span.End()
	}
}

// errorType names err by its Go type, unwrapped to the cause: low in
// cardinality and free of personal data, unlike its text.
func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return fmt.Sprintf("%T", err)
		}
		err = next
	}
}

// startOperation returns when a Go-level operation starts, or the zero time
// when its duration is not recorded.
func (t *telemetry) startOperation(ctx context.Context) time.Time {
	if t.requestDuration.Enabled(ctx) {
		return time.Now()
	}
	return time.Time{}
}

// endOperation records a Go-level operation that started at start and
// returned *err.
func (t *telemetry) endOperation(ctx context.Context, op *operationTelemetry, start time.Time, err *error) {
	if !start.IsZero() {
		t.recordOperation(ctx, op, start, *err)
	}
}

func (t *telemetry) recordOperation(ctx context.Context, op *operationTelemetry, start time.Time, err error) {
	var code i18n.Code
	status := http.StatusOK
	if e := i18n.ErrorOf(err); e != nil {
		code, status = e.Code, e.Code.Status()
	}
	t.requestDuration.Record(ctx, time.Since(start).Seconds(), op.options(code, status)...)
}

// instrumentEndpoint returns next timed as op: the whole endpoint, the
// middleware chain included (a refused token is answered there), by the
// code the client was answered with.
func (t *telemetry) instrumentEndpoint(op *operationTelemetry, next http.Handler) http.Handler {
	if t.off {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !t.requestDuration.Enabled(ctx) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		ow := &outcomeWriter{ResponseWriter: w}
		next.ServeHTTP(ow, r)
		if ow.status == 0 {
			ow.status = http.StatusOK
		}
		t.requestDuration.Record(ctx, time.Since(start).Seconds(), op.options(ow.code, ow.status)...)
	})
}

// outcomeWriter notes the status and the error_code of an answer. Every
// failure, the middlewares' and the handlers', is written by
// middleware.WriteError as {"error_code":"...",...} in one Write, so the
// code is read there rather than passed along by every writer of errors.
type outcomeWriter struct {
	http.ResponseWriter
	status int
	code   i18n.Code
}

func (w *outcomeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *outcomeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= http.StatusBadRequest && w.code == "" {
		w.code = errorCodeOf(p)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *outcomeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// catalogCodes finds a catalog code from its bytes without a copy.
var catalogCodes = func() map[string]i18n.Code {
	m := make(map[string]i18n.Code)
	for _, c := range i18n.Codes() {
		m[string(c)] = c
	}
	return m
}()

// errorCodeOf returns the catalog code an error body names, or "".
func errorCodeOf(body []byte) i18n.Code {
	prefix := []byte(`{"error_code":"`)
	if !bytes.HasPrefix(body, prefix) {
		return ""
	}
	rest := body[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return catalogCodes[string(rest[:end])]
}

// The instrumented dependencies: each call goes through begin and end.

type instrumentedUsers struct {
	next store.ChangeStore
	t    *telemetry
}

func (u *instrumentedUsers) User(ctx context.Context, id string) (store.User, error) {
	c := u.t.begin(ctx, u.t.users.user)
	user, err := u.next.User(c.ctx, id)
	u.t.end(c, err)
	return user, err
}

func (u *instrumentedUsers) UpdateEmail(ctx context.Context, id, email, canonical string) error {
	c := u.t.begin(ctx, u.t.users.updateEmail)
	err := u.next.UpdateEmail(c.ctx, id, email, canonical)
	u.t.end(c, err)
	return err
}

func (u *instrumentedUsers) ChangeEmail(ctx context.Context, ch store.EmailChange) error {
	c := u.t.begin(ctx, u.t.users.changeEmail)
	err := u.next.ChangeEmail(c.ctx, ch)
	u.t.end(c, err)
	return err
}

func (u *instrumentedUsers) RevertEmail(ctx context.Context, r store.EmailRevert) (store.Reverted, error) {
	c := u.t.begin(ctx, u.t.users.revertEmail)
	done, err := u.next.RevertEmail(c.ctx, r)
	u.t.end(c, err)
	return done, err
}

func (u *instrumentedUsers) LeaseNotices(ctx context.Context, max int, now time.Time, lease time.Duration) ([]store.Notice, error) {
	c := u.t.begin(ctx, u.t.outbox.lease)
	ns, err := u.next.LeaseNotices(c.ctx, max, now, lease)
	u.t.end(c, err)
	return ns, err
}

func (u *instrumentedUsers) RetryNotice(ctx context.Context, id string, at time.Time) error {
	c := u.t.begin(ctx, u.t.outbox.retry)
	err := u.next.RetryNotice(c.ctx, id, at)
	u.t.end(c, err)
	return err
}

func (u *instrumentedUsers) DeleteNotice(ctx context.Context, id string) error {
	c := u.t.begin(ctx, u.t.outbox.delete)
	err := u.next.DeleteNotice(c.ctx, id)
	u.t.end(c, err)
	return err
}

func (u *instrumentedUsers) NoticeBacklog(ctx context.Context) (int, time.Time, error) {
	c := u.t.begin(ctx, u.t.outbox.backlog)
	n, oldest, err := u.next.NoticeBacklog(c.ctx)
	u.t.end(c, err)
	return n, oldest, err
}

type instrumentedCodes struct {
	next store.CodeStore
	t    *telemetry
}

func (s *instrumentedCodes) Put(ctx context.Context, key store.CodeKey, hash []byte, expiresAt time.Time) error {
	c := s.t.begin(ctx, s.t.codes.put)
	err := s.next.Put(c.ctx, key, hash, expiresAt)
	s.t.end(c, err)
	return err
}

func (s *instrumentedCodes) Verify(ctx context.Context, key store.CodeKey, hashes [][]byte, maxTries int, now time.Time) error {
	c := s.t.begin(ctx, s.t.codes.verify)
	err := s.next.Verify(c.ctx, key, hashes, maxTries, now)
	s.t.end(c, err)
	return err
}

// instrumentedChecker is instrumentedCodes of a store.CodeChecker.
type instrumentedChecker struct {
	instrumentedCodes
	checker store.CodeChecker
}

func (s *instrumentedChecker) SharesBudgets(l store.Limiter) bool { return s.checker.SharesBudgets(l) }

func (s *instrumentedChecker) CheckCode(ctx context.Context, cc store.CodeCheck) ([]string, error) {
	c := s.t.begin(ctx, s.t.codes.check)
	kept, err := s.checker.CheckCode(c.ctx, cc)
	s.t.end(c, err)
	return kept, err
}

type instrumentedLimiter struct {
	next store.Limiter
	t    *telemetry
}

func (l *instrumentedLimiter) Reserve(ctx context.Context, key string, limits []store.Limit, now time.Time) (string, error) {
	c := l.t.begin(ctx, l.t.limiter.reserve)
	id, err := l.next.Reserve(c.ctx, key, limits, now)
	l.t.end(c, err)
	return id, err
}

func (l *instrumentedLimiter) Cancel(ctx context.Context, key, id string) error {
	c := l.t.begin(ctx, l.t.limiter.cancel)
	err := l.next.Cancel(c.ctx, key, id)
	l.t.end(c, err)
	return err
}

// instrumentedBatch is instrumentedLimiter of a store.BatchLimiter.
type instrumentedBatch struct {
	instrumentedLimiter
	batch store.BatchLimiter
}

func (l *instrumentedBatch) ReserveAll(ctx context.Context, reqs []store.LimitRequest, now time.Time) ([]string, error) {
	c := l.t.begin(ctx, l.t.limiter.reserveAll)
	ids, err := l.batch.ReserveAll(c.ctx, reqs, now)
	l.t.end(c, err)
	return ids, err
}

func (l *instrumentedBatch) CancelAll(ctx context.Context, rs []store.Reservation) error {
	c := l.t.begin(ctx, l.t.limiter.cancelAll)
	err := l.batch.CancelAll(c.ctx, rs)
	l.t.end(c, err)
	return err
}

type instrumentedClients struct {
	next store.ClientRegistry
	t    *telemetry
}

func (r *instrumentedClients) Client(ctx context.Context, id string) (store.Client, error) {
	c := r.t.begin(ctx, r.t.clients.client)
	client, err := r.next.Client(c.ctx, id)
	r.t.end(c, err)
	return client, err
}

type instrumentedMailer struct {
	next Mailer
	t    *telemetry
}

func (m *instrumentedMailer) Send(ctx context.Context, msg Message) error {
	c := m.t.begin(ctx, m.t.mailer.send)
	err := m.next.Send(c.ctx, msg)
	m.t.end(c, err)
	return err
}

type instrumentedCaptcha struct {
	next CaptchaVerifier
	t    *telemetry
}

func (v *instrumentedCaptcha) VerifyCaptcha(ctx context.Context, token string) error {
	c := v.t.begin(ctx, v.t.captcha.verify)
	err := v.next.VerifyCaptcha(c.ctx, token)
	v.t.end(c, err)
	return err
}

var (
	_ store.ChangeStore    = (*instrumentedUsers)(nil)
	_ store.CodeStore      = (*instrumentedCodes)(nil)
	_ store.Limiter        = (*instrumentedLimiter)(nil)
	_ store.BatchLimiter   = (*instrumentedBatch)(nil)
	_ store.CodeChecker    = (*instrumentedChecker)(nil)
	_ store.ClientRegistry = (*instrumentedClients)(nil)
	_ Mailer               = (*instrumentedMailer)(nil)
	_ CaptchaVerifier      = (*instrumentedCaptcha)(nil)
)

// instrument wraps cfg's dependencies, once, before the client cache: a
// lookup the cache answers is no registry call.
func (t *telemetry) instrument(cfg *Config) {
	if t.off {
		return
	}
	cfg.Users = &instrumentedUsers{cfg.Users, t}
	if cc, ok := cfg.Codes.(store.CodeChecker); ok {
		cfg.Codes = &instrumentedChecker{instrumentedCodes{cfg.Codes, t}, cc}
	} else {
		cfg.Codes = &instrumentedCodes{cfg.Codes, t}
	}
	if bl, ok := cfg.Limiter.(store.BatchLimiter); ok {
		cfg.Limiter = &instrumentedBatch{instrumentedLimiter{cfg.Limiter, t}, bl}
	} else {
		cfg.Limiter = &instrumentedLimiter{cfg.Limiter, t}
	}
	cfg.Clients = &instrumentedClients{cfg.Clients, t}
	cfg.Mailer = &instrumentedMailer{cfg.Mailer, t}
	cfg.Captcha = &instrumentedCaptcha{cfg.Captcha, t}
}

// observeState registers gauges read at each collection: the outbox's
// backlog, from the store (how many notices wait and how old the oldest
// is), and the state of the mail circuit. Unregister them when the courier
// stops.
func (t *telemetry) observeState(outbox store.Outbox, mail *mailGuard) (metric.Registration, error) {
	if t.off {
		return nil, nil
	}
	backlog, err1 := t.meter.Int64ObservableGauge("selfservice.notice.backlog",
		metric.WithDescription("Notices to old addresses recorded and not yet delivered."), metric.WithUnit("{notice}"))
	age, err2 := t.meter.Float64ObservableGauge("selfservice.notice.oldest_age",
		metric.WithDescription("Age of the oldest notice not yet delivered; 0 when none waits."), metric.WithUnit("s"))
	circuit, err3 := t.meter.Int64ObservableGauge("selfservice.mail.circuit",
		metric.WithDescription("State of the mail circuit breaker: 0 closed, 1 half-open, 2 open."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	return t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(circuit, mail.state())
		n, oldest, err := outbox.NoticeBacklog(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(backlog, int64(n))
		if n > 0 {
			o.ObserveFloat64(age, time.Since(oldest).Seconds())
		} else {
			o.ObserveFloat64(age, 0)
		}
		return nil
	}, backlog, age, circuit)
}

// Counters of outcomes, recorded where the audit events are emitted.

func (t *telemetry) codeSent(ctx context.Context)     { t.codesSent.Add(ctx, 1) }
func (t *telemetry) codeRejected(ctx context.Context) { t.codesRejected.Add(ctx, 1) }
func (t *telemetry) changed(ctx context.Context)      { t.emailChanged.Add(ctx, 1) }
func (t *telemetry) reverted(ctx context.Context)     { t.emailReverted.Add(ctx, 1) }
func (t *telemetry) noticeDelivered(ctx context.Context) {
	t.noticeSent.Add(ctx, 1)
}

func (t *telemetry) refused(ctx context.Context, budget string) {
	t.budgetRefused.Add(ctx, 1, t.budgets[budget]...)
}

func (t *telemetry) noticeNotSent(ctx context.Context, reason string) {
	t.noticeFailed.Add(ctx, 1, t.notices[reason]...)
}
