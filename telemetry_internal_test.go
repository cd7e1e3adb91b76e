package selfservice

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/paired"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// BenchmarkTelemetryOverhead measures what the instrumentation costs one
// full update-email request (the middlewares, an RS256 token, the code
// check on memory stores, the change and its notice), paired in one process
// (internal/paired), so that a busy machine slows both sides alike. The
// floor is the Service built with OpenTelemetry's no-op providers, which
// instruments nothing; impl=default is the Service as an application gets it
// without installing a provider (the global ones, no SDK); impl=sdk-metrics
// records into an SDK MeterProvider (a ManualReader never read) with the
// no-op tracer. path=cached turns the verifier's token cache on, so that
// what is left is the package's own work, without the signature. x-wall and
// x-cpu are the ratios:
//
//	go test -run '^$' -bench TelemetryOverhead -count 10 . | tee tel.txt
//	benchstat -filter '.unit:(x-wall OR x-cpu)' tel.txt
func BenchmarkTelemetryOverhead(b *testing.B) {
	for _, impl := range []struct {
		name string
		mp   func() metric.MeterProvider
		tp   trace.TracerProvider
	}{
		{"default", func() metric.MeterProvider { return nil }, nil},
		{"sdk-metrics", func() metric.MeterProvider {
			return sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		}, tracenoop.NewTracerProvider()},
	} {
		for _, cached := range []bool{false, true} {
			path := "full"
			if cached {
				path = "cached"
			}
			b.Run("path="+path+"/impl="+impl.name, func(b *testing.B) {
				floor := newTelBench(b, cached, metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider())
				if !floor.svc.tel.off {
					b.Fatal("the floor's Service is instrumented")
				}
				env := newTelBench(b, cached, impl.mp(), impl.tp)
				paired.Run(b, paired.Pair{Floor: floor.serve, Impl: env.serve})
			})
		}
	}
}

// TestTelemetryOff: OpenTelemetry's no-op providers, given for both, leave
// every dependency and endpoint as it was given.
func TestTelemetryOff(t *testing.T) {
	users := memstore.NewUserStore()
	svc, err := New(Config{
		Users: users, Codes: memstore.NewCodeStore(), Limiter: memstore.NewLimiter(),
		Clients: memstore.NewClientRegistry(), Mailer: MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha: AllowAllCaptcha{}, CodeSecret: make([]byte, MinCodeSecretLen), ClientCacheTTL: -1,
		MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if svc.cfg.Users != store.ChangeStore(users) {
		t.Errorf("Users is %T, want the store given", svc.cfg.Users)
	}
	if _, ok := svc.cfg.Clients.(*instrumentedClients); ok {
		t.Error("the client registry is instrumented")
	}
}

// TestTelemetryGlobalProviders: a Service built before the application
// installs its SDK in the global providers records into it afterwards,
// spans included. The global providers can be set once per process, so
// the test runs itself again in a process of its own.
func TestTelemetryGlobalProviders(t *testing.T) {
	if os.Getenv("SELFSERVICE_TEST_GLOBAL_OTEL") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTelemetryGlobalProviders$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SELFSERVICE_TEST_GLOBAL_OTEL=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	if !isUnsetGlobal(otel.GetTracerProvider()) {
		t.Fatal("the global tracer provider is set already")
	}
	svc, err := New(Config{
		Users: memstore.NewUserStore(), Codes: memstore.NewCodeStore(), Limiter: memstore.NewLimiter(),
		Clients: memstore.NewClientRegistry(store.Client{ID: "app"}), Mailer: MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha: AllowAllCaptcha{}, CodeSecret: make([]byte, MinCodeSecretLen), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if svc.tel.unsetGlobal == nil || svc.tel.tracing() {
		t.Fatal("the Service does not know the global tracer provider is unset")
	}
	// A request whose context carries a sampled span, as otelhttp's would.
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	send := func(email string) {
		t.Helper()
		err := svc.SendCode(ctx, SendCodeRequest{
			Caller: Caller{ClientID: "app", Device: middleware.Device{OSVersion: "linux6.1", Fingerprint: "fp", Agent: "test"}},
			Email:  email, Type: PurposeUpdateEmail, CaptchaToken: "t",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send("before@example.com")

	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if !svc.tel.tracing() {
		t.Fatal("tracing() is false with an SDK installed")
	}
	send("after@example.com")

	// The client's registration is cached since the first send.
	if n := len(spans.Ended()); n != 4 {
		t.Errorf("%d spans after the SDK was installed, want 4 (captcha, one reservation of both budgets, put, send)", n)
	}
	for _, s := range spans.Ended() {
		if s.Parent().SpanID() != sc.SpanID() {
			t.Errorf("span %s is not a child of the request's", s.Name())
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sent := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "selfservice.codes.sent" {
				sent = m.Data.(metricdata.Sum[int64]).DataPoints[0].Value
			}
		}
	}
	if sent != 1 {
		t.Errorf("codes sent after the SDK was installed: %d, want 1", sent)
	}
}

func TestErrorCodeOf(t *testing.T) {
	for _, tt := range []struct {
		body string
		want i18n.Code
	}{
		{`{"error_code":"IDAAS.SDK.USER.0036","error_msg":"E-mail already exists"}`, i18n.CodeEmailExists},
		{`{"error_code":"IDAAS.SDK.SYS.9001","error_msg":"系统繁忙,请稍后重试"}`, i18n.CodeInternal},
		{`{"error_code":"MY.OWN.CODE","error_msg":"x"}`, ""},
		{`{"error_code":"IDAAS.SDK.USER.0036`, ""},
		{`{"error_msg":"x","error_code":"IDAAS.SDK.USER.0036"}`, ""},
		{``, ""},
	} {
		if got := errorCodeOf([]byte(tt.body)); got != tt.want {
			t.Errorf("errorCodeOf(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestOutcomeOptions(t *testing.T) {
	o := newOperationTelemetry(opUpdateEmail)
	attrs := func(opts []metric.RecordOption) string {
		set := metric.NewRecordConfig(opts).Attributes()
		return set.Encoded(attribute.DefaultEncoder())
	}
	for _, tt := range []struct {
		code   i18n.Code
		status int
		want   string
	}{
		{"", http.StatusOK, "operation=update_email,status_class=2xx"},
		{i18n.CodeEmailExists, http.StatusBadRequest, "error_code=IDAAS.SDK.USER.0036,operation=update_email,status_class=4xx"},
		{i18n.CodeSendLimited, http.StatusTooManyRequests, "error_code=IDAAS.SDK.CAPTCHA.9201,operation=update_email,status_class=4xx"},
		{"", http.StatusBadRequest, "error_code=other,operation=update_email,status_class=4xx"},
		{"MY.OWN.CODE", http.StatusInternalServerError, "error_code=other,operation=update_email,status_class=5xx"},
		{"", 999, "error_code=other,operation=update_email,status_class=5xx"},
	} {
		if got := attrs(o.options(tt.code, tt.status)); got != tt.want {
			t.Errorf("options(%q, %d) = %s, want %s", tt.code, tt.status, got, tt.want)
		}
	}
}

var telBenchKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// telBench is one Service serving update-email requests that flip its
// user's address between two, one change per call, with the code re-armed
// in the store before each.
type telBench struct {
	svc     *Service
	codes   store.CodeStore
	req     *http.Request
	body    *strings.Reader
	w       telBenchWriter
	bodies  [2]string
	hashes  [2][]byte
	emails  [2]string
	expires time.Time
	i       int
}

func newTelBench(b *testing.B, cached bool, mp metric.MeterProvider, tp trace.TracerProvider) *telBench {
	b.Helper()
	key, err := telBenchKey()
	if err != nil {
		b.Fatal(err)
	}
	const (
		issuer, client, user, code = "https://id.example.test", "tel-client", "tel-user", "123456"
	)
	opts := idtoken.Options{
		Issuer:  issuer,
		Keyfunc: func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
	}
	if cached {
		opts.Cache.MaxEntries = 10
	}
	verifier, err := idtoken.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: issuer, Subject: user, Audience: jwt.ClaimStrings{client},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}

	tb := &telBench{emails: [2]string{"next@example.com", "user@example.com"}, expires: now.Add(time.Hour)}
	email, canonical, err := CanonicalEmail(tb.emails[1])
	if err != nil {
		b.Fatal(err)
	}
	tb.codes = memstore.NewCodeStore()
	secret := []byte(strings.Repeat("k", MinCodeSecretLen))
	loose := []store.Limit{{N: 1 << 30, Window: time.Second}}
	tb.svc, err = New(Config{
		Users:      memstore.NewUserStore(store.User{ID: user, Email: email, CanonicalEmail: canonical}),
		Codes:      tb.codes,
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: client}),
		Verifier:   verifier,
		Mailer:     MailerFunc(func(context.Context, Message) error { return nil }),
		Captcha:    AllowAllCaptcha{},
		CodeSecret: secret,
		Budgets: Budgets{
			SendsPerEmail: loose, SendsPerIP: loose, WrongCodesPerUser: loose, WrongCodesPerIP: loose,
			ChangesPerUser: loose,
		},
		Logger:         slog.New(slog.DiscardHandler),
		MeterProvider:  mp,
		TracerProvider: tp,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tb.svc.Shutdown(context.Background()) })
	hasher := newCodeHasher(secret)
	for k, e := range tb.emails {
		tb.bodies[k] = `{"email":"` + e + `","verify_code":"` + code + `"}`
		tb.hashes[k] = hasher.hash(PurposeUpdateEmail, e, code)
	}
	tb.body = strings.NewReader(tb.bodies[0])
	tb.req = httptest.NewRequest(http.MethodPost, UpdateEmailPath, nil)
	tb.req.Body = http.NoBody
	h := tb.req.Header
	h.Set("Content-Type", "application/json")
	h.Set("X-Operating-Sys-Version", "windows10.1.1")
	h.Set("X-Device-Fingerprint", "156aysdna213sc50")
	h.Set("X-Agent", "Mozilla/5.0")
	h.Set("X-Client-Id", client)
	h.Set("X-L", "en")
	h.Set("Authorization", "Bearer "+raw)
	return tb
}

// serve makes one change.
func (tb *telBench) serve(int) error {
	k := tb.i & 1
	tb.i++
	key := store.CodeKey{Purpose: PurposeUpdateEmail, Email: tb.emails[k]}
	if err := tb.codes.Put(context.Background(), key, tb.hashes[k], tb.expires); err != nil {
		return err
	}
	tb.body.Reset(tb.bodies[k])
	tb.req.Body = readCloser{tb.body}
	tb.req.ContentLength = int64(len(tb.bodies[k]))
	tb.w.code = 0
	tb.svc.Handler().ServeHTTP(&tb.w, tb.req)
	if tb.w.code != http.StatusOK {
		return fmt.Errorf("change %d: status %d", tb.i, tb.w.code)
	}
	return nil
}

// telBenchWriter keeps the status; its header map is reused.
type telBenchWriter struct {
	h    http.Header
	code int
}

func (w *telBenchWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}

func (w *telBenchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}

func (w *telBenchWriter) WriteHeader(code int) { w.code = code }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
