package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/mail"
)

var (
	tokenLine = regexp.MustCompile(`export TOKEN=(\S+)`)
	sendLine  = regexp.MustCompile(`curl -i -X POST (http://\S+)/api/v2/sdk/email/send`)
	clientHdr = regexp.MustCompile(`X-client-id: ([^']+)'`)
)

// started is a running example server as a user sees it: the walkthrough it
// printed and the mails on its stdout.
type started struct {
	base, token, client string
	stdout              *testkit.SyncBuffer
	stop                func(t *testing.T)
}

func start(t *testing.T, args ...string) started {
	t.Helper()
	r := runExample(t, tokenLine, args...)
	out := r.stderr.String()
	return started{
		base:   sendLine.FindStringSubmatch(out)[1],
		token:  tokenLine.FindStringSubmatch(out)[1],
		client: clientHdr.FindStringSubmatch(out)[1],
		stdout: r.stdout,
		stop:   r.stop,
	}
}

// running is the example run in this test's process.
type running struct {
	stdout, stderr *testkit.SyncBuffer
	// stop cancels run and checks that it ended cleanly; it also runs
	// when the test ends, and only once.
	stop func(t *testing.T)
}

// runExample runs the example with -addr 127.0.0.1:0 and args until the
// test ends, and returns once its stderr matches ready: the test fails if
// run ends first, or after 20 s.
func runExample(t *testing.T, ready *regexp.Regexp, args ...string) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := running{stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), r.stdout, r.stderr) }()
	var once sync.Once
	r.stop = func(t *testing.T) {
		once.Do(func() {
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
	}
	t.Cleanup(func() { r.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for !ready.MatchString(r.stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the example printed no %q:\n%s", ready, r.stderr.String())
		}
		select {
		case err := <-done:
			done <- err // for stop
			t.Fatalf("run ended early: %v\n%s", err, r.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return r
}

func (s started) post(t *testing.T, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-operating-sys-version", "linux6.1")
	req.Header.Set("X-device-fingerprint", "demo-device-1")
	req.Header.Set("X-agent", "go test")
	req.Header.Set("X-client-id", s.client)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Every answer must be what the OpenAPI document says.
	resp, err := (&http.Client{Transport: openapitest.Transport(t, nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mailedCode returns the code of the last mail printed to to.
func (s started) mailedCode(t *testing.T, to string) string {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(s.stdout.String()), "\n") {
		var m struct{ To, Kind, Purpose, Code string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		if m.To == to && m.Kind == "code" && m.Purpose == "UPDATE_EMAIL_EMS" && len(m.Code) == 6 {
			return m.Code
		}
	}
	t.Fatalf("no code mailed to %s in:\n%s", to, s.stdout.String())
	return ""
}

// revertToken waits for the notice printed for the old address to and
// returns its undo token.
func (s started) revertToken(t *testing.T, to string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(strings.TrimSpace(s.stdout.String()), "\n") {
			var m struct {
				To, Kind    string
				RevertToken string `json:"revert_token"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.To == to && m.Kind == "email_changed" && m.RevertToken != "" {
				return m.RevertToken
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no notice to %s in:\n%s", to, s.stdout.String())
	return ""
}

// TestWalkthrough does what the printed curl commands do.
func TestWalkthrough(t *testing.T) {
	s := start(t)
	if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"new.address@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	code := s.mailedCode(t, "new.address@example.com")
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"new.address@example.com","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("update: %d %s", st, body)
	}
	// Retrying the request that succeeded stays harmless.
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"New.Address@example.com","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("retry: %d %s", st, body)
	}
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", "", `{}`); st != 400 || !strings.Contains(body, "IDAAS.SDK.PARAM.0015") {
		t.Fatalf("no token: %d %s", st, body)
	}
	// The old address is sent the notice, whose token undoes the change,
	// once.
	undo := s.revertToken(t, "15201657312@163.com")
	if st, body := s.post(t, "/api/v2/sdk/profile/revert-email", "", `{"revert_token":"`+undo+`"}`); st != 200 {
		t.Fatalf("undo: %d %s", st, body)
	}
	if st, body := s.post(t, "/api/v2/sdk/profile/revert-email", "", `{"revert_token":"`+undo+`"}`); st != 400 || !strings.Contains(body, "IDAAS.SDK.REVERT.9302") {
		t.Fatalf("undo again: %d %s", st, body)
	}
	resp, err := http.Get(s.base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestSeedFile: -seed adds its clients and users to the demo ones, which
// the walkthrough keeps using.
func TestSeedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.json")
	seed := `{"clients":[{"client_id":"my-app"}],"users":[{"id":"u-42","email":"Me@Example.com"},{"id":"u-43","email":"me@example.com"}]}`
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two users with one address cannot both be seeded.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-addr", "127.0.0.1:0", "-seed", path}, io.Discard, io.Discard); err == nil {
		t.Fatal("a seed with a duplicate address was accepted")
	}

	seed = `{"clients":[{"client_id":"my-app"}],"users":[{"id":"u-42","email":"Me@Example.com"}]}`
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "-seed", path)
	if s.client != "nTo1eRIub60vPb54WeE6aojPwYwImtl4" {
		t.Fatalf("walkthrough uses client %q, want the demo client", s.client)
	}
	demo := s
	if st, body := demo.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"15201657312@163.com","verify_code":"000000"}`); st != 200 {
		t.Fatalf("the demo user's own address again: %d %s", st, body)
	}
	mine := s
	mine.client = "my-app"
	if st, body := mine.post(t, "/api/v2/sdk/email/send", "", `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send for the seeded client: %d %s", st, body)
	}
	// The seeded address is taken: the demo user cannot have it.
	if st, body := demo.post(t, "/api/v2/sdk/email/send", "", `{"email":"me@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	code := demo.mailedCode(t, "me@example.com")
	if st, body := demo.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"me@example.com","verify_code":"`+code+`"}`); st != 400 || !strings.Contains(body, "IDAAS.SDK.USER.0036") {
		t.Fatalf("taking the seeded user's address: %d %s", st, body)
	}
}

// TestHelp: -h prints the usage and is no failure.
func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, io.Discard, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v, want flag.ErrHelp, which main exits 0 on", err)
	}
	for _, f := range []string{"-addr", "-store", "-codes", "-mail", "-seed", "-load-test", "-metrics", "-db-conns"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage lacks %s:\n%s", f, stderr.String())
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-issuer", "https://id.example.com"},
		{"-jwks-url", "https://id.example.com/keys"},
		{"-nope"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// TestSQLiteKeepsChange restarts the example on one SQLite file: the changed
// email is still there, seeding did not overwrite it.
func TestSQLiteKeepsChange(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "demo.db")
	ownAgain := `{"email":"kept@example.com","verify_code":"000000"}`

	first := start(t, "-store", db)
	if st, body := first.post(t, "/api/v2/sdk/profile/update-email", first.token, ownAgain); st != 400 || !strings.Contains(body, "IDAAS.SDK.CAPTCHA.0007") {
		t.Fatalf("before the change: %d %s", st, body)
	}
	if st, body := first.post(t, "/api/v2/sdk/email/send", "", `{"email":"kept@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	code := first.mailedCode(t, "kept@example.com")
	if st, body := first.post(t, "/api/v2/sdk/profile/update-email", first.token, `{"email":"kept@example.com","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("change: %d %s", st, body)
	}
	first.stop(t)

	second := start(t, "-store", db)
	// Only the user's own address succeeds with a wrong code.
	if st, body := second.post(t, "/api/v2/sdk/profile/update-email", second.token, ownAgain); st != 200 {
		t.Fatalf("after restart: %d %s", st, body)
	}
}

// TestSQLiteFilesPrivate: the database and its -wal and -shm files hold
// addresses, so only their owner may read them.
func TestSQLiteFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "private.db")
	s := start(t, "-store", "sqlite:"+path)
	if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"p@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %v, want -rw-------", filepath.Base(name), perm)
		}
	}
	s.stop(t)
}

// TestSMTPMail runs the walkthrough with -mail pointing at Mailpit: the code
// arrives by SMTP instead of on stdout.
func TestSMTPMail(t *testing.T) {
	smtpAddr := testenv.Lookup(t, testenv.MailpitSMTP)
	api := testenv.Lookup(t, testenv.MailpitAPI)
	s := start(t, "-mail", "smtp://"+smtpAddr+"?from=no-reply@example.com")
	to := fmt.Sprintf("example-%d@example.com", time.Now().UnixNano())
	if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+to+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send: %d %s", st, body)
	}
	if out := s.stdout.String(); out != "" {
		t.Fatalf("with -mail smtp:// nothing should be printed on stdout, got %q", out)
	}
	code := mailpitCode(t, api, to)
	if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"`+to+`","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("update: %d %s", st, body)
	}

	// Two more changes; the notice to each old address links to the demo
	// page with its undo token in the fragment. The first undo goes back
	// to the address it names and voids the later one; neither works twice.
	second, third := "2nd-"+to, "3rd-"+to
	for _, next := range []string{second, third} {
		if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+next+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
			t.Fatalf("send: %d %s", st, body)
		}
		if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"`+next+`","verify_code":"`+mailpitCode(t, api, next)+`"}`); st != 200 {
			t.Fatalf("update: %d %s", st, body)
		}
	}
	first, later := mailpitUndoToken(t, api, to, s.base), mailpitUndoToken(t, api, second, s.base)
	undo := func(token string) (int, string) {
		return s.post(t, "/api/v2/sdk/profile/revert-email", "", `{"revert_token":"`+token+`"}`)
	}
	if st, body := undo(first); st != 200 {
		t.Fatalf("undo: %d %s", st, body)
	}
	for name, token := range map[string]string{"the same token": first, "the later change's token": later} {
		if st, body := undo(token); st != 400 || !strings.Contains(body, "IDAAS.SDK.REVERT.9302") {
			t.Errorf("undo with %s: %d %s", name, st, body)
		}
	}
}

// undoLink is the link of a notice, to the demo page with the token in the
// fragment.
var undoLink = regexp.MustCompile(`(http://[^\s"<>]+)/#revert_token=([A-Za-z0-9_%-]+)`)

// mailpitUndoToken polls Mailpit for the notice sent to addr and returns
// the undo token of its link, which must lead to base's demo page.
func mailpitUndoToken(t *testing.T, api, addr, base string) string {
	t.Helper()
	text := mailpitNotice(t, api, addr)
	link := undoLink.FindStringSubmatch(text)
	if link == nil {
		t.Fatalf("the notice to %s has no undo link:\n%s", addr, text)
	}
	if link[1] != base {
		t.Errorf("the undo link leads to %s, want the demo page at %s", link[1], base)
	}
	token, err := url.QueryUnescape(link[2])
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// mailpitNotice polls Mailpit for the notice sent to addr and returns its
// text.
func mailpitNotice(t *testing.T, api, addr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(api + "/api/v1/search?query=" + url.QueryEscape(`to:"`+addr+`"`))
		if err == nil {
			var found struct {
				Messages []struct{ ID, Subject string } `json:"messages"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&found)
			resp.Body.Close()
			for _, m := range found.Messages {
				if !strings.Contains(m.Subject, "was changed") {
					continue
				}
				resp, err := http.Get(api + "/api/v1/message/" + m.ID)
				if err != nil {
					continue
				}
				var msg struct{ Text string }
				_ = json.NewDecoder(resp.Body).Decode(&msg)
				resp.Body.Close()
				return msg.Text
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no notice reached %s", addr)
	return ""
}

// mailpitCode polls Mailpit's API for the newest mail to addr and returns
// the six-digit code in it.
func mailpitCode(t *testing.T, api, addr string) string {
	t.Helper()
	sixDigits := regexp.MustCompile(`\b\d{6}\b`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(api + "/api/v1/search?query=" + url.QueryEscape(`to:"`+addr+`"`))
		if err == nil {
			var found struct {
				Messages []struct {
					ID      string
					Snippet string
				} `json:"messages"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&found)
			resp.Body.Close()
			for _, m := range found.Messages {
				if c := sixDigits.FindString(m.Snippet); c != "" {
					return c
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no mail with a code reached %s", addr)
	return ""
}

// TestNoticeUndoLink: a notice sent by SMTP links to the undo page the mail
// URL names, else to the demo page when the example serves it where a mail
// may link (http only to a loopback host), else to none, and then advises
// contacting support; none of these stops the example from starting.
func TestNoticeUndoLink(t *testing.T) {
	t.Parallel()
	const mailURL = "smtp://127.0.0.1:2525?tls=none&from=no-reply@example.com"
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, c := range []struct {
		name    string
		demo    bool // the built-in issuer's demo page is served
		addr    net.Addr
		mail    string
		want    string // the link's page; "" for no link
		warning bool   // the start-up log warns that notices have no link
	}{
		{"demo page on loopback", true, tcp("127.0.0.1:8080"), mailURL, "http://127.0.0.1:8080/", false},
		{"demo page on IPv6 loopback", true, tcp("[::1]:8080"), mailURL, "http://[::1]:8080/", false},
		{"demo page on every address", true, tcp("0.0.0.0:8080"), mailURL, "http://localhost:8080/", false},
		{"demo page on another address", true, tcp("192.0.2.1:8080"), mailURL, "", true},
		{"external issuer", false, tcp("127.0.0.1:8080"), mailURL, "", true},
		{"external issuer on another address", false, tcp("192.0.2.1:8080"), mailURL, "", true},
		{"external issuer, the operator's undo page", false, tcp("192.0.2.1:8080"),
			mailURL + "&revert_url=" + url.QueryEscape("https://app.example.com/undo"), "https://app.example.com/undo", false},
		{"demo page, the operator's undo page", true, tcp("127.0.0.1:8080"),
			mailURL + "&revert_url=" + url.QueryEscape("https://app.example.com/undo"), "https://app.example.com/undo", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var revertURL string
			if c.demo {
				revertURL = undoPage(c.addr)
			}
			var logs bytes.Buffer
			m, err := newMailer(c.mail, io.Discard, revertURL, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("the example would not start: %v", err)
			}
			smtp, ok := m.(*mail.SMTPMailer)
			if !ok {
				t.Fatalf("newMailer returned a %T", m)
			}
			content, err := smtp.Render(selfservice.Message{Kind: selfservice.MailEmailChanged, To: "old@example.com",
				NewEmail: "n***@example.com", ChangedAt: time.Now(), RevertToken: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			link := c.want + "#revert_token=tok"
			switch {
			case c.want != "" && !strings.Contains(content.Text, link):
				t.Errorf("the notice does not link to %s:\n%s", link, content.Text)
			case c.want == "" && strings.Contains(content.Text, "revert_token"):
				t.Errorf("the notice links to a page nobody serves:\n%s", content.Text)
			case c.want == "" && !strings.Contains(content.Text, "contact support"):
				t.Errorf("the notice without a link does not advise contacting support:\n%s", content.Text)
			}
			if got := strings.Contains(logs.String(), "no undo link"); got != c.warning {
				t.Errorf("warned of no undo link: %v, want %v\n%s", got, c.warning, logs.String())
			}
		})
	}
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startExternal runs the example with -issuer, trusting a test issuer whose
// JWKS an httptest server serves, and -mail mailURL; it returns the base
// URL, the issuer and the example's stderr.
func startExternal(t *testing.T, mailURL string) (string, *devissuer.Issuer, *testkit.SyncBuffer) {
	t.Helper()
	iss, err := devissuer.New("https://issuer.example")
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(iss)
	t.Cleanup(jwks.Close)
	r := runExample(t, listeningLine, "-issuer", iss.URL(), "-jwks-url", jwks.URL, "-mail", mailURL)
	return "http://" + listeningLine.FindStringSubmatch(r.stderr.String())[1], iss, r.stderr
}

// TestExternalIssuerNoDemoUndoLink: with -issuer there is no demo page, so
// notices do not link to it, and the operator is told at start-up.
func TestExternalIssuerNoDemoUndoLink(t *testing.T) {
	t.Parallel()
	base, _, stderr := startExternal(t, "smtp://127.0.0.1:2525?tls=none&from=no-reply@example.com")
	if resp, _ := get(t, base+"/", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET / with -issuer: %d, want 404: no demo page", resp.StatusCode)
	}
	if !strings.Contains(stderr.String(), "no undo link") {
		t.Errorf("no warning that notices carry no undo link:\n%s", stderr.String())
	}
}

// TestExternalIssuerNotice changes an address with -issuer and -mail
// pointing at Mailpit: the notice to the old address links to no page of
// the example's and advises contacting support.
func TestExternalIssuerNotice(t *testing.T) {
	smtpAddr := testenv.Lookup(t, testenv.MailpitSMTP)
	api := testenv.Lookup(t, testenv.MailpitAPI)
	t.Parallel()
	base, iss, _ := startExternal(t, "smtp://"+smtpAddr+"?tls=none&from=no-reply@example.com")
	client := defaultSeed.Clients[0].ClientID
	token, err := iss.IDToken(defaultSeed.Users[0].ID, client, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := started{base: base, token: token, client: client}
	// Two changes: the notice of the second goes to an address of this
	// test's own, not to the demo user's, which other runs share.
	to := fmt.Sprintf("external-%d@example.com", time.Now().UnixNano())
	for _, next := range []string{to, "2nd-" + to} {
		if st, body := s.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+next+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
			t.Fatalf("send: %d %s", st, body)
		}
		if st, body := s.post(t, "/api/v2/sdk/profile/update-email", s.token, `{"email":"`+next+`","verify_code":"`+mailpitCode(t, api, next)+`"}`); st != 200 {
			t.Fatalf("update: %d %s", st, body)
		}
	}
	text := mailpitNotice(t, api, to)
	if strings.Contains(text, "revert_token") || strings.Contains(text, base) {
		t.Errorf("the notice links to a page the example does not serve:\n%s", text)
	}
	if !strings.Contains(text, "contact support") {
		t.Errorf("the notice does not advise contacting support:\n%s", text)
	}
}
