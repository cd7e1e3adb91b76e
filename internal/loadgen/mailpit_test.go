package loadgen_test

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/internal/loadgen"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/mail"
)

type fakeMessage struct {
	ID      string
	To      []struct{ Address string }
	Snippet string
}

// fakeMailpit plays Mailpit's API: the search, the messages whose
// recipient holds the query's address, newest first; and the event
// stream, a WebSocket that announces each delivered message.
type fakeMailpit struct {
	t        *testing.T
	mu       sync.Mutex
	messages []fakeMessage // oldest first
	searches int
	streams  []net.Conn
	pongs    [][]byte // the payloads of the pongs the client sent
	wg       sync.WaitGroup
}

func startFakeMailpit(t *testing.T) (*fakeMailpit, string) {
	f := &fakeMailpit{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		f.mu.Lock()
		for _, c := range f.streams {
			c.Close()
		}
		f.mu.Unlock()
		srv.Close()
		f.wg.Wait()
	})
	return f, srv.URL
}

// deliver stores a message and, when announce is set, announces it on
// every stream.
func (f *fakeMailpit) deliver(announce bool, to, snippet string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := fakeMessage{ID: fmt.Sprintf("id-%d", len(f.messages)), Snippet: snippet}
	m.To = append(m.To, struct{ Address string }{to})
	f.messages = append(f.messages, m)
	if announce {
		ev, _ := json.Marshal(map[string]any{"Type": "new", "Data": m})
		for _, c := range f.streams {
			_, _ = c.Write(serverFrame(0x1, ev))
		}
	}
}

// ping sends a ping with payload on every stream.
func (f *fakeMailpit) ping(payload string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.streams {
		_, _ = c.Write(serverFrame(0x9, []byte(payload)))
	}
}

func serverFrame(op byte, p []byte) []byte {
	b := []byte{0x80 | op}
	switch {
	case len(p) < 126:
		b = append(b, byte(len(p)))
	case len(p) < 1<<16:
		b = append(b, 126, byte(len(p)>>8), byte(len(p)))
	default:
		panic("test frame too large")
	}
	return append(b, p...)
}

func (f *fakeMailpit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/events":
		f.serveEvents(w, r)
	case "/api/v1/search":
		f.serveSearch(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeMailpit) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("Sec-Websocket-Version") != "13" {
		http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
		return
	}
	sum := sha1.Sum([]byte(r.Header.Get("Sec-Websocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	// Registered before the answer, as Mailpit's hub does: once
	// connected, the client misses no mail.
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams = append(f.streams, conn)
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	_ = rw.Flush()
	// Read the client's frames: pongs, masked as a client's must be.
	f.wg.Go(func() {
		for {
			var h [6]byte
			if _, err := io.ReadFull(rw, h[:]); err != nil {
				return
			}
			n := int(h[1] & 0x7f)
			p := make([]byte, n)
			if h[1]&0x80 == 0 || n > 125 {
				f.t.Errorf("the client sent an unmasked or long frame: % x", h)
				return
			}
			if _, err := io.ReadFull(rw, p); err != nil {
				return
			}
			for i := range p {
				p[i] ^= h[2+i%4]
			}
			if h[0] == 0x8A {
				f.mu.Lock()
				f.pongs = append(f.pongs, p)
				f.mu.Unlock()
			}
		}
	})
}

func (f *fakeMailpit) serveSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("query")
	addr, ok := strings.CutPrefix(q, `to:"`)
	addr, ok2 := strings.CutSuffix(addr, `"`)
	if !ok || !ok2 {
		http.Error(w, "bad query", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.searches++
	var out struct{ Messages []fakeMessage }
	for i := len(f.messages) - 1; i >= 0; i-- {
		if strings.Contains(strings.ToLower(f.messages[i].To[0].Address), strings.ToLower(addr)) {
			out.Messages = append(out.Messages, f.messages[i])
		}
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeMailpit) counts() (searches, pongs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.searches, len(f.pongs)
}

const (
	codeMail   = "Enter this verification code to confirm your new email address: %s The code expires in 10 min."
	noticeMail = "The email address of your account was changed to b***@example.com at 2031-05-06 15:08 (UTC+00:00). " +
		"If this was not you, undo the change now: https://app.example.com/undo#revert_token=123456-654321_123456 ..."
)

// Code takes the newest code mail to the address itself from the event
// stream, without a search: not a notice (its dates and token hold digits,
// never a six-digit word), not a mail to an address that merely contains
// it; and it waits for a mail that has not arrived yet.
func TestMailpitCode(t *testing.T) {
	t.Parallel()
	f, api := startFakeMailpit(t)
	m, err := loadgen.NewMailpit(t.Context(), api+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const to = "A.r1@example.com"
	f.deliver(true, "a.r1@example.com", fmt.Sprintf(codeMail, "111111"))
	f.deliver(true, "xa.r1@example.com", fmt.Sprintf(codeMail, "999999"))
	f.deliver(true, "a.r1@example.com", fmt.Sprintf(codeMail, "222222"))
	f.deliver(true, "a.r1@example.com", noticeMail)
	// The stream is read in order: once the last mail's code is in,
	// every earlier mail has been read.
	f.deliver(true, "sync@example.com", fmt.Sprintf(codeMail, "000000"))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if code, err := m.Code(ctx, "sync@example.com"); err != nil || code != "000000" {
		t.Fatalf("Code = %q, %v; want 000000", code, err)
	}
	if code, err := m.Code(ctx, to); err != nil || code != "222222" {
		t.Errorf("Code = %q, %v; want the newest code 222222", code, err)
	}

	done := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		code, _ := m.Code(ctx, "late@example.com")
		done <- code
	}()
	time.Sleep(20 * time.Millisecond)
	f.deliver(true, "late@example.com", fmt.Sprintf(codeMail, "333333"))
	select {
	case code := <-done:
		if code != "333333" {
			t.Errorf("Code = %q, want 333333", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Code did not see a mail that arrived after it started waiting")
	}
	if searches, _ := f.counts(); searches != 0 {
		t.Errorf("%d searches, want none: the stream brought every code", searches)
	}

	// A taken code is not returned again.
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if code, err := m.Code(ctx, "late@example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Code again = %q, %v; want the deadline", code, err)
	}
}

// A code the stream did not bring, here mailed before NewMailpit, is
// found by a search; and the stream bringing it late does not make it
// come back.
func TestMailpitCodeSearched(t *testing.T) {
	t.Parallel()
	f, api := startFakeMailpit(t)
	f.deliver(false, "early@example.com", fmt.Sprintf(codeMail, "444444"))
	m, err := loadgen.NewMailpit(t.Context(), api, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if code, err := m.Code(ctx, "early@example.com"); err != nil || code != "444444" {
		t.Fatalf("Code = %q, %v; want 444444 found by a search", code, err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("Code searched after %v, want after a second of waiting for the stream", took)
	}
	if searches, _ := f.counts(); searches != 1 {
		t.Errorf("%d searches, want 1", searches)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	if code, err := m.Code(ctx, "early@example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Code again = %q, %v; want the deadline: that code was taken", code, err)
	}
}

// The stream's pings are answered, with masked pongs of their payload;
// Close ends the stream.
func TestMailpitPing(t *testing.T) {
	t.Parallel()
	f, api := startFakeMailpit(t)
	m, err := loadgen.NewMailpit(t.Context(), api, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ping("are you there")
	deadline := time.Now().Add(5 * time.Second)
	for _, pongs := f.counts(); pongs == 0 && time.Now().Before(deadline); _, pongs = f.counts() {
		time.Sleep(5 * time.Millisecond)
	}
	f.mu.Lock()
	if len(f.pongs) != 1 || string(f.pongs[0]) != "are you there" {
		t.Errorf("pongs %q, want one with the ping's payload", f.pongs)
	}
	f.mu.Unlock()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestNewMailpitRefuses(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"http://192.0.2.1:8025", "https://127.0.0.1:8025", "127.0.0.1:8025", ""} {
		if _, err := loadgen.NewMailpit(t.Context(), api, nil); !errors.Is(err, loadgen.ErrOptions) {
			t.Errorf("NewMailpit(%q) = %v, want ErrOptions", api, err)
		}
	}
}

// The whole flow with the codes mailed over SMTP to Mailpit through the
// pooled mailer and read back from its API.
func TestRunMailpit(t *testing.T) {
	t.Parallel()
	addr := testenv.Lookup(t, testenv.MailpitSMTP)
	api := testenv.Lookup(t, testenv.MailpitAPI)
	opts, err := mail.ParseURL("smtp://" + addr + "?from=no-reply@example.com&timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := mail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := mailer.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	codes, err := loadgen.NewMailpit(t.Context(), api, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer codes.Close()
	us := usersNamed(t, "lg-"+strings.ToLower(rand.Text()[:10]), 4)
	base, _ := serve(t, us, mailer)
	ropts := loadgen.Options{
		BaseURL: base, ClientID: testkit.Client, Users: us, Codes: codes,
		Concurrency: 2, Duration: time.Minute, Requests: 120,
	}
	rep, err := loadgen.Run(t.Context(), ropts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unexpected != 0 || rep.Changes == 0 {
		t.Fatalf("%d changes, %d unexpected answers: %q", rep.Changes, rep.Unexpected, rep.Samples)
	}
	if bad, err := loadgen.Check(t.Context(), ropts, rep.Final); err != nil || len(bad) != 0 {
		t.Errorf("Check: %v, %q", err, bad)
	}
}
