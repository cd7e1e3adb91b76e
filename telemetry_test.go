package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// telemetryFixture is the API with an SDK meter provider read by hand and
// a span recorder, served behind a handler that starts a sampled span per
// request, as otelhttp would.
type telemetryFixture struct {
	*fixture
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	// requests are the request spans, by the path and order they came in.
	requests chan trace.SpanContext
}

func newTelemetryFixture(t *testing.T, edit func(*selfservice.Config)) *telemetryFixture {
	t.Helper()
	tf := &telemetryFixture{
		reader:   sdkmetric.NewManualReader(),
		spans:    tracetest.NewSpanRecorder(),
		requests: make(chan trace.SpanContext, 100),
	}
	tf.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tf.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tf.reader))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tf.tp.Shutdown(context.Background())
	})
	tf.fixture = newFixtureWith(t, func(cfg *selfservice.Config) {
		cfg.MeterProvider = mp
		cfg.TracerProvider = tf.tp
		if edit != nil {
			edit(cfg)
		}
	}, mustUser(t, telUser, telOldEmail))
	tracer := tf.tp.Tracer("test")
	api := tf.svc.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tracer.Start(r.Context(), "request "+r.URL.Path)
		defer span.End()
		tf.requests <- span.SpanContext()
		api.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	tf.srv = srv
	return tf
}

const (
	telUser     = "u-telemetry-7"
	telOldEmail = "old.owner@example.com"
	telNewEmail = "new.owner@example.com"
)

// collect reads every metric the Service recorded so far.
func (tf *telemetryFixture) collect(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tf.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]metricdata.Aggregation)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != selfservice.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, selfservice.ScopeName)
		}
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	return got
}

// attrs renders a set as "k=v,k=v" in key order, for comparisons.
func attrs(set attribute.Set) string {
	var parts []string
	for _, kv := range set.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	return strings.Join(parts, ",")
}

// sums returns a counter's values by attribute set.
func sums(t *testing.T, data metricdata.Aggregation) map[string]int64 {
	t.Helper()
	s, ok := data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%T is not an int64 sum", data)
	}
	got := make(map[string]int64)
	for _, dp := range s.DataPoints {
		got[attrs(dp.Attributes)] += dp.Value
	}
	return got
}

// gauge returns an int64 gauge's one value, or -1 when it has none.
func gauge(t *testing.T, data metricdata.Aggregation) int64 {
	t.Helper()
	g, ok := data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("%T is not an int64 gauge", data)
	}
	if len(g.DataPoints) != 1 {
		return -1
	}
	return g.DataPoints[0].Value
}

// counts returns a histogram's sample counts by attribute set, and checks
// that every sample is a plausible duration in seconds.
func counts(t *testing.T, data metricdata.Aggregation) map[string]uint64 {
	t.Helper()
	h, ok := data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%T is not a float64 histogram", data)
	}
	got := make(map[string]uint64)
	for _, dp := range h.DataPoints {
		got[attrs(dp.Attributes)] += dp.Count
		if dp.Sum < 0 || dp.Sum > float64(dp.Count)*10 {
			t.Errorf("%s: %d samples summing to %gs", attrs(dp.Attributes), dp.Count, dp.Sum)
		}
		if len(dp.Bounds) == 0 || dp.Bounds[0] != 0.0001 {
			t.Errorf("%s: bucket bounds %v, want the package's, in seconds", attrs(dp.Attributes), dp.Bounds)
		}
	}
	return got
}

func assertEqualMap[V comparable](t *testing.T, name string, got, want map[string]V) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, not expected", name, k, g)
		}
	}
}

// TestTelemetryFlow runs one flow over HTTP and checks every count, every
// histogram sample and every span it leaves, and that none of them holds an
// address, the user id, the client id or the token.
func TestTelemetryFlow(t *testing.T) {
	var failed atomic.Bool // the first notice fails, its retry is delivered
	tf := newTelemetryFixture(t, func(cfg *selfservice.Config) {
		next := cfg.Mailer
		cfg.Mailer = selfservice.MailerFunc(func(ctx context.Context, m selfservice.Message) error {
			if m.Kind == selfservice.MailEmailChanged && failed.CompareAndSwap(false, true) {
				return errors.New("550 mailbox " + telOldEmail + " unavailable")
			}
			return next.Send(ctx, m)
		})
	})
	tok := token(t, telUser, nil)
	ctx := context.Background()

	// A code mailed, then a second send refused by the per-address budget.
	code := tf.sendCode(t, telNewEmail)
	r := tf.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":`+quote(telNewEmail)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("second send: %d %s", r.Status, r.Raw)
	}
	// A wrong code, a token the middleware refuses, then the change, whose
	// notice to the old address fails.
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if r := tf.update(t, tok, "en", telNewEmail, wrong); r.Code != string(i18n.CodeVerifyCodeIncorrect) {
		t.Fatalf("wrong code: %d %s", r.Status, r.Raw)
	}
	if r := tf.update(t, tok+"x", "en", telNewEmail, code); r.Code != string(i18n.CodeTokenInvalid) {
		t.Fatalf("bad token: %d %s", r.Status, r.Raw)
	}
	if r := tf.update(t, tok, "en", telNewEmail, code); r.Status != http.StatusOK {
		t.Fatalf("change: %d %s", r.Status, r.Raw)
	}
	// The courier mails the notice, fails, and retries.
	waitFor(t, "the notice delivered", func() bool { return len(tf.notices()) == 1 })
	if err := tf.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The Go API records the same histogram.
	if err := tf.svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{Caller: telCaller()}); !errors.Is(err, i18n.CodeTokenEmpty) {
		t.Fatalf("Go UpdateEmail without a user = %v", err)
	}

	got := tf.collect(t)
	one := map[string]int64{"": 1}
	assertEqualMap(t, "selfservice.codes.sent", sums(t, got["selfservice.codes.sent"]), one)
	assertEqualMap(t, "selfservice.codes.rejected", sums(t, got["selfservice.codes.rejected"]), one)
	assertEqualMap(t, "selfservice.email.changed", sums(t, got["selfservice.email.changed"]), one)
	assertEqualMap(t, "selfservice.budget.refused", sums(t, got["selfservice.budget.refused"]),
		map[string]int64{"budget=sends_per_email": 1})
	assertEqualMap(t, "selfservice.notice.failed", sums(t, got["selfservice.notice.failed"]),
		map[string]int64{"reason=send_failed": 1})
	assertEqualMap(t, "selfservice.notice.delivered", sums(t, got["selfservice.notice.delivered"]), one)
	assertEqualMap(t, "selfservice.request.duration", counts(t, got["selfservice.request.duration"]), map[string]uint64{
		"operation=send_code,status_class=2xx":                                      1,
		"error_code=IDAAS.SDK.CAPTCHA.9201,operation=send_code,status_class=4xx":    1,
		"error_code=IDAAS.SDK.CAPTCHA.0007,operation=update_email,status_class=4xx": 1,
		"error_code=IDAAS.SDK.PARAM.0016,operation=update_email,status_class=4xx":   1,
		"operation=update_email,status_class=2xx":                                   1,
		"error_code=IDAAS.SDK.PARAM.0015,operation=update_email,status_class=4xx":   1,
	})
	// The client is looked up once (then cached); both sends pass the
	// captcha and reserve both budgets in one call, the refused one
	// recording nothing; each update reserves three budgets in one call,
	// the wrong code gives the change's back, the right one both wrong-code
	// slots, in one call each. The courier's polls of the outbox depend on
	// timing and are left out.
	deps := counts(t, got["selfservice.dependency.duration"])
	maps.DeleteFunc(deps, func(k string, _ uint64) bool { return strings.HasPrefix(k, "dependency=outbox,") })
	assertEqualMap(t, "selfservice.dependency.duration", deps, map[string]uint64{
		"dependency=clients,error=false,operation=Client":        1,
		"dependency=captcha,error=false,operation=VerifyCaptcha": 2,
		"dependency=limiter,error=false,operation=ReserveAll":    4,
		"dependency=limiter,error=false,operation=CancelAll":     2,
		"dependency=codes,error=false,operation=Put":             1,
		"dependency=codes,error=false,operation=Verify":          2,
		"dependency=users,error=false,operation=User":            2,
		"dependency=users,error=false,operation=ChangeEmail":     1,
		"dependency=mailer,error=false,operation=Send":           2,
		"dependency=mailer,error=true,operation=Send":            1,
	})

	// Spans: one per dependency call, each a child of its request's span.
	close(tf.requests)
	var reqs []trace.SpanContext
	for sc := range tf.requests {
		reqs = append(reqs, sc)
	}
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5", len(reqs))
	}
	perRequest := make([][]string, len(reqs))
	for _, s := range tf.spans.Ended() {
		if strings.HasPrefix(s.Name(), "request ") {
			continue
		}
		i := slices.IndexFunc(reqs, func(sc trace.SpanContext) bool { return sc.SpanID() == s.Parent().SpanID() })
		if i < 0 {
			t.Errorf("span %s has parent %s, no request's", s.Name(), s.Parent().SpanID())
			continue
		}
		if s.SpanContext().TraceID() != reqs[i].TraceID() {
			t.Errorf("span %s is not in its request's trace", s.Name())
		}
		perRequest[i] = append(perRequest[i], s.Name())
		if s.SpanKind() != trace.SpanKindInternal {
			t.Errorf("span %s is %v, want internal", s.Name(), s.SpanKind())
		}
		if s.Name() == "mailer.Send" && s.Status().Code == codes.Error {
			if s.Status().Description != "" {
				t.Errorf("failed mail span has the status text %q: it may quote an address", s.Status().Description)
			}
		} else if s.Status().Code != codes.Unset {
			t.Errorf("span %s has status %v", s.Name(), s.Status())
		}
	}
	for i, want := range [][]string{
		{"clients.Client", "captcha.VerifyCaptcha", "limiter.ReserveAll", "codes.Put", "mailer.Send"},
		{"captcha.VerifyCaptcha", "limiter.ReserveAll"},
		{"users.User", "limiter.ReserveAll", "codes.Verify", "limiter.CancelAll"},
		nil,
		// The notice is the courier's, outside the request (and its trace).
		{"users.User", "limiter.ReserveAll", "codes.Verify", "limiter.CancelAll", "users.ChangeEmail"},
	} {
		slices.Sort(want)
		slices.Sort(perRequest[i])
		if !slices.Equal(perRequest[i], want) {
			t.Errorf("request %d: spans %v, want %v", i, perRequest[i], want)
		}
	}

	// Nothing personal anywhere.
	secrets := []string{"@", telUser, testClient, tok, code}
	check := func(where, v string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(v, s) {
				t.Errorf("%s %q holds %q", where, v, s)
			}
		}
	}
	for name, data := range got {
		check("metric", name)
		for _, set := range dataPointSets(data) {
			for _, kv := range set.ToSlice() {
				check(name+" attribute", kv.Value.String())
			}
		}
	}
	for _, s := range tf.spans.Ended() {
		check("span", s.Name())
		check("span status", s.Status().Description)
		for _, kv := range s.Attributes() {
			check(s.Name()+" attribute", kv.Value.String())
		}
		for _, e := range s.Events() {
			check(s.Name()+" event", e.Name)
			for _, kv := range e.Attributes {
				check(s.Name()+" event attribute", kv.Value.String())
			}
		}
	}
}

func dataPointSets(data metricdata.Aggregation) []attribute.Set {
	var sets []attribute.Set
	switch d := data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	}
	return sets
}

func telCaller() selfservice.Caller {
	return selfservice.Caller{
		ClientID: testClient,
		Device:   middleware.Device{OSVersion: "linux6.1", Fingerprint: "fp-1", Agent: "go test"},
	}
}

// TestTelemetryGoAPI: the Go operations time themselves, and their
// dependency calls are children of the caller's span.
func TestTelemetryGoAPI(t *testing.T) {
	tf := newTelemetryFixture(t, nil)
	ctx, parent := tf.tp.Tracer("test").Start(context.Background(), "grpc call")
	err := tf.svc.SendCode(ctx, selfservice.SendCodeRequest{
		Caller: telCaller(), Email: telNewEmail, Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
	})
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	got := tf.collect(t)
	assertEqualMap(t, "selfservice.request.duration", counts(t, got["selfservice.request.duration"]),
		map[string]uint64{"operation=send_code,status_class=2xx": 1})
	n := 0
	for _, s := range tf.spans.Ended() {
		if s.Name() == "grpc call" {
			continue
		}
		n++
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the caller's", s.Name())
		}
	}
	if n != 5 {
		t.Errorf("%d dependency spans, want 5 (client, captcha, one reservation of both budgets, put, send)", n)
	}
}

// TestTelemetryUnsampled: without a sampled span in the context no
// dependency span is started, and metrics are still recorded.
func TestTelemetryUnsampled(t *testing.T) {
	tf := newTelemetryFixture(t, nil)
	err := tf.svc.SendCode(context.Background(), selfservice.SendCodeRequest{
		Caller: telCaller(), Email: telNewEmail, Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
	})
	if err != nil {
		t.Fatal(err)
	}
	if spans := tf.spans.Ended(); len(spans) != 0 {
		t.Errorf("%d spans without a parent, want none", len(spans))
	}
	if got := sums(t, tf.collect(t)["selfservice.codes.sent"]); got[""] != 1 {
		t.Errorf("codes sent %v, want 1", got)
	}
}

// TestTelemetryFailures: a failing store marks its calls error=true and
// its spans Error, with the error's type and never its text.
func TestTelemetryFailures(t *testing.T) {
	tf := newTelemetryFixture(t, nil)
	tf.fusers.fail(errors.New("connection to " + telOldEmail + "'s shard lost"))
	tok := token(t, telUser, nil)
	if r := tf.update(t, tok, "en", telNewEmail, "123456"); r.Code != string(i18n.CodeInternal) {
		t.Fatalf("update with the user store down: %d %s", r.Status, r.Raw)
	}
	got := tf.collect(t)
	assertEqualMap(t, "selfservice.request.duration", counts(t, got["selfservice.request.duration"]), map[string]uint64{
		"error_code=IDAAS.SDK.SYS.9001,operation=update_email,status_class=5xx": 1,
	})
	deps := counts(t, got["selfservice.dependency.duration"])
	if deps["dependency=users,error=true,operation=User"] != 1 {
		t.Errorf("dependency samples %v, want a failed users.User", deps)
	}
	for _, s := range tf.spans.Ended() {
		if s.Name() != "users.User" {
			continue
		}
		if s.Status().Code != codes.Error || s.Status().Description != "" {
			t.Errorf("users.User status %+v, want Error without text", s.Status())
		}
		if !slices.Contains(s.Attributes(), attribute.String("error.type", "*errors.errorString")) {
			t.Errorf("users.User attributes %v, want error.type", s.Attributes())
		}
	}
}

// TestTelemetryNotices: a notice's failed attempt and its delivery are
// counted, and the outbox's backlog is a gauge that reads the store.
func TestTelemetryNotices(t *testing.T) {
	var (
		mu    sync.Mutex
		fails = 1
		gate  = make(chan struct{})
	)
	tf := newTelemetryFixture(t, func(cfg *selfservice.Config) {
		next := cfg.Mailer
		cfg.Mailer = selfservice.MailerFunc(func(ctx context.Context, m selfservice.Message) error {
			if m.Kind == selfservice.MailEmailChanged {
				mu.Lock()
				defer mu.Unlock()
				if fails > 0 {
					fails--
					return errors.New("smtp: 421 busy")
				}
				<-gate
			}
			return next.Send(ctx, m)
		})
	})
	code := tf.sendCode(t, telNewEmail)
	if r := tf.update(t, token(t, telUser, nil), "en", telNewEmail, code); r.Status != http.StatusOK {
		t.Fatalf("change: %d %s", r.Status, r.Raw)
	}
	waitFor(t, "a failed attempt counted and the backlog gauge at 1", func() bool {
		got := tf.collect(t)
		return got["selfservice.notice.failed"] != nil && sums(t, got["selfservice.notice.failed"])["reason=send_failed"] == 1 &&
			gauge(t, got["selfservice.notice.backlog"]) == 1
	})
	close(gate)
	waitFor(t, "the delivery counted and the backlog gauge at 0", func() bool {
		got := tf.collect(t)
		return got["selfservice.notice.delivered"] != nil && sums(t, got["selfservice.notice.delivered"])[""] == 1 &&
			gauge(t, got["selfservice.notice.backlog"]) == 0
	})
}

// TestTelemetryDefault: with no provider given the Service records into the
// global no-op providers and works as before.
func TestTelemetryDefault(t *testing.T) {
	f := newFixture(t, mustUser(t, telUser, telOldEmail))
	code := f.sendCode(t, telNewEmail)
	if r := f.update(t, token(t, telUser, nil), "en", telNewEmail, code); r.Status != http.StatusOK {
		t.Fatalf("change: %d %s", r.Status, r.Raw)
	}
}

// TestTelemetryImports: the library's packages depend on OpenTelemetry's
// API only; the SDK and the Prometheus exporter are the application's
// choice (the example's).
func TestTelemetryImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	pkgs := []string{
		"github.com/ciamkit/selfservice", "github.com/ciamkit/selfservice/idtoken",
		"github.com/ciamkit/selfservice/middleware", "github.com/ciamkit/selfservice/store",
	}
	out, err := exec.Command(goTool, append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	api := false
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "go.opentelemetry.io/otel/sdk"),
			strings.HasPrefix(dep, "go.opentelemetry.io/otel/exporters"),
			strings.HasPrefix(dep, "github.com/prometheus/"):
			t.Errorf("the library imports %s", dep)
		case dep == "go.opentelemetry.io/otel/metric":
			api = true
		}
	}
	if !api {
		t.Error("go.opentelemetry.io/otel/metric is not among the dependencies: is the list right?")
	}
}

// An application installs an OpenTelemetry SDK MeterProvider, here with a
// reader collected by hand (in production, an exporter's: Prometheus,
// OTLP), and gives it to the Service; the same goes for a TracerProvider.
// Without either, the Service records into the global providers, which do
// nothing until the application installs an SDK there.
func Example_telemetry() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	svc, err := selfservice.New(selfservice.Config{
		Users:         memstore.NewUserStore(),
		Codes:         memstore.NewCodeStore(),
		Limiter:       memstore.NewLimiter(),
		Clients:       memstore.NewClientRegistry(store.Client{ID: "my-app"}),
		Mailer:        selfservice.NewLogMailer(io.Discard),
		Captcha:       selfservice.AllowAllCaptcha{},
		CodeSecret:    []byte("0123456789abcdef0123456789abcdef"), // 32 random bytes in production
		Logger:        slog.New(slog.DiscardHandler),
		MeterProvider: mp,
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	err = svc.SendCode(ctx, selfservice.SendCodeRequest{
		Caller: selfservice.Caller{
			ClientID: "my-app",
			Device:   middleware.Device{OSVersion: "linux6.1", Fingerprint: "fp-1", Agent: "example"},
		},
		Email: "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "t",
	})
	if err != nil {
		panic(err)
	}
	// Shutdown stops the courier, whose look at the outbox at start is
	// recorded too.
	if err := svc.Shutdown(ctx); err != nil {
		panic(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				fmt.Println(m.Name, d.DataPoints[0].Value)
			case metricdata.Histogram[float64]:
				fmt.Println(m.Name, "in", m.Unit, len(d.DataPoints), "series")
			}
		}
	}
	// Output:
	// selfservice.request.duration in s 1 series
	// selfservice.dependency.duration in s 7 series
	// selfservice.codes.sent 1
}
