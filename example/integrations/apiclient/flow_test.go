package apiclient_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/example/integrations/apiclient"
)

// server is the example server running as a process, as its walkthrough
// (stderr) describes it, and the mails it prints (stdout).
type server struct {
	base, token, client string
	mails               <-chan mail
}

// mail is one line the example's development mailer prints.
type mail struct {
	To, Kind, Purpose, Code string
}

var (
	tokenLine = regexp.MustCompile(`export TOKEN=(\S+)`)
	baseLine  = regexp.MustCompile(`curl -i -X POST (http://[^/\s]+)/`)
	clientHdr = regexp.MustCompile(`X-client-id: ([^']+)'`)
)

// startExample builds github.com/ciamkit/selfservice/example (this
// module's tool, the repository's code through the replace directive) and
// runs it on a free loopback port until the test ends.
func startExample(t *testing.T) server {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "example")
	build := exec.Command(goCmd, "build", "-o", bin, "github.com/ciamkit/selfservice/example")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The example shuts down gracefully on SIGINT and exits 0.
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the example exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("the example did not stop within 15s of SIGINT")
		}
	})

	mails := make(chan mail, 64)
	go func() {
		defer close(mails)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m mail
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				mails <- m
			}
		}
	}()

	walkthrough := make(chan string, 1)
	go func() {
		var seen strings.Builder
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		sent := false
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if !sent && clientHdr.MatchString(seen.String()) {
				walkthrough <- seen.String()
				sent = true
			}
		}
		if !sent {
			walkthrough <- seen.String()
		}
	}()

	select {
	case out := <-walkthrough:
		tok, base, client := tokenLine.FindStringSubmatch(out), baseLine.FindStringSubmatch(out), clientHdr.FindStringSubmatch(out)
		if tok == nil || base == nil || client == nil {
			t.Fatalf("the example printed no walkthrough:\n%s", out)
		}
		return server{base: base[1], token: tok[1], client: client[1], mails: mails}
	case <-time.After(30 * time.Second):
		t.Fatal("the example printed no walkthrough within 30s")
	}
	return server{}
}

// code waits for the code mailed to addr.
func (s server) code(t *testing.T, addr string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.mails:
			if !ok {
				t.Fatal("the example's stdout closed")
			}
			if m.To == addr && m.Kind == "code" && m.Purpose == string(apiclient.UPDATEEMAILEMS) && len(m.Code) == 6 {
				return m.Code
			}
		case <-timeout:
			t.Fatalf("no code mailed to %s within 10s", addr)
		}
	}
}

func (s server) sendParams(lang string) *apiclient.SendCodeParams {
	ip := "192.168.1.2"
	return &apiclient.SendCodeParams{
		XOperatingSysVersion: "linux6.1",
		XDeviceFingerprint:   "apiclient-flow",
		XDeviceIp:            &ip,
		XAgent:               "apiclient flow test",
		XL:                   &lang,
		XClientId:            s.client,
	}
}

func (s server) updateParams(lang string) *apiclient.UpdateEmailParams {
	p := s.sendParams(lang)
	return &apiclient.UpdateEmailParams{
		XOperatingSysVersion: p.XOperatingSysVersion,
		XDeviceFingerprint:   p.XDeviceFingerprint,
		XDeviceIp:            p.XDeviceIp,
		XAgent:               p.XAgent,
		XL:                   p.XL,
		XClientId:            p.XClientId,
	}
}

// bearer adds the id_token: the document's security scheme, which
// generated clients leave to the caller.
func bearer(token string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

// method sends the request with another method, as a confused client
// would.
func method(m string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Method = m
		return nil
	}
}

// strictError decodes body as exactly {error_code, error_msg}.
func strictError(t *testing.T, body []byte) apiclient.Error {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var e apiclient.Error
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %q is not {error_code, error_msg}: %v", body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("error body %q has data after the object", body)
	}
	return e
}

// TestFlow runs the walkthrough through the generated client only: a code
// is sent, read from the example's mail log and used to change the demo
// user's email; then one error of each kind the example can produce comes
// back as the document's typed error.
func TestFlow(t *testing.T) {
	s := startExample(t)
	ctx := context.Background()
	c, err := apiclient.NewClientWithResponses(s.base)
	if err != nil {
		t.Fatal(err)
	}
	const addr = "apiclient.flow@example.com"

	sent, err := c.SendCodeWithResponse(ctx, s.sendParams("en"), apiclient.SendCodeJSONRequestBody{
		Email: addr, Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev",
	})
	if err != nil {
		t.Fatal(err)
	}
	if sent.StatusCode() != http.StatusOK || len(sent.Body) != 0 || sent.ContentType() != "application/json" ||
		sent.Headers200 == nil || sent.Headers200.CacheControl != "no-store" {
		t.Fatalf("send: %d %q %q %+v, want 200, application/json, no body, no-store", sent.StatusCode(), sent.ContentType(), sent.Body, sent.Headers200)
	}
	code := s.code(t, addr)

	changed, err := c.UpdateEmailWithResponse(ctx, s.updateParams("en"),
		apiclient.UpdateEmailJSONRequestBody{Email: addr, VerifyCode: code}, bearer(s.token))
	if err != nil {
		t.Fatal(err)
	}
	if changed.StatusCode() != http.StatusOK || len(changed.Body) != 0 || changed.ContentType() != "application/json" ||
		changed.Headers200 == nil || changed.Headers200.CacheControl != "no-store" {
		t.Fatalf("update: %d %q %q %+v, want 200, application/json, no body, no-store", changed.StatusCode(), changed.ContentType(), changed.Body, changed.Headers200)
	}

	// Each error below is answered by the document's typed error for its
	// status; the table keeps the order the example needs (the send limit
	// and the wrong-code budget come last).
	type answer struct {
		status int
		typed  *apiclient.Error
		body   []byte
		lang   string
	}
	send := func(p *apiclient.SendCodeParams, body apiclient.SendCodeJSONRequestBody, edit ...apiclient.RequestEditorFn) answer {
		r, err := c.SendCodeWithResponse(ctx, p, body, edit...)
		if err != nil {
			t.Fatal(err)
		}
		typed := map[int]*apiclient.Error{400: r.JSON400, 413: r.JSON413, 415: r.JSON415, 429: r.JSON429, 500: r.JSON500}[r.StatusCode()]
		return answer{r.StatusCode(), typed, r.Body, r.HTTPResponse.Header.Get("Content-Language")}
	}
	update := func(p *apiclient.UpdateEmailParams, do func(*apiclient.UpdateEmailParams) (*apiclient.UpdateEmailResponse, error)) answer {
		r, err := do(p)
		if err != nil {
			t.Fatal(err)
		}
		typed := map[int]*apiclient.Error{400: r.JSON400, 401: r.JSON401, 413: r.JSON413, 415: r.JSON415, 429: r.JSON429, 500: r.JSON500}[r.StatusCode()]
		return answer{r.StatusCode(), typed, r.Body, r.HTTPResponse.Header.Get("Content-Language")}
	}
	wrongCode := func(p *apiclient.UpdateEmailParams) (*apiclient.UpdateEmailResponse, error) {
		return c.UpdateEmailWithResponse(ctx, p, apiclient.UpdateEmailJSONRequestBody{Email: "other@example.com", VerifyCode: "000000"}, bearer(s.token))
	}
	noAgent := s.sendParams("en")
	noAgent.XAgent = ""

	var lastRetryAfter int
	tests := []struct {
		name   string
		do     func() answer
		status int
		code   string
		lang   string
	}{
		{name: "wrong code", status: 400, code: "IDAAS.SDK.CAPTCHA.0007", lang: "en",
			do: func() answer { return update(s.updateParams("en"), wrongCode) }},
		{name: "wrong code, in Chinese", status: 400, code: "IDAAS.SDK.CAPTCHA.0007", lang: "zh",
			do: func() answer { return update(s.updateParams("zh"), wrongCode) }},
		{name: "bad email", status: 400, code: "IDAAS.SDK.USER.0021", lang: "en",
			do: func() answer {
				return send(s.sendParams("en"), apiclient.SendCodeJSONRequestBody{Email: "not an address", Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev"})
			}},
		{name: "missing device header", status: 400, code: "IDAAS.SDK.PARAM.0001", lang: "en",
			do: func() answer {
				return send(noAgent, apiclient.SendCodeJSONRequestBody{Email: addr, Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev"})
			}},
		{name: "other send type", status: 400, code: "IDAAS.SDK.PARAM.9203", lang: "en",
			do: func() answer {
				return send(s.sendParams("en"), apiclient.SendCodeJSONRequestBody{Email: addr, Type: "LOGIN_EMS", CaptchaToken: "dev"})
			}},
		{name: "no token", status: 400, code: "IDAAS.SDK.PARAM.0015", lang: "en",
			do: func() answer {
				return update(s.updateParams("en"), func(p *apiclient.UpdateEmailParams) (*apiclient.UpdateEmailResponse, error) {
					return c.UpdateEmailWithResponse(ctx, p, apiclient.UpdateEmailJSONRequestBody{Email: addr, VerifyCode: "000000"})
				})
			}},
		{name: "wrong method", status: 405, code: "IDAAS.SDK.REQ.9101", lang: "en",
			do: func() answer {
				// The document lists the 405 under the other methods, which
				// cfg.yaml leaves out of the client: its body is decoded here.
				a := send(s.sendParams("en"), apiclient.SendCodeJSONRequestBody{Email: addr, Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev"}, method(http.MethodPut))
				if a.status == http.StatusMethodNotAllowed {
					e := strictError(t, a.body)
					a.typed = &e
				}
				return a
			}},
		{name: "body too large", status: 413, code: "IDAAS.SDK.REQ.9103", lang: "en",
			do: func() answer {
				return send(s.sendParams("en"), apiclient.SendCodeJSONRequestBody{Email: strings.Repeat("a", 5000) + "@example.com", Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev"})
			}},
		{name: "content type", status: 415, code: "IDAAS.SDK.REQ.9102", lang: "zh",
			do: func() answer {
				return update(s.updateParams("zh"), func(p *apiclient.UpdateEmailParams) (*apiclient.UpdateEmailResponse, error) {
					return c.UpdateEmailWithBodyWithResponse(ctx, p, "text/plain", strings.NewReader(`{"email":"x@example.com","verify_code":"000000"}`), bearer(s.token))
				})
			}},
		{name: "send too often", status: 429, code: "IDAAS.SDK.CAPTCHA.9201", lang: "en",
			do: func() answer {
				r, err := c.SendCodeWithResponse(ctx, s.sendParams("en"), apiclient.SendCodeJSONRequestBody{Email: addr, Type: apiclient.UPDATEEMAILEMS, CaptchaToken: "dev"})
				if err != nil {
					t.Fatal(err)
				}
				if r.Headers429 != nil {
					lastRetryAfter = r.Headers429.RetryAfter
				}
				return answer{r.StatusCode(), r.JSON429, r.Body, r.HTTPResponse.Header.Get("Content-Language")}
			}},
		{name: "wrong-code budget spent", status: 429, code: "IDAAS.SDK.CAPTCHA.9205", lang: "en",
			do: func() answer {
				// The demo user's budget is 10 wrong codes an hour; two
				// are spent above.
				for range 20 {
					r, err := wrongCode(s.updateParams("en"))
					if err != nil {
						t.Fatal(err)
					}
					if r.StatusCode() == http.StatusTooManyRequests {
						lastRetryAfter = r.Headers429.RetryAfter
						return answer{r.StatusCode(), r.JSON429, r.Body, r.HTTPResponse.Header.Get("Content-Language")}
					}
				}
				t.Fatal("20 wrong codes and the budget is still not spent")
				return answer{}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lastRetryAfter = 0
			got := tt.do()
			if got.status != tt.status {
				t.Fatalf("status %d (%s), want %d", got.status, got.body, tt.status)
			}
			if got.typed == nil {
				t.Fatalf("the client decoded no typed error from %q", got.body)
			}
			if got.typed.ErrorCode != tt.code || got.typed.ErrorMsg == "" {
				t.Errorf("typed error %+v, want code %s and a message", *got.typed, tt.code)
			}
			if strict := strictError(t, got.body); strict != *got.typed {
				t.Errorf("strict decoding %+v, typed %+v", strict, *got.typed)
			}
			if got.lang != tt.lang {
				t.Errorf("Content-Language %q, want %q", got.lang, tt.lang)
			}
			if tt.status == http.StatusTooManyRequests && lastRetryAfter <= 0 {
				t.Errorf("Retry-After %d, want whole seconds > 0", lastRetryAfter)
			}
		})
	}
}
