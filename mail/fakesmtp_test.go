package mail_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/textproto"
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
	tls  bool   // the transaction ran over TLS
	auth string // the AUTH line's argument, "" without AUTH
	rcpt string
	data string // the message, CRLF line ends
}

// smtpServer is a scripted SMTP server on loopback for what Mailpit cannot
// play: TLS either way, refused recipients, authentication checks.
type smtpServer struct {
	host string
	port int

	implicit *tls.Config             // TLS from the first byte when set
	starttls *tls.Config             // STARTTLS offered when set
	auth     string                  // AUTH mechanisms offered, e.g. "PLAIN LOGIN"
	rcpt     func(arg string) string // reply to RCPT TO; default 250

	mu    sync.Mutex
	mails []received
}

// startSMTP serves s on addr (127.0.0.1:0 when empty) until the test ends.
func startSMTP(t *testing.T, s *smtpServer, addr string) *smtpServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
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
			wg.Go(func() { s.serve(conn) })
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

func (s *smtpServer) serve(conn net.Conn) {
	defer func() { conn.Close() }()
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
	if !reply("220 fake ESMTP") {
		return
	}
	var r received
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		ok := true
		switch strings.ToUpper(verb) {
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
			ok = reply("250 2.1.0 ok")
		case "RCPT":
			r.rcpt = arg
			answer := "250 2.1.5 ok"
			if s.rcpt != nil {
				answer = s.rcpt(arg)
			}
			ok = reply(answer)
		case "DATA":
			if !reply("354 go ahead") {
				return
			}
			lines, err := tp.ReadDotLines()
			if err != nil {
				return
			}
			r.data = strings.Join(lines, "\r\n")
			s.mu.Lock()
			s.mails = append(s.mails, r)
			s.mu.Unlock()
			ok = reply("250 2.0.0 queued")
		case "RSET", "NOOP":
			ok = reply("250 2.0.0 ok")
		case "QUIT":
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
