package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/testkit"
)

var secondTokenLine = regexp.MustCompile(`export SECOND_TOKEN=(\S+)`)

// TestSecondIssuer: with -second-issuer the example verifies tokens of two
// issuers, each for its own application only.
func TestSecondIssuer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-second-issuer"}, stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after shutdown", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not shut down within 15s")
		}
	})
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for !secondTokenLine.MatchString(out) {
		if time.Now().After(deadline) {
			t.Fatalf("no second token printed:\n%s", out)
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		out = stderr.String()
	}
	demo := started{
		base:   sendLine.FindStringSubmatch(out)[1],
		token:  tokenLine.FindStringSubmatch(out)[1],
		client: clientHdr.FindStringSubmatch(out)[1],
		stdout: stdout,
	}
	second := demo
	second.client, second.token = secondClientID, secondTokenLine.FindStringSubmatch(out)[1]
	if !strings.Contains(out, "X-client-id: "+secondClientID+"'") {
		t.Errorf("no curl command for the second application:\n%s", out)
	}

	// The demo user's own address: 200 once the token is accepted.
	own := `{"email":"15201657312@163.com","verify_code":"000000"}`
	tests := []struct {
		name   string
		as     started
		token  string
		status int
		code   string
	}{
		{"demo token, demo client", demo, demo.token, 200, ""},
		{"second token, second client", second, second.token, 200, ""},
		{"second token, demo client", demo, second.token, 400, "IDAAS.SDK.PARAM.0016"},
		{"demo token, second client", second, demo.token, 400, "IDAAS.SDK.PARAM.0016"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := tt.as.post(t, "/api/v2/sdk/profile/update-email", tt.token, own)
			if st != tt.status || !strings.Contains(body, tt.code) {
				t.Errorf("status %d, body %s; want %d %s", st, body, tt.status, tt.code)
			}
		})
	}
}
