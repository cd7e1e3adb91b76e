package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics and returns its text and its families.
func (s started) scrape(t *testing.T) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, body)
	}
	return string(body), families
}

// series returns a family's samples by their labels, without the scope's:
// a counter's value, a histogram's sample count.
func series(t *testing.T, families map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no %s in the scrape", name)
	}
	got := make(map[string]float64)
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			if !strings.HasPrefix(l.GetName(), "otel_scope_") {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
		}
		key := strings.Join(labels, ",")
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			got[key] = m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			got[key] = float64(m.GetHistogram().GetSampleCount())
		case dto.MetricType_GAUGE:
			got[key] = m.GetGauge().GetValue()
		default:
			t.Fatalf("%s is a %v", name, f.GetType())
		}
	}
	return got
}

// TestMetrics runs the flow with -metrics (a code sent, a wrong code, the
// change) and checks the counts Prometheus scrapes, and that no address,
// user id, client id or token is among them.
func TestMetrics(t *testing.T) {
	s := start(t, "-metrics")
	const to = "metrics.new@example.com"
	if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+to+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	code := s.mailedCode(t, to)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"`+to+`","verify_code":"`+wrong+`"}`); st != 400 {
		t.Fatalf("wrong code: %d %s", st, body)
	}
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"`+to+`","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("change: %d %s", st, body)
	}

	// The notice to the old address is mailed after the response.
	var text string
	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(5 * time.Second)
	for {
		text, families = s.scrape(t)
		if series(t, families, "selfservice_dependency_duration_seconds")["dependency=mailer,error=false,operation=Send"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the notice was not mailed within 5s:\n%s", text)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for name, want := range map[string]float64{
		"selfservice_codes_sent_total":     1,
		"selfservice_codes_rejected_total": 1,
		"selfservice_email_changed_total":  1,
	} {
		if got := series(t, families, name); len(got) != 1 || got[""] != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	requests := series(t, families, "selfservice_request_duration_seconds")
	wantRequests := map[string]float64{
		"operation=send_code,status_class=2xx":                                      1,
		"error_code=IDAAS.SDK.CAPTCHA.0007,operation=update_email,status_class=4xx": 1,
		"operation=update_email,status_class=2xx":                                   1,
	}
	if len(requests) != len(wantRequests) {
		t.Errorf("request histograms %v, want %v", requests, wantRequests)
	}
	for k, want := range wantRequests {
		if requests[k] != want {
			t.Errorf("selfservice_request_duration_seconds{%s} has %v samples, want %v", k, requests[k], want)
		}
	}
	if n := series(t, families, "selfservice_dependency_duration_seconds")["dependency=jwks,error=false,operation=fetch"]; n < 1 {
		t.Errorf("%v JWKS fetches timed, want the Verifier's first one at least", n)
	}
	// The operational gauges: the outbox (empty once the notice is out),
	// the mail circuit (closed), the runtime.
	for name, ok := range map[string]func(float64) bool{
		"selfservice_notice_backlog":            func(v float64) bool { return v == 0 },
		"selfservice_notice_oldest_age_seconds": func(v float64) bool { return v == 0 },
		"selfservice_mail_circuit":              func(v float64) bool { return v == 0 },
		"process_runtime_go_goroutines":         func(v float64) bool { return v > 0 },
		"process_runtime_go_heap_in_use_bytes":  func(v float64) bool { return v > 0 },
	} {
		got := series(t, families, name)
		if len(got) != 1 || !ok(got[""]) {
			t.Errorf("gauge %s = %v", name, got)
		}
	}

	for _, secret := range []string{"@", "example.com", defaultSeed.Users[0].ID, s.client, s.token, code} {
		if strings.Contains(text, secret) {
			t.Errorf("the scrape holds %q:\n%s", secret, text)
		}
	}
}

// TestMetricsOff: without -metrics there is no /metrics, and -h lists the
// flag.
func TestMetricsOff(t *testing.T) {
	s := start(t)
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics without -metrics: %d, want 404", resp.StatusCode)
	}
	var usage bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, io.Discard, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v", err)
	}
	if !strings.Contains(usage.String(), "-metrics") {
		t.Errorf("usage lacks -metrics:\n%s", usage.String())
	}
}
