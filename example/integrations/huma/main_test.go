package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/example/integrations/internal/demotest"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/selfservicetest"
	"github.com/ciamkit/selfservice/store"
)

// known are the requests huma answers otherwise than the package's
// handlers, and why.
var known = map[string]string{
	"unknown client and a malformed body": "huma decodes and validates the body before the handler calls the Go API, which checks the client",
	"invalid token and text/plain":        "the resolver checks the Content-Type before the handler calls the Go API, which checks the token",
	"email null":                          "huma's schema types email as a string; the package takes null for empty",
	"a repeated member":                   "huma (encoding/json) keeps the last of a repeated member; the package refuses the body",
}

func TestAPI(t *testing.T) {
	t.Parallel()
	demotest.Run(t, newAPI, known)
}

// TestRetryAfter: a spent budget is a 429 with the package's body and a
// Retry-After in whole seconds.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, newAPI, func(cfg *selfservice.Config) {
		cfg.Budgets.SendsPerEmail = []store.Limit{{N: 1, Window: time.Hour}}
	})
	c := s.Client("zh")
	demotest.ExpectOK(t, c.SendCode(t, "alice.new@example.com"))
	r := c.SendCode(t, "alice.new@example.com")
	demotest.ExpectError(t, r, i18n.CodeSendLimited, "zh")
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 3600 {
		t.Errorf("Retry-After: %q, want 1 to 3600 seconds", r.Header.Get("Retry-After"))
	}
}

// TestReauth: with Config.MaxAuthAge, a token without auth_time gets
// PARAM.9204 with the same WWW-Authenticate challenge as from the package.
func TestReauth(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, newAPI, func(cfg *selfservice.Config) { cfg.MaxAuthAge = 5 * time.Minute })
	ref := httptest.NewServer(s.Service.Handler())
	t.Cleanup(ref.Close)

	token := s.Issuer.Token(t, demotest.User)
	r := s.Client("").UpdateEmail(t, token, "alice.new@example.com", "123456")
	demotest.ExpectError(t, r, i18n.CodeReauthRequired, "")
	want := selfservicetest.NewClient(ref.URL, s.Issuer.ClientID).UpdateEmail(t, token, "alice.new@example.com", "123456")
	if got, want := r.Header.Get("WWW-Authenticate"), want.Header.Get("WWW-Authenticate"); got != want || got == "" {
		t.Errorf("WWW-Authenticate: %q, the package answers %q", got, want)
	}
}

// TestOpenAPI: huma documents both operations with the headers they read,
// the bearer token for update-email, and the package's error body.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, newAPI, nil)
	r := s.Do(t, http.MethodGet, "/openapi.json", nil, "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", r.Status)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
			Security   []map[string][]string
			Responses  map[string]any
		}
		Components struct {
			Schemas map[string]struct{ Properties map[string]any }
		}
	}
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{selfservice.SendCodePath, selfservice.UpdateEmailPath} {
		op, ok := doc.Paths[path]["post"]
		if !ok {
			t.Errorf("%s: no POST operation", path)
			continue
		}
		var headers []string
		for _, p := range op.Parameters {
			if p.In == "header" {
				headers = append(headers, p.Name)
			}
		}
		for _, h := range []string{"X-operating-sys-version", "X-device-fingerprint", "X-agent", "X-device-ip", "X-client-id", "X-L"} {
			if !strings.Contains(","+strings.Join(headers, ",")+",", ","+h+",") {
				t.Errorf("%s: header %s not documented (%v)", path, h, headers)
			}
		}
		if _, ok := op.Responses["default"]; !ok {
			t.Errorf("%s: no default (error) response", path)
		}
		if secured := len(op.Security) > 0; secured != (path == selfservice.UpdateEmailPath) {
			t.Errorf("%s: security %v", path, op.Security)
		}
	}
	if props := doc.Components.Schemas["ErrorBody"].Properties; props["error_code"] == nil || props["error_msg"] == nil {
		t.Errorf("schema ErrorBody: %v, want error_code and error_msg", props)
	}
}

// TestAccept: the package's errors are JSON whatever the client accepts.
func TestAccept(t *testing.T) {
	t.Parallel()
	s := demotest.Start(t, newAPI, nil)
	h := selfservicetest.Headers(s.Issuer.ClientID, "")
	h.Set("Accept", "application/cbor")
	r := s.Do(t, http.MethodPost, selfservice.SendCodePath, h, `{"email":"a@example.com","type":"LOGIN_EMS","captcha_token":"t"}`)
	demotest.ExpectError(t, r, i18n.CodeTypeUnsupported, "")
}
