package mail_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/mail"
)

// newMailer returns a mailer for the fake server s with edit applied to
// its options.
func newMailer(t *testing.T, s *smtpServer, edit func(*mail.Options)) *mail.SMTPMailer {
	t.Helper()
	opts := mail.Options{
		Host:     s.host,
		Port:     s.port,
		TLS:      mail.TLSNone,
		From:     "no-reply@example.com",
		FromName: "Example Accounts",
	}
	if edit != nil {
		edit(&opts)
	}
	m, err := mail.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	closeAtEnd(t, m)
	return m
}

// closeAtEnd closes m when the test ends, before the servers it talks to
// (cleanups run last registered first), so that no session outlives it.
func closeAtEnd(t *testing.T, m *mail.SMTPMailer) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	valid := mail.Options{Host: "smtp.example.com", From: "no-reply@example.com"}
	tests := []struct {
		name string
		edit func(*mail.Options)
		want error // nil: New succeeds
	}{
		{"minimal", func(*mail.Options) {}, nil},
		{"every option", func(o *mail.Options) {
			*o = mail.Options{Host: "smtp.example.com", Port: 2525, Username: "u", Password: "p",
				TLS: mail.TLSImplicit, TLSConfig: &tls.Config{}, From: "no-reply@example.com",
				FromName: "示例 Accounts", Timeout: time.Second, Location: time.Local, Bundle: i18n.Default(),
				RevertURL: "https://app.example.com/account/undo-email",
				MaxConns:  1, IdleTimeout: time.Minute, MaxMessagesPerConn: 1}
		}, nil},
		{"IPv6 host", func(o *mail.Options) { o.Host = "::1" }, nil},
		{"no host", func(o *mail.Options) { o.Host = "" }, selfservice.ErrConfig},
		{"host with a port", func(o *mail.Options) { o.Host = "smtp.example.com:25" }, selfservice.ErrConfig},
		{"host with CRLF", func(o *mail.Options) { o.Host = "smtp.example.com\r\n" }, selfservice.ErrConfig},
		{"negative port", func(o *mail.Options) { o.Port = -1 }, selfservice.ErrConfig},
		{"port too large", func(o *mail.Options) { o.Port = 65536 }, selfservice.ErrConfig},
		{"username without password", func(o *mail.Options) { o.Username = "u" }, selfservice.ErrConfig},
		{"password without username", func(o *mail.Options) { o.Password = "p" }, selfservice.ErrConfig},
		{"unknown TLS policy", func(o *mail.Options) { o.TLS = mail.TLSPolicy(42) }, selfservice.ErrConfig},
		{"negative timeout", func(o *mail.Options) { o.Timeout = -time.Second }, selfservice.ErrConfig},
		{"negative MaxConns", func(o *mail.Options) { o.MaxConns = -1 }, selfservice.ErrConfig},
		{"negative IdleTimeout", func(o *mail.Options) { o.IdleTimeout = -time.Second }, selfservice.ErrConfig},
		{"negative MaxMessagesPerConn", func(o *mail.Options) { o.MaxMessagesPerConn = -1 }, selfservice.ErrConfig},
		{"no From", func(o *mail.Options) { o.From = "" }, mail.ErrInvalidAddress},
		{"From not an address", func(o *mail.Options) { o.From = "no-reply" }, mail.ErrInvalidAddress},
		{"From with a display name", func(o *mail.Options) { o.From = "Example <no-reply@example.com>" }, mail.ErrInvalidAddress},
		{"From in angle brackets", func(o *mail.Options) { o.From = "<no-reply@example.com>" }, mail.ErrInvalidAddress},
		{"From with two addresses", func(o *mail.Options) { o.From = "a@example.com, b@example.com" }, mail.ErrInvalidAddress},
		{"From with CRLF", func(o *mail.Options) { o.From = "no-reply@example.com\r\nBcc: x@example.com" }, mail.ErrHeaderInjection},
		{"From with LF", func(o *mail.Options) { o.From = "no-reply@example.com\nBcc: x@example.com" }, mail.ErrHeaderInjection},
		{"FromName with CRLF", func(o *mail.Options) { o.FromName = "Example\r\nBcc: x@example.com" }, mail.ErrHeaderInjection},
		{"FromName with CR", func(o *mail.Options) { o.FromName = "Example\rBcc: x@example.com" }, mail.ErrHeaderInjection},
		{"FromName with NUL", func(o *mail.Options) { o.FromName = "Example\x00" }, mail.ErrHeaderInjection},
		{"FromName with NEL", func(o *mail.Options) { o.FromName = "Example\u0085Bcc: x@example.com" }, mail.ErrHeaderInjection},
		{"FromName with a line separator", func(o *mail.Options) { o.FromName = "Example\u2028Bcc: x@example.com" }, mail.ErrHeaderInjection},
		{"FromName not UTF-8", func(o *mail.Options) { o.FromName = "Example \xff" }, selfservice.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := valid
			tt.edit(&opts)
			m, err := mail.New(opts)
			if tt.want == nil {
				if err != nil || m == nil {
					t.Fatalf("New = %v, %v; want a mailer", m, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, selfservice.ErrConfig) {
				t.Fatalf("New error = %v, want %v wrapped in ErrConfig", err, tt.want)
			}
			if m != nil {
				t.Error("New returned a mailer with its error")
			}
		})
	}
}

// countingListener accepts TCP connections on loopback and counts them; it
// never answers.
type countingListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func listen(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns = append(l.conns, c)
			l.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range l.accepted() {
			c.Close()
		}
	})
	return l
}

func (l *countingListener) accepted() []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]net.Conn(nil), l.conns...)
}

func (l *countingListener) port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// assertNoConnection proves that nothing connected to l before now: it
// connects itself and checks that its own connection is the first one
// accepted (connections queue in order).
func (l *countingListener) assertNoConnection(t *testing.T) {
	t.Helper()
	probe, err := net.Dial("tcp", l.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	deadline := time.Now().Add(2 * time.Second)
	for len(l.accepted()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	conns := l.accepted()
	if len(conns) == 0 {
		t.Fatal("the probe connection was never accepted")
	}
	if got, want := conns[0].RemoteAddr().String(), probe.LocalAddr().String(); got != want {
		t.Errorf("a connection from %s came before the probe's from %s: the mailer connected", got, want)
	}
}

// Header injection: no address or name with a control character reaches
// the SMTP server; the mailer refuses before connecting.
func TestSendRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		to   string
		typ  string
		want error
	}{
		{"To with CRLF and a header", "new@example.com\r\nBcc: victim@example.com", "", mail.ErrHeaderInjection},
		{"To with CRLF", "new@example.com\r\n", "", mail.ErrHeaderInjection},
		{"To with LF", "new@example.com\nBcc: victim@example.com", "", mail.ErrHeaderInjection},
		{"To with CR", "new@example.com\rBcc: victim@example.com", "", mail.ErrHeaderInjection},
		{"To with NUL", "new\x00@example.com", "", mail.ErrHeaderInjection},
		{"To with a tab", "new@example.com\t", "", mail.ErrHeaderInjection},
		{"To with NEL", "new@example.com\u0085Bcc: victim@example.com", "", mail.ErrHeaderInjection},
		{"To with a line separator", "new@example.com\u2028Bcc: victim@example.com", "", mail.ErrHeaderInjection},
		{"To empty", "", "", mail.ErrInvalidAddress},
		{"To not an address", "new.example.com", "", mail.ErrInvalidAddress},
		{"To with a display name", "New <new@example.com>", "", mail.ErrInvalidAddress},
		{"To with two addresses", "new@example.com, victim@example.com", "", mail.ErrInvalidAddress},
		{"To with spaces around", " new@example.com ", "", mail.ErrInvalidAddress},
		{"To not UTF-8", "new\xff@example.com", "", mail.ErrInvalidAddress},
		{"unknown kind", "new@example.com", "sms", mail.ErrUnknownKind},
	}
	l := listen(t)
	m, err := mail.New(mail.Options{Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	for _, tt := range tests {
		msg := codeMsg(language.English)
		msg.To = tt.to
		if tt.typ != "" {
			msg.Kind = selfservice.MailKind(tt.typ)
		}
		err := m.Send(context.Background(), msg)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Send error = %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "042917") {
			t.Errorf("%s: error %q shows the code", tt.name, err)
		}
	}
	// From and FromName are checked by New, so their mailer never exists.
	for _, opts := range []mail.Options{
		{Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com\r\nBcc: victim@example.com"},
		{Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com", FromName: "Accounts\r\nBcc: victim@example.com"},
	} {
		if _, err := mail.New(opts); !errors.Is(err, mail.ErrHeaderInjection) {
			t.Errorf("New(%q, %q) error = %v, want ErrHeaderInjection", opts.From, opts.FromName, err)
		}
	}
	l.assertNoConnection(t)
}

// The listener above would have seen a connection: a valid send does
// connect.
func TestSendConnects(t *testing.T) {
	t.Parallel()
	l := listen(t)
	m, err := mail.New(mail.Options{Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.Send(ctx, codeMsg(language.English)); err == nil {
		t.Fatal("Send to a silent server succeeded")
	}
	// The listener accepts on a goroutine of its own, maybe after Send
	// gave up.
	waitFor(t, "the connection is accepted", func() bool { return len(l.accepted()) > 0 })
	if n := len(l.accepted()); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestSendHonoursContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		greet bool // the server says 220, then never answers again
	}{
		{"server never greets", false},
		{"server stalls after its greeting", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := listen(t)
			m, err := mail.New(mail.Options{
				Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com",
				Timeout: time.Minute, // the context, not Timeout, must end the send
			})
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, m)
			if tt.greet {
				done := make(chan struct{})
				defer func() { <-done }()
				go func() {
					defer close(done)
					for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
						if conns := l.accepted(); len(conns) > 0 {
							_, _ = conns[0].Write([]byte("220 slow ESMTP\r\n"))
							return
						}
					}
				}()
			}
			msg := codeMsg(language.English)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = m.Send(ctx, msg)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Send succeeded against a silent server")
			}
			if elapsed > 2*time.Second {
				t.Errorf("Send returned after %v, want about 300ms", elapsed)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Send error = %v, want one wrapping context.DeadlineExceeded", err)
			}
			if strings.Contains(err.Error(), msg.Code) || strings.Contains(err.Error(), msg.To) {
				t.Errorf("error %q shows the code or the recipient", err)
			}
			// The mailer hung up: the server reads EOF.
			waitFor(t, "the connection is accepted", func() bool { return len(l.accepted()) > 0 })
			conns := l.accepted()
			if len(conns) != 1 {
				t.Fatalf("%d connections, want 1", len(conns))
			}
			_ = conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.Copy(io.Discard, conns[0]); err != nil {
				t.Errorf("connection still open after Send returned: %v", err)
			}
		})
	}
}

func TestSendContextDoneBeforeSend(t *testing.T) {
	t.Parallel()
	l := listen(t)
	m, err := mail.New(mail.Options{Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Send(ctx, codeMsg(language.English)); !errors.Is(err, context.Canceled) {
		t.Errorf("Send error = %v, want context.Canceled", err)
	}
	l.assertNoConnection(t)
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	l := listen(t)
	m, err := mail.New(mail.Options{
		Host: "127.0.0.1", Port: l.port(), TLS: mail.TLSNone, From: "no-reply@example.com",
		Timeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	start := time.Now()
	if err := m.Send(context.Background(), codeMsg(language.English)); err == nil {
		t.Fatal("Send succeeded against a silent server")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Send returned after %v, want about 300ms", elapsed)
	}
}

func TestSendErrorHidesRecipientAndCode(t *testing.T) {
	t.Parallel()
	s := startSMTP(t, &smtpServer{rcpt: func(arg string) string {
		// Servers quote the recipient, in any case.
		return "550 5.1.1 " + strings.ToUpper(arg) + " unknown; code 042917"
	}}, "")
	m := newMailer(t, s, nil)
	msg := codeMsg(language.English)
	msg.To = "New.Address@Example.com"
	err := m.Send(context.Background(), msg)
	if err == nil {
		t.Fatal("Send succeeded though the server refused the recipient")
	}
	text := err.Error()
	if strings.Contains(strings.ToLower(text), "new.address@example.com") {
		t.Errorf("error %q shows the recipient", text)
	}
	if !strings.Contains(text, "N***@Example.com") {
		t.Errorf("error %q lacks the masked recipient", text)
	}
	if strings.Contains(text, "042917") {
		t.Errorf("error %q shows the code", text)
	}
	var sendErr *gomail.SendError
	if !errors.As(err, &sendErr) {
		t.Errorf("error %v does not unwrap to go-mail's *SendError", err)
	} else if sendErr.IsTemp() {
		t.Error("a 550 reply is reported as temporary")
	}
}

// The undo token is as secret as a code: a reply that quotes it, as
// given or as it stands in the link, shows stars.
func TestSendErrorHidesRevertToken(t *testing.T) {
	t.Parallel()
	const token = "Rv7/tok+en=9XQ"
	escaped := url.QueryEscape(token) // Rv7%2Ftok%2Ben%3D9XQ
	s := startSMTP(t, &smtpServer{rcpt: func(string) string {
		return "550 5.7.1 rejected: " + token + " / " + testRevertURL + "#revert_token=" + escaped
	}}, "")
	m := newMailer(t, s, func(o *mail.Options) { o.RevertURL = testRevertURL })
	for _, lang := range []language.Tag{language.English, language.Und} {
		err := m.Send(context.Background(), tokenNotice(lang, token))
		if err == nil {
			t.Fatal("Send succeeded though the server refused the recipient")
		}
		text := err.Error()
		for _, part := range []string{token, escaped, "Rv7", "9XQ", "/tok", "%2Ftok"} {
			if strings.Contains(text, part) {
				t.Errorf("error %q shows %q of the token", text, part)
			}
		}
		if !strings.Contains(text, "rejected: **************") {
			t.Errorf("error %q lacks the starred token", text)
		}
		var sendErr *gomail.SendError
		if !errors.As(err, &sendErr) {
			t.Errorf("error %v does not unwrap to go-mail's *SendError", err)
		}
	}
}

func TestSendTLS(t *testing.T) {
	t.Parallel()
	serverCfg, clientCfg := serverTLS(t)
	tests := []struct {
		name      string
		server    *smtpServer
		policy    mail.TLSPolicy
		clientTLS *tls.Config
		auth      bool // log in with a username and password
		wantTLS   bool // delivered over TLS; ignored when wantErr
		wantErr   bool
	}{
		{name: "implicit TLS", server: &smtpServer{implicit: serverCfg}, policy: mail.TLSImplicit, clientTLS: clientCfg, wantTLS: true},
		{name: "implicit TLS with PLAIN", server: &smtpServer{implicit: serverCfg, auth: "PLAIN LOGIN"}, policy: mail.TLSImplicit, clientTLS: clientCfg, auth: true, wantTLS: true},
		{name: "implicit TLS to an untrusted certificate", server: &smtpServer{implicit: serverCfg}, policy: mail.TLSImplicit, wantErr: true},
		{name: "implicit TLS to a clear-text server", server: &smtpServer{}, policy: mail.TLSImplicit, clientTLS: clientCfg, wantErr: true},
		{name: "mandatory STARTTLS offered", server: &smtpServer{starttls: serverCfg}, policy: mail.TLSMandatory, clientTLS: clientCfg, wantTLS: true},
		{name: "mandatory STARTTLS with PLAIN", server: &smtpServer{starttls: serverCfg, auth: "PLAIN"}, policy: mail.TLSMandatory, clientTLS: clientCfg, auth: true, wantTLS: true},
		{name: "mandatory STARTTLS not offered", server: &smtpServer{}, policy: mail.TLSMandatory, clientTLS: clientCfg, wantErr: true},
		{name: "mandatory STARTTLS to an untrusted certificate", server: &smtpServer{starttls: serverCfg}, policy: mail.TLSMandatory, wantErr: true},
		{name: "opportunistic STARTTLS offered", server: &smtpServer{starttls: serverCfg}, policy: mail.TLSOpportunistic, clientTLS: clientCfg, wantTLS: true},
		{name: "opportunistic STARTTLS not offered", server: &smtpServer{}, policy: mail.TLSOpportunistic, clientTLS: clientCfg, wantTLS: false},
		{name: "no TLS though offered", server: &smtpServer{starttls: serverCfg}, policy: mail.TLSNone, wantTLS: false},
		{name: "AUTH offered but no credentials", server: &smtpServer{auth: "PLAIN LOGIN"}, policy: mail.TLSNone, wantTLS: false},
		{name: "credentials but no AUTH offered", server: &smtpServer{}, policy: mail.TLSNone, auth: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTP(t, tt.server, "")
			m := newMailer(t, s, func(o *mail.Options) {
				o.TLS = tt.policy
				o.TLSConfig = tt.clientTLS
				if tt.auth {
					o.Username, o.Password = "mailer", "s3cret"
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := m.Send(ctx, codeMsg(language.English))
			got := s.received()
			if tt.wantErr {
				if err == nil {
					t.Fatal("Send succeeded")
				}
				if len(got) != 0 {
					t.Errorf("the server received %d mails", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("the server received %d mails, want 1", len(got))
			}
			if got[0].tls != tt.wantTLS {
				t.Errorf("delivered over TLS = %v, want %v", got[0].tls, tt.wantTLS)
			}
			if wantAuth := "PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00mailer\x00s3cret")); tt.auth && got[0].auth != wantAuth {
				t.Errorf("AUTH %q, want %q", got[0].auth, wantAuth)
			}
			if !tt.auth && got[0].auth != "" {
				t.Errorf("AUTH %q sent without credentials", got[0].auth)
			}
		})
	}
}

// PLAIN credentials never cross an unencrypted connection to anything but
// localhost: 127.0.0.2 is loopback, but not "localhost" to the checks.
func TestSendPlainNeedsTLS(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	ln.Close()
	serverCfg, clientCfg := serverTLS(t)
	for _, tt := range []struct {
		name    string
		server  *smtpServer
		policy  mail.TLSPolicy
		wantErr bool
	}{
		{"clear text", &smtpServer{auth: "PLAIN LOGIN"}, mail.TLSOpportunistic, true},
		{"STARTTLS", &smtpServer{auth: "PLAIN LOGIN", starttls: serverCfg}, mail.TLSOpportunistic, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startSMTP(t, tt.server, "127.0.0.2:0")
			m := newMailer(t, s, func(o *mail.Options) {
				o.TLS, o.TLSConfig = tt.policy, clientCfg
				o.Username, o.Password = "mailer", "s3cret"
			})
			err := m.Send(context.Background(), codeMsg(language.English))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Send error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, smtp.ErrUnencrypted) {
				t.Errorf("Send error = %v, want go-mail's smtp.ErrUnencrypted", err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
			for _, r := range s.received() {
				if r.auth != "" && !r.tls {
					t.Errorf("AUTH %q sent in clear text", r.auth)
				}
			}
		})
	}
}

// parsedMail is a received mail decoded: headers, subject and both parts.
type parsedMail struct {
	header  netmail.Header
	subject string
	text    string
	html    string
}

func parseMail(t *testing.T, data string) parsedMail {
	t.Helper()
	msg, err := netmail.ReadMessage(strings.NewReader(data + "\r\n"))
	if err != nil {
		t.Fatalf("mail does not parse: %v\n%s", err, data)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject does not decode: %v", err)
	}
	p := parsedMail{header: msg.Header, subject: subject}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q, want multipart/alternative", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = part
		if part.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			body = quotedprintable.NewReader(part)
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		ct, cparams, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if !strings.EqualFold(cparams["charset"], "utf-8") {
			t.Errorf("%s part has charset %q, want UTF-8", ct, cparams["charset"])
		}
		switch ct {
		case "text/plain":
			p.text = string(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")))
		case "text/html":
			p.html = string(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")))
		default:
			t.Errorf("unexpected part %q", ct)
		}
	}
	return p
}

// The mail on the wire: headers encoded, both parts equal to Render's.
func TestSendWritesTheRenderedMail(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		msg  selfservice.Message
		lang string // Content-Language
	}{
		{"code", codeMsg(language.Chinese), "zh"},
		{"notice", noticeMsg(language.English), "en"},
		{"notice with an undo link in every language", tokenNotice(language.Und, testToken), "en, zh"},
	} {
		msg := tt.msg
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTP(t, &smtpServer{}, "")
			shanghai := time.FixedZone("CST", 8*3600)
			m := newMailer(t, s, func(o *mail.Options) {
				o.FromName = "示例 Accounts"
				o.Location = shanghai
				o.RevertURL = testRevertURL
			})
			if err := m.Send(context.Background(), msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := s.received()
			if len(got) != 1 {
				t.Fatalf("the server received %d mails, want 1", len(got))
			}
			if got[0].rcpt != "TO:<"+msg.To+">" {
				t.Errorf("RCPT %q, want TO:<%s>", got[0].rcpt, msg.To)
			}
			p := parseMail(t, got[0].data)
			want, err := m.Render(msg)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Kind == selfservice.MailEmailChanged && !strings.Contains(p.text, "2031-05-06 15:08 (UTC+08:00)") {
				t.Errorf("text part does not show the time in Options.Location:\n%s", p.text)
			}
			if links := textLinks(p.text, testRevertURL); msg.RevertToken != "" && (len(links) != 2 || linkToken(t, links[0], testRevertURL) != msg.RevertToken) {
				t.Errorf("text part's undo links %q do not carry the token", links)
			}
			if p.subject != want.Subject {
				t.Errorf("Subject %q, want %q", p.subject, want.Subject)
			}
			if p.text != want.Text {
				t.Errorf("text part:\n%s\nwant:\n%s", p.text, want.Text)
			}
			if p.html != want.HTML {
				t.Errorf("HTML part:\n%s\nwant:\n%s", p.html, want.HTML)
			}
			from, err := p.header.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Name != "示例 Accounts" || from[0].Address != "no-reply@example.com" {
				t.Errorf("From %q (%v), want 示例 Accounts <no-reply@example.com>", p.header.Get("From"), err)
			}
			to, err := p.header.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Address != msg.To || to[0].Name != "" {
				t.Errorf("To %q (%v), want <%s>", p.header.Get("To"), err, msg.To)
			}
			for name, want := range map[string]string{
				"Content-Language":         tt.lang,
				"Auto-Submitted":           "auto-generated",
				"X-Auto-Response-Suppress": "All",
				"Mime-Version":             "1.0",
			} {
				if got := p.header.Get(name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			if id := p.header.Get("Message-Id"); !strings.HasSuffix(id, "@example.com>") {
				t.Errorf("Message-ID %q is not in From's domain", id)
			}
			if _, err := p.header.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			if ua := p.header.Get("User-Agent") + p.header.Get("X-Mailer"); ua != "" {
				t.Errorf("the mail advertises its mailer: %q", ua)
			}
		})
	}
}

func TestSendConcurrently(t *testing.T) {
	t.Parallel()
	s := startSMTP(t, &smtpServer{}, "")
	m := newMailer(t, s, nil)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- m.Send(context.Background(), codeMsg(language.English)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := len(s.received()); got != n {
		t.Errorf("the server received %d mails, want %d", got, n)
	}
}
