package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/selfservicetest"
)

// lines is an io.Writer that hands each complete line written to it to a
// channel; the programs write from several goroutines.
type lines struct {
	mu  sync.Mutex
	buf []byte
	c   chan string
}

func newLines() *lines { return &lines{c: make(chan string, 1024)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.c <- string(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// next returns the first line to come that matches re, or fails t.
func (l *lines) next(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-l.c:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %s within 10s", re)
		}
	}
}

// TestRun runs a program as main does, on a free port, with the package's
// own handler: the walkthrough's token, signed by the development issuer
// and verified against its JWKS over HTTP, changes the demo user's email
// with the code the mailer prints; cancelling the context stops it cleanly.
func TestRun(t *testing.T) {
	t.Parallel()
	stdout, stderr := newLines(), newLines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "test", "", []string{"-addr", "127.0.0.1:0"}, stdout, stderr,
			func(svc *selfservice.Service, _ selfservice.Config) http.Handler { return svc.Handler() })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of the cancel")
		}
	})

	token := stderr.next(t, regexp.MustCompile(`export TOKEN=(\S+)`))[1]
	base := stderr.next(t, regexp.MustCompile(`curl -i -X POST (http://[^/\s]+)/`))[1]
	c := selfservicetest.NewClient(base, ClientID)
	const newEmail = "new.address@example.com"
	c.SendCode(t, newEmail).Expect(t, http.StatusOK, "")
	var mail struct{ To, Code string }
	if err := json.Unmarshal([]byte(stdout.next(t, regexp.MustCompile(`^\{.*"code".*\}$`))[0]), &mail); err != nil || mail.To != newEmail {
		t.Fatalf("mail %+v, %v", mail, err)
	}
	c.UpdateEmail(t, token, newEmail, mail.Code).Expect(t, http.StatusOK, "")
}
