package mail_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCert is a self-signed certificate for 127.0.0.1, 127.0.0.2 and
// localhost, made once per test binary.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// serverTLS returns the fake server's TLS configuration and a client
// configuration trusting it.
func serverTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool}
}

// received is one mail the fake server accepted.
type received struct {
	session int    // the session it came on, 1 for the first
	tls     bool   // the transaction ran over TLS
	auth    string // the AUTH line's argument, "" without AUTH
	rcpt    string
	data    string // the message, CRLF line ends
}

// action is what the fake server does instead of its usual reply.
type action struct {
	reply  string        // sent instead of the usual reply, if not ""
	hangup bool          // close the connection after reply (or instead of any)
	hang   bool          // answer nothing more: wait for the client to hang up
	delay  time.Duration // wait before replying
}

// session is what the fake server saw of one connection.
type session struct {
	quit  bool // the client said QUIT
	ended bool // the connection is closed
}

// smtpServer is a scripted SMTP server on loopback for what Mailpit cannot
// play: TLS either way, refused recipients, authentication checks, lost
// and stalled connections, and a count of its sessions.
type smtpServer struct {
	host string
	port int

	implicit *tls.Config             // TLS from the first byte when set
	starttls *tls.Config             // STARTTLS offered when set
	auth     string                  // AUTH mechanisms offered, e.g. "PLAIN LOGIN"
	rcpt     func(arg string) string // reply to RCPT TO; default 250
	// idle closes a session that sent no command for that long, with
	// "421 4.4.2 idle" first; servers do. Default: 5s.
	idle time.Duration
	// on, when set, may replace the reply to a command of a session
	// (numbered from 1): the verb in capitals, or "." for the end of a
	// message, after which the mail is received whatever on does.
	on func(verb string, session int) action

	mu       sync.Mutex
	mails    []received
	sessions []*session
	open     int // sessions open now, until QUIT or the end of the connection
	peak     int // the most open at once
}

// startSMTP serves s on addr (127.0.0.1:0 when empty) until the test ends.
func startSMTP(t *testing.T, s *smtpServer, addr string) *smtpServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if s.idle == 0 {
		s.idle = 5 * time.Second
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr)
	s.host, s.port = a.IP.String(), a.Port
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.sessions = append(s.sessions, &session{})
			n := len(s.sessions)
			s.open++
			s.peak = max(s.peak, s.open)
			s.mu.Unlock()
			wg.Go(func() { s.serve(conn, n) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.mails...)
}

// seen returns a copy of the sessions so far and the most open at once.
func (s *smtpServer) seen() (sessions []session, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		sessions = append(sessions, *ss)
	}
	return sessions, s.peak
}

// closeSession counts session n closed, once.
func (s *smtpServer) closeSession(n int, quit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[n-1]
	if !ss.quit && !ss.ended {
		s.open--
	}
	ss.quit = ss.quit || quit
	ss.ended = ss.ended || !quit
}

func (s *smtpServer) serve(conn net.Conn, n int) {
	defer func() {
		conn.Close()
		s.closeSession(n, false)
	}()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	secure := false
	if s.implicit != nil {
		tc := tls.Server(conn, s.implicit)
		if tc.Handshake() != nil {
			return
		}
		conn, secure = tc, true
	}
	tp := textproto.NewConn(conn)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			if tp.PrintfLine("%s", l) != nil {
				return false
			}
		}
		return true
	}
	act := func(verb string) action {
		if s.on == nil {
			return action{}
		}
		return s.on(verb, n)
	}
	// play replies as a says, usual when a changes nothing; false ends
	// the session.
	play := func(a action, usual ...string) bool {
		time.Sleep(a.delay)
		switch {
		case a.hang:
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, conn)
			return false
		case a.reply != "":
			usual = []string{a.reply}
		case a.hangup:
			usual = nil
		}
		return reply(usual...) && !a.hangup
	}
	if !reply("220 fake ESMTP") {
		return
	}
	var r received
	for {
		_ = conn.SetDeadline(time.Now().Add(s.idle))
		line, err := tp.ReadLine()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			reply("421 4.4.2 fake idle too long, closing")
			return
		}
		if err != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		ok := true
		switch verb {
		case "EHLO", "HELO":
			ext := []string{"fake", "8BITMIME"}
			if s.starttls != nil && !secure {
				ext = append(ext, "STARTTLS")
			}
			if s.auth != "" {
				ext = append(ext, "AUTH "+s.auth)
			}
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				ok = ok && reply("250"+sep+e)
			}
		case "STARTTLS":
			if !reply("220 2.0.0 ready") {
				return
			}
			tc := tls.Server(conn, s.starttls)
			if tc.Handshake() != nil {
				return
			}
			conn, secure = tc, true
			tp = textproto.NewConn(conn)
		case "AUTH":
			r.auth = arg
			ok = reply("235 2.7.0 authenticated")
		case "MAIL":
			r.tls = secure
			ok = play(act(verb), "250 2.1.0 ok")
		case "RCPT":
			r.rcpt = arg
			answer := "250 2.1.5 ok"
			if s.rcpt != nil {
				answer = s.rcpt(arg)
			}
			ok = play(act(verb), answer)
		case "DATA":
			if a := act(verb); a.hang || a.hangup || a.reply != "" {
				ok = play(a)
				break
			}
			if !reply("354 go ahead") {
				return
			}
			lines, err := tp.ReadDotLines()
			if err != nil {
				return
			}
			r.data = strings.Join(lines, "\r\n")
			r.session = n
			s.mu.Lock()
			s.mails = append(s.mails, r)
			s.mu.Unlock()
			ok = play(act("."), "250 2.0.0 queued")
		case "RSET", "NOOP":
			ok = play(act(verb), "250 2.0.0 ok")
		case "QUIT":
			s.closeSession(n, true)
			reply("221 2.0.0 bye")
			return
		default:
			ok = reply("500 5.5.1 unknown command")
		}
		if !ok {
			return
		}
	}
}
