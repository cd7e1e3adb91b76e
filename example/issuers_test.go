package main

import (
	"regexp"
	"strings"
	"testing"
)

var secondTokenLine = regexp.MustCompile(`export SECOND_TOKEN=(\S+)`)

// TestSecondIssuer: with -second-issuer the example verifies tokens of two
// issuers, each for its own application only.
func TestSecondIssuer(t *testing.T) {
	r := runExample(t, secondTokenLine, "-second-issuer")
	out := r.stderr.String()
	demo := started{
		base:   sendLine.FindStringSubmatch(out)[1],
		token:  tokenLine.FindStringSubmatch(out)[1],
		client: clientHdr.FindStringSubmatch(out)[1],
		stdout: r.stdout,
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
