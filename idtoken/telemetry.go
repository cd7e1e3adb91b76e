package idtoken

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the Verifier's meter and
// tracer: the package's import path, as OpenTelemetry asks of libraries.
const ScopeName = "github.com/ciamkit/selfservice/idtoken"

// dependencyDescription is the description the root package gives
// selfservice.dependency.duration: one metric of two scopes must describe
// itself alike to be exported as one.
const dependencyDescription = "Duration of calls to dependencies: the stores, the mailer, the captcha verifier and the JWKS."

// jwksBuckets are the bounds, in seconds, of the JWKS fetch histogram: the
// same as the root package's selfservice.dependency.duration, so that the
// two scopes' series of that one metric can be summed.
var jwksBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// jwksTransport times and traces every JWKS fetch, from the request to
// the body's Close: jwkset fetches through the Verifier's HTTP client, at
// start, in the background and for unknown kids, and this is the one place
// all of them pass. A fetch runs on the Verifier's own context, never a
// request's, so its span is a root of its own.
type jwksTransport struct {
	next     http.RoundTripper
	tracer   trace.Tracer
	duration metric.Float64Histogram
	ok, fail []metric.RecordOption
	start    []trace.SpanStartOption
}

func newJWKSTransport(next http.RoundTripper, mp metric.MeterProvider, tp trace.TracerProvider) *jwksTransport {
	if next == nil {
		next = http.DefaultTransport
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	h, err := mp.Meter(ScopeName).Float64Histogram("selfservice.dependency.duration",
		metric.WithDescription(dependencyDescription),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(jwksBuckets...))
	if err != nil {
		// The instrument still works; OpenTelemetry's handler reports it.
		otel.Handle(err)
	}
	dep, op := attribute.String("dependency", "jwks"), attribute.String("operation", "fetch")
	set := func(failed bool) []metric.RecordOption {
		return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(dep, op, attribute.Bool("error", failed)))}
	}
	return &jwksTransport{
		next:     next,
		tracer:   tp.Tracer(ScopeName),
		duration: h,
		ok:       set(false),
		fail:     set(true),
		start: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(dep, op, attribute.String("http.request.method", http.MethodGet)),
		},
	}
}

// RoundTrip implements http.RoundTripper.
func (t *jwksTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(r.Context(), "jwks.fetch", t.start...)
	f := &jwksFetch{t: t, span: span, begun: time.Now()}
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		// Transport errors name the issuer's URL, no personal data.
		f.done(ctx, true, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	f.ctx, f.failed = ctx, resp.StatusCode < 200 || resp.StatusCode > 299
	if f.failed {
		f.desc = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	f.body = resp.Body
	resp.Body = f
	return resp, nil
}

// jwksFetch is one fetch in flight; as the response's body, it ends the
// fetch when the body is closed.
type jwksFetch struct {
	t      *jwksTransport
	span   trace.Span
	begun  time.Time
	body   io.ReadCloser
	ctx    context.Context
	failed bool
	desc   string
	once   sync.Once
}

func (f *jwksFetch) Read(p []byte) (int, error) {
	n, err := f.body.Read(p)
	if err != nil && err != io.EOF && !f.failed {
		f.failed, f.desc = true, err.Error()
	}
	return n, err
}

func (f *jwksFetch) Close() error {
	err := f.body.Close()
	f.done(f.ctx, f.failed, f.desc)
	return err
}

func (f *jwksFetch) done(ctx context.Context, failed bool, desc string) {
	f.once.Do(func() {
		opts := f.t.ok
		if failed {
			opts = f.t.fail
			f.span.SetStatus(codes.Error, desc)
		}
		f.t.duration.Record(ctx, time.Since(f.begun).Seconds(), opts...)
		f.span.End()
	})
}
