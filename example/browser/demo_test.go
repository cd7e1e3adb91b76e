package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ciamkit/selfservice/internal/testkit"
)

// binDir holds the example binary, built once for the whole test binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "selfservice-browser")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// exampleBinary builds github.com/ciamkit/selfservice/example in the main
// module (two folders up), once.
func exampleBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "example")
	buildOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ciamkit/selfservice/example")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build the example: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// The walkthrough's first curl command names the base URL.
var baseURL = regexp.MustCompile(`curl -i -X POST (http://\S+)/api/v2/sdk/email/send`)

// exampleServer is the example binary running as a person starts it.
type exampleServer struct {
	base   string
	stdout *testkit.SyncBuffer
}

// startExample runs the example on a free loopback port and waits for its
// walkthrough. It is stopped with SIGINT when t ends and must exit cleanly.
func startExample(t *testing.T) exampleServer {
	t.Helper()
	stdout, stderr := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	cmd := exec.Command(exampleBinary(t), "-addr", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the example exited with %v after SIGINT:\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("the example did not stop within 15s of SIGINT")
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		if m := baseURL.FindStringSubmatch(stderr.String()); m != nil {
			return exampleServer{base: m[1], stdout: stdout}
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("the example ended early: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("no walkthrough within 30s:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// mailedCode waits for the development mailer's line for to on stdout and
// returns its code.
func (s exampleServer) mailedCode(t *testing.T, to string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(s.stdout.String(), "\n") {
			var m struct{ To, Kind, Purpose, Code string }
			if json.Unmarshal([]byte(line), &m) == nil && m.To == to && m.Kind == "code" && m.Purpose == "UPDATE_EMAIL_EMS" && len(m.Code) == 6 {
				return m.Code
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no code mailed to %s on stdout:\n%s", to, s.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// text returns the text of the element with id, as a person sees it.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("reading #%s: %v", id, err)
	}
	return strings.TrimSpace(s)
}

// waitFor waits until the page's JavaScript predicate holds.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status")?.textContent ?? ""`))
		t.Fatalf("waiting for %s: %v (status: %q)", what, err, status)
	}
}

// focused returns the id of the element that has the keyboard focus.
func focused(t *testing.T, ctx context.Context) string {
	t.Helper()
	id, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ""`))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func press(t *testing.T, ctx context.Context, keys string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(keys)); err != nil {
		t.Fatalf("typing %q: %v", keys, err)
	}
}

const demoEmail = "15201657312@163.com"

// openDemo opens the demo page and waits until it shows the demo user.
func openDemo(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	waitFor(t, ctx, "the demo user", `document.getElementById("user-email").textContent === `+jsString(demoEmail))
	if got := text(t, ctx, "user-id"); got != "demo-user" {
		t.Fatalf("user id shown: %q", got)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDemoPageFlow is what a person does on the page, with the keyboard
// only: Tab to the field, type the new address, Enter; read the code the
// example printed, type it, Enter; see the new address.
func TestDemoPageFlow(t *testing.T) {
	t.Parallel()
	chromiumPath(t) // skip before building anything
	ex := startExample(t)
	ctx := newBrowser(t, 2*time.Minute)
	openDemo(t, ctx, ex.base+"/")
	if got := text(t, ctx, "user-heading"); got != "Signed in as" {
		t.Fatalf("with no Accept-Language preference for Chinese the page should be English, got %q", got)
	}

	// Every control is reachable with Tab, in reading order.
	var order []string
	for range 5 {
		press(t, ctx, kb.Tab)
		order = append(order, focused(t, ctx))
	}
	if want := []string{"lang-link", "email", "send-button", "code", "change-button"}; strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("Tab order %q, want %q", order, want)
	}

	openDemo(t, ctx, ex.base+"/")
	const newEmail = "new.address@example.com"
	press(t, ctx, kb.Tab+kb.Tab)
	if f := focused(t, ctx); f != "email" {
		t.Fatalf("two Tabs reach %q, want the email field", f)
	}
	press(t, ctx, newEmail+kb.Enter)
	waitFor(t, ctx, "the code to be sent", `document.getElementById("status").dataset.state === "sent"`)
	if got := text(t, ctx, "status"); !strings.Contains(got, newEmail) || !strings.Contains(got, "standard output") {
		t.Errorf("after sending, the page says %q", got)
	}
	if f := focused(t, ctx); f != "code" {
		t.Errorf("after sending, the focus is on %q, want the code field", f)
	}

	code := ex.mailedCode(t, newEmail)
	press(t, ctx, code+kb.Enter)
	waitFor(t, ctx, "the change", `document.getElementById("status").dataset.state === "changed"`)
	if got := text(t, ctx, "status"); !strings.Contains(got, newEmail) {
		t.Errorf("after the change, the page says %q", got)
	}
	if got := text(t, ctx, "user-email"); got != newEmail {
		t.Errorf("the current email shown is %q, want %q", got, newEmail)
	}
	// The page re-read the store: a reload shows the change too.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the changed user after a reload", `document.getElementById("user-email").textContent === `+jsString(newEmail))
}

// TestDemoPageWrongCodeChinese: a browser that prefers Chinese gets the page
// in Chinese, and the API's error for a wrong code comes back in Chinese.
func TestDemoPageWrongCodeChinese(t *testing.T) {
	t.Parallel()
	chromiumPath(t)
	ex := startExample(t)
	ctx := newBrowser(t, 2*time.Minute, chromedp.Flag("accept-lang", "zh-CN,zh"))
	openDemo(t, ctx, ex.base+"/")
	if got := text(t, ctx, "user-heading"); got != "当前登录用户" {
		t.Fatalf("with Accept-Language zh-CN the page should be Chinese, got %q", got)
	}
	lang, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.lang`))
	if err != nil || lang != "zh-Hans" {
		t.Fatalf("<html lang=%q> (%v)", lang, err)
	}

	const newEmail = "wrong.code@example.com"
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("email"), newEmail+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the code to be sent", `document.getElementById("status").dataset.state === "sent"`)
	if got := text(t, ctx, "status"); !strings.Contains(got, "验证码已发送至") {
		t.Errorf("after sending, the page says %q", got)
	}
	code := ex.mailedCode(t, newEmail)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	press(t, ctx, wrong+kb.Enter)
	waitFor(t, ctx, "the error", `document.getElementById("status").dataset.state === "error"`)
	if got := text(t, ctx, "status"); !strings.Contains(got, "验证码不正确") {
		t.Errorf("a wrong code shows %q, want the Chinese message 验证码不正确", got)
	}
	if got := text(t, ctx, "user-email"); got != demoEmail {
		t.Errorf("after a wrong code the current email shows %q", got)
	}
	// The focus stayed in the code field: erase, type the right code, Enter.
	// The code still works after one wrong try.
	if f := focused(t, ctx); f != "code" {
		t.Fatalf("after the error, the focus is on %q, want the code field", f)
	}
	press(t, ctx, strings.Repeat(kb.Backspace, len(wrong))+code+kb.Enter)
	waitFor(t, ctx, "the change", `document.getElementById("status").dataset.state === "changed"`)
	if got := text(t, ctx, "status"); !strings.Contains(got, "修改成功") || !strings.Contains(got, newEmail) {
		t.Errorf("after the change, the page says %q", got)
	}
}

// TestDemoPageDollarAddress: an address holding $&, $' and $` (valid in a
// local part) is shown as typed, not read as a replacement pattern, after
// the send and after the change.
func TestDemoPageDollarAddress(t *testing.T) {
	t.Parallel()
	chromiumPath(t)
	ex := startExample(t)
	ctx := newBrowser(t, 2*time.Minute)
	openDemo(t, ctx, ex.base+"/")

	const newEmail = "a$&b$'c$`d@example.com"
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("email"), newEmail+kb.Enter)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the code to be sent", `document.getElementById("status").dataset.state === "sent"`)
	if got, want := text(t, ctx, "status"), "A code was sent to "+newEmail+"."; !strings.HasPrefix(got, want) {
		t.Errorf("after sending, the page says %q, want it to start with %q", got, want)
	}
	press(t, ctx, ex.mailedCode(t, newEmail)+kb.Enter)
	waitFor(t, ctx, "the change", `document.getElementById("status").dataset.state === "changed"`)
	if got, want := text(t, ctx, "status"), "Done: your email is now "+newEmail+"."; got != want {
		t.Errorf("after the change, the page says %q, want %q", got, want)
	}
	if got := text(t, ctx, "user-email"); got != newEmail {
		t.Errorf("the current email shown is %q, want %q", got, newEmail)
	}
}
