// Package prom serves the example's metrics in Prometheus's text format,
// through OpenTelemetry's SDK and Prometheus exporter. It is its own package
// so that the example builds it only when asked (-tags metrics): the
// exporter and the protocol buffers it brings are a fifth of a first build.
package prom

import (
	"context"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprometheus "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Metrics returns an OpenTelemetry SDK MeterProvider whose metrics the
// handler serves in Prometheus's text format, from a registry of its own
// (so that two servers in one process, as in the tests, do not collide in
// the default one), and the provider's Shutdown.
func Metrics() (metric.MeterProvider, http.Handler, func(context.Context) error, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprometheus.New(otelprometheus.WithRegisterer(reg))
	if err != nil {
		return nil, nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exporter),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "selfservice-example"))),
	)
	if err := observeRuntime(mp.Meter("selfservice-example")); err != nil {
		return nil, nil, nil, err
	}
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), mp.Shutdown, nil
}

// observeRuntime adds the process's goroutines and heap to the metrics:
// what a hung dependency or a flood shows first.
func observeRuntime(m metric.Meter) error {
	goroutines, err := m.Int64ObservableGauge("process.runtime.go.goroutines", metric.WithDescription("Goroutines that exist."))
	if err != nil {
		return err
	}
	heap, err := m.Int64ObservableGauge("process.runtime.go.heap.in_use", metric.WithUnit("By"),
		metric.WithDescription("Bytes of heap spans in use (runtime/metrics /memory/classes/heap/objects:bytes)."))
	if err != nil {
		return err
	}
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(goroutines, int64(runtime.NumGoroutine()))
		rtmetrics.Read(sample)
		o.ObserveInt64(heap, int64(sample[0].Value.Uint64()))
		return nil
	}, goroutines, heap)
	return err
}
