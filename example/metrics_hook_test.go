package main

import "github.com/ciamkit/selfservice/example/internal/prom"

// The tests serve -metrics whatever the build tags.
func init() { prometheusMetrics = prom.Metrics }
