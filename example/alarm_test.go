package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/ciamkit/selfservice/internal/tcpproxy"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/internal/testkit"
)

// childEnv makes the test binary run the example's main instead of the
// tests (TestMain), so that a test can kill the example with SIGKILL.
const childEnv = "SELFSERVICE_EXAMPLE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childSecret is the code secret of every example process of a test run.
var childSecret = strings.Repeat("ab", 32)

// process is the example running as a process of its own.
type process struct {
	started
	cmd    *exec.Cmd
	stderr *testkit.SyncBuffer
	exited chan error
}

// startProcess runs the example with args in a new process and waits for
// its walkthrough; the process is killed when t ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{stderr: &testkit.SyncBuffer{}, exited: make(chan error, 1)}
	p.stdout = &testkit.SyncBuffer{}
	p.cmd = exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	// One secret across restarts, as in production: the undo tokens sealed
	// in the notices open after a restart.
	p.cmd.Env = append(os.Environ(), childEnv+"=1", "SELFSERVICE_CODE_SECRET="+childSecret)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out := p.stderr.String()
		if tok := tokenLine.FindStringSubmatch(out); tok != nil {
			p.base, p.token, p.client = sendLine.FindStringSubmatch(out)[1], tok[1], clientHdr.FindStringSubmatch(out)[1]
			return p
		}
		select {
		case err := <-p.exited:
			t.Fatalf("example exited early: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no walkthrough printed:\n%s", p.stderr.String())
	return nil
}

// alarmBackend is a store set-up the example runs on.
type alarmBackend struct {
	name string
	args func(t *testing.T) []string
}

// alarmBackends are SQLite, and PostgreSQL with Redis when their services
// are set.
var alarmBackends = []alarmBackend{
	{"SQLite", func(t *testing.T) []string {
		return []string{"-store", "sqlite:" + filepath.Join(t.TempDir(), "alarm.db")}
	}},
	{"Postgres+Redis", func(t *testing.T) []string {
		pg := testenv.Lookup(t, testenv.Postgres)
		rd := testenv.Lookup(t, testenv.Redis)
		schema := "alarm_" + nonce()
		db, err := sql.Open("pgx", pg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		})
		u, err := url.Parse(pg)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return []string{"-store", u.String(), "-codes", rd}
	}},
}

func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mailpitWith returns the SMTP proxy in front of Mailpit, which the test
// cuts and hangs, and Mailpit's API.
func mailpitWith(t *testing.T) (*tcpproxy.Proxy, string) {
	t.Helper()
	smtp := testenv.Lookup(t, testenv.MailpitSMTP)
	return tcpproxy.Start(t, smtp), testenv.Lookup(t, testenv.MailpitAPI)
}

// mailpitNotices returns when the first notice to each address of domain
// arrived at Mailpit.
func mailpitNotices(t *testing.T, api, domain string) map[string]time.Time {
	t.Helper()
	got := map[string]time.Time{}
	resp, err := http.Get(api + "/api/v1/search?limit=1000&query=" + url.QueryEscape(`to:"@`+domain+`"`))
	if err != nil {
		return got
	}
	defer resp.Body.Close()
	var found struct {
		Messages []struct {
			To      []struct{ Address string }
			Subject string
			Created time.Time
		} `json:"messages"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&found)
	for _, m := range found.Messages {
		if !strings.Contains(m.Subject, noticeSubject) || len(m.To) != 1 {
			continue
		}
		if at, ok := got[m.To[0].Address]; !ok || m.Created.Before(at) {
			got[m.To[0].Address] = m.Created
		}
	}
	return got
}

// waitNotices waits up to limit for a notice to each of addrs (all of
// domain) and returns how many are missing.
func waitNotices(t *testing.T, api, domain string, addrs []string, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := mailpitNotices(t, api, domain)
		missing := 0
		for _, a := range addrs {
			if _, ok := got[a]; !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const noticeSubject = "email address of your account was changed"

// changeTo asks for a code for to, reads it from Mailpit and changes the
// demo user's address to it.
func (p *process) changeTo(t *testing.T, api, to string) {
	t.Helper()
	code := p.codeFor(t, api, to)
	p.changeWith(t, to, code)
}

func (p *process) codeFor(t *testing.T, api, to string) string {
	t.Helper()
	if st, body := p.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+to+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
		t.Fatalf("send to %s: %d %s", to, st, body)
	}
	return mailpitCode(t, api, to)
}

func (p *process) changeWith(t *testing.T, to, code string) {
	t.Helper()
	if st, body := p.post(t, "/api/v2/sdk/profile/update-email", p.token, `{"email":"`+to+`","verify_code":"`+code+`"}`); st != 200 {
		t.Fatalf("change to %s: %d %s", to, st, body)
	}
}

// TestAlarmSurvivesOutageAndKill: the mail server is down when a change is
// made, the example is killed with SIGKILL, then both come back: the
// notice reaches the old address within 60 s of the restart.
func TestAlarmSurvivesOutageAndKill(t *testing.T) {
	for _, b := range alarmBackends {
		t.Run(b.name, func(t *testing.T) {
			proxy, api := mailpitWith(t)
			args := append(b.args(t), "-load-test", "-mail", "smtp://"+proxy.Addr()+"?from=no-reply@example.com")
			n := nonce()
			domain := n + ".example.com"
			first, second := "a1@"+domain, "a2@"+domain

			p := startProcess(t, args...)
			p.changeTo(t, api, first)
			code := p.codeFor(t, api, second)
			proxy.Cut()
			p.changeWith(t, second, code)
			time.Sleep(1500 * time.Millisecond) // a few failed attempts
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-p.exited
			if _, ok := mailpitNotices(t, api, domain)[first]; ok {
				t.Fatalf("the notice arrived while the mail server was down")
			}

			proxy.Restore()
			restart := time.Now()
			startProcess(t, args...)
			if waitNotices(t, api, domain, []string{first}, 90*time.Second) > 0 {
				t.Fatalf("no notice to %s within 90 s of the restart", first)
			}
			took := time.Since(restart)
			t.Logf("%s: notice delivered %v after the restart", b.name, took.Round(100*time.Millisecond))
			if took > 60*time.Second {
				t.Errorf("the notice took %v after the restart, want at most 60 s", took)
			}
		})
	}
}

// TestAlarmSurvivesSIGTERMWithHungMail: 100 notices wait for a mail server
// that accepts connections and never answers; SIGTERM ends the example in
// time with status 0, and the next start delivers all 100.
func TestAlarmSurvivesSIGTERMWithHungMail(t *testing.T) {
	if testing.Short() {
		t.Skip("100 changes through a real mail server")
	}
	for _, b := range alarmBackends {
		t.Run(b.name, func(t *testing.T) {
			proxy, api := mailpitWith(t)
			args := append(b.args(t), "-load-test", "-mail", "smtp://"+proxy.Addr()+"?from=no-reply@example.com")
			n := nonce()
			addr := func(i int) string { return fmt.Sprintf("b%d@%s.example.com", i, n) }
			const changes = 100

			p := startProcess(t, args...)
			p.changeTo(t, api, addr(0))
			codes := make([]string, changes+1)
			for i := 1; i <= changes; i++ {
				if st, body := p.post(t, "/api/v2/sdk/email/send", "", `{"email":"`+addr(i)+`","type":"UPDATE_EMAIL_EMS","captcha_token":"dev"}`); st != 200 {
					t.Fatalf("send %d: %d %s", i, st, body)
				}
			}
			for i := 1; i <= changes; i++ {
				codes[i] = mailpitCode(t, api, addr(i))
			}
			proxy.Hang()
			for i := 1; i <= changes; i++ {
				p.changeWith(t, addr(i), codes[i])
			}
			start := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.exited:
				if err != nil {
					t.Errorf("after SIGTERM the example exited with %v, want status 0\n%s", err, p.stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the example did not exit within 30 s of SIGTERM")
			}
			t.Logf("%s: exit %v after SIGTERM", b.name, time.Since(start).Round(100*time.Millisecond))
			if !strings.Contains(p.stderr.String(), "notices=") {
				t.Errorf("shutdown did not log the notices it left:\n%s", p.stderr.String())
			}

			proxy.Restore()
			restart := time.Now()
			next := startProcess(t, args...)
			defer func() {
				if t.Failed() || os.Getenv("SELFSERVICE_ALARM_DEBUG") != "" {
					t.Logf("restarted example's log:\n%s", next.stderr.String())
				}
			}()
			var addrs []string
			for i := range changes {
				addrs = append(addrs, addr(i))
			}
			if missing := waitNotices(t, api, n+".example.com", addrs, 120*time.Second); missing > 0 {
				t.Fatalf("%d of %d notices lost after SIGTERM and restart", missing, changes)
			}
			if os.Getenv("SELFSERVICE_ALARM_DEBUG") != "" {
				for a, at := range mailpitNotices(t, api, n+".example.com") {
					if d := at.Sub(restart); d > 5*time.Second {
						t.Logf("late: %s at %v", a, d)
					}
				}
				t.Logf("first process's log:\n%s", p.stderr.String())
			}
			if strings.Contains(next.stderr.String(), "cannot be opened") {
				t.Errorf("notices lost their undo link across the restart:\n%s", next.stderr.String())
			}
			t.Logf("%s: %d notices delivered %v after the restart", b.name, changes, time.Since(restart).Round(100*time.Millisecond))
		})
	}
}

// TestAlarmSurvivesOutageUnderLoad: changes keep coming while the mail
// server is down; every notice is delivered once it is back.
func TestAlarmSurvivesOutageUnderLoad(t *testing.T) {
	outage := 5 * time.Second
	if v := os.Getenv("SELFSERVICE_ALARM_OUTAGE"); v != "" {
		var err error
		if outage, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range alarmBackends {
		t.Run(b.name, func(t *testing.T) {
			proxy, api := mailpitWith(t)
			args := append(b.args(t), "-load-test", "-mail", "smtp://"+proxy.Addr()+"?from=no-reply@example.com")
			n := nonce()
			addr := func(i int) string { return fmt.Sprintf("c%d@%s.example.com", i, n) }
			p := startProcess(t, args...)
			p.changeTo(t, api, addr(0))

			// Codes for the changes to come, mailed while the server is up.
			changes := max(int(outage/(100*time.Millisecond)), 10)
			codes := make([]string, changes+1)
			for i := 1; i <= changes; i++ {
				codes[i] = p.codeFor(t, api, addr(i))
			}
			proxy.Cut()
			down := time.Now()
			for i := 1; i <= changes; i++ {
				p.changeWith(t, addr(i), codes[i])
				time.Sleep(time.Until(down.Add(time.Duration(i) * outage / time.Duration(changes))))
			}
			proxy.Restore()
			up := time.Now()
			var addrs []string
			for i := range changes {
				addrs = append(addrs, addr(i))
			}
			if missing := waitNotices(t, api, n+".example.com", addrs, 120*time.Second); missing > 0 {
				t.Fatalf("%d of %d notices of changes made during a %v outage not delivered", missing, changes, outage)
			}
			t.Logf("%s: %d notices of a %v outage delivered %v after it", b.name, changes, outage, time.Since(up).Round(100*time.Millisecond))
		})
	}
}
