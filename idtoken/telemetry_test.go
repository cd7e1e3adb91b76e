package idtoken_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ciamkit/selfservice/idtoken"
)

// jwksSamples returns the JWKS fetch histogram's sample counts by outcome.
func jwksSamples(t *testing.T, reader *sdkmetric.ManualReader) (ok, failed uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != idtoken.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, idtoken.ScopeName)
		}
		for _, m := range sm.Metrics {
			if m.Name != "selfservice.dependency.duration" || m.Unit != "s" {
				t.Errorf("metric %s in %s", m.Name, m.Unit)
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				dep, _ := dp.Attributes.Value("dependency")
				op, _ := dp.Attributes.Value("operation")
				if dep.AsString() != "jwks" || op.AsString() != "fetch" {
					t.Errorf("attributes %v", dp.Attributes.ToSlice())
				}
				if e, _ := dp.Attributes.Value("error"); e.AsBool() {
					failed += dp.Count
				} else {
					ok += dp.Count
				}
			}
		}
	}
	return ok, failed
}

// Every JWKS fetch is timed and traced: a failed one (an error status, a
// dropped connection) and the one that brings the keys.
func TestJWKSTelemetry(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})

	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	srv.status.Store(http.StatusServiceUnavailable)
	transport := &http.Transport{}
	client := &http.Client{Transport: transport}
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.HTTPClient = client
		o.KeyRetryMin, o.KeyRetryMax = 20*time.Millisecond, 20*time.Millisecond
		o.MeterProvider, o.TracerProvider = mp, tp
	})
	if client.Transport != transport {
		t.Error("New changed the caller's HTTPClient")
	}
	srv.drop.Store(true)
	eventually(t, "a dropped fetch", func() bool { return srv.fetches.Load() >= 2 })
	srv.drop.Store(false)
	srv.status.Store(http.StatusOK)
	eventually(t, "keys loaded", func() bool { return v.Ready(context.Background()) == nil })
	eventually(t, "every fetch recorded", func() bool {
		ok, failed := jwksSamples(t, reader)
		return ok == 1 && ok+failed == uint64(srv.fetches.Load())
	})

	var unavailable, dropped, loaded int
	for _, s := range spans.Ended() {
		if s.Name() != "jwks.fetch" || s.SpanKind() != trace.SpanKindClient || s.Parent().IsValid() {
			t.Errorf("span %s (%v, parent %v), want a root client span jwks.fetch", s.Name(), s.SpanKind(), s.Parent().SpanID())
		}
		set := attribute.NewSet(s.Attributes()...)
		status, _ := set.Value("http.response.status_code")
		switch {
		case status.AsInt64() == http.StatusServiceUnavailable && s.Status() == sdktrace.Status{Code: codes.Error, Description: "HTTP 503"}:
			unavailable++
		case status.AsInt64() == 0 && s.Status().Code == codes.Error:
			dropped++
		case status.AsInt64() == http.StatusOK && s.Status().Code == codes.Unset:
			loaded++
		default:
			t.Errorf("span with status code %v, status %+v", status.AsInt64(), s.Status())
		}
	}
	if unavailable < 1 || dropped < 1 || loaded != 1 {
		t.Errorf("spans: %d unavailable, %d dropped, %d loaded; want at least one of the first two, one of the last",
			unavailable, dropped, loaded)
	}
}
