//go:build metrics

package main

import "github.com/ciamkit/selfservice/example/internal/prom"

// -metrics serves the Prometheus exporter, built with -tags metrics only:
// it and the protocol buffers it brings are a fifth of a first build.
func init() { prometheusMetrics = prom.Metrics }
