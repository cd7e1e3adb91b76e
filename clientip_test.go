package selfservice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
)

// clientIPCase is one request reaching a ClientIP: the connection's
// address, the listener it came through (nil: not recorded, as for a
// request that did not come through an http.Server), its headers and the
// client address wanted.
type clientIPCase struct {
	name   string
	remote string
	local  net.Addr
	xff    []string
	fwd    []string
	want   string // "" for the zero Addr
}

// unixListener is the local address of a connection accepted on a Unix
// socket, as http.Server records it.
var unixListener = &net.UnixAddr{Name: "/run/app.sock", Net: "unix"}

func (tc clientIPCase) request() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if tc.local != nil {
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tc.local))
	}
	r.RemoteAddr = tc.remote
	for _, v := range tc.xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	for _, v := range tc.fwd {
		r.Header.Add("Forwarded", v)
	}
	return r
}

func runClientIPCases(t *testing.T, clientIP func(*http.Request) netip.Addr, cases []clientIPCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := netip.Addr{}
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got := clientIP(tc.request()); got != want {
				t.Errorf("got %v, want %v (RemoteAddr %q, X-Forwarded-For %q, Forwarded %q)", got, want, tc.remote, tc.xff, tc.fwd)
			}
		})
	}
}

func TestRemoteIP(t *testing.T) {
	t.Parallel()
	for remote, want := range map[string]string{
		"192.0.2.1:1234":         "192.0.2.1",
		"[2001:db8::1]:1234":     "2001:db8::1",
		"[::ffff:192.0.2.1]:80":  "192.0.2.1",
		"[fe80::1%eth0]:80":      "fe80::1",
		"192.0.2.1":              "192.0.2.1",
		"not an address":         "invalid IP",
		"":                       "invalid IP",
		"@":                      "invalid IP",
		"[2001:db8::1%25x]:1234": "2001:db8::1",
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = remote
		if got := selfservice.RemoteIP(r).String(); got != want {
			t.Errorf("RemoteIP(%q) = %s, want %s", remote, got, want)
		}
	}
	// A Unix peer may bind a socket file named like an address: over a
	// Unix socket there is no IP address, whatever RemoteAddr reads.
	r := clientIPCase{remote: "10.0.0.1", local: unixListener}.request()
	if got := selfservice.RemoteIP(r); got.IsValid() {
		t.Errorf("RemoteIP over a Unix socket with RemoteAddr %q = %v, want the zero Addr", r.RemoteAddr, got)
	}
}

// TestClientIPFromXForwardedFor: TrustProxies walks X-Forwarded-For from
// the right while the hops are trusted proxies, reads every form of entry
// proxies write, and stops at the last trusted hop on an entry it cannot
// read, never skipping to one the client may have written.
func TestClientIPFromXForwardedFor(t *testing.T) {
	t.Parallel()
	const proxy = "10.1.2.3:443"
	runClientIPCases(t, selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")), []clientIPCase{
		{name: "no proxy: the connection", remote: "203.0.113.9:5000", want: "203.0.113.9"},
		{name: "a trusted proxy's last hop", remote: proxy, xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "chained trusted proxies", remote: proxy, xff: []string{"198.51.100.1, 10.9.9.9"}, want: "198.51.100.1"},
		{name: "headers in order", remote: proxy, xff: []string{"1.2.3.4", "198.51.100.1, 10.0.0.1"}, want: "198.51.100.1"},
		{name: "only trusted hops", remote: proxy, xff: []string{"10.0.0.5"}, want: "10.0.0.5"},
		{name: "no header", remote: proxy, want: "10.1.2.3"},
		{name: "IPv6 proxy", remote: "[fd00::1]:443", xff: []string{"2001:db8::7"}, want: "2001:db8::7"},
		{name: "IPv4-mapped client", remote: proxy, xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "zone dropped", remote: proxy, xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "spaces and tabs", remote: proxy, xff: []string{" \t198.51.100.1 \t"}, want: "198.51.100.1"},

		// Forms with ports, brackets and quotes.
		{name: "IPv4 with a port (Azure Application Gateway)", remote: proxy, xff: []string{"203.0.113.7:41234"}, want: "203.0.113.7"},
		{name: "IPv6 with a port", remote: proxy, xff: []string{"[2001:db8::1]:443"}, want: "2001:db8::1"},
		{name: "bracketed IPv6 without a port", remote: proxy, xff: []string{"[2001:db8::1]"}, want: "2001:db8::1"},
		{name: "quoted IPv4", remote: proxy, xff: []string{`"203.0.113.7"`}, want: "203.0.113.7"},
		{name: "quoted IPv6 with a port", remote: proxy, xff: []string{`"[2001:db8::1]:443"`}, want: "2001:db8::1"},
		{name: "trusted hops with ports", remote: proxy, xff: []string{"198.51.100.1:1000, [fd00::9]:443, 10.0.0.9:443"}, want: "198.51.100.1"},

		// Spoofing.
		{name: "an untrusted peer's header is ignored", remote: "203.0.113.9:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "an untrusted peer naming a trusted proxy", remote: "203.0.113.9:5000", xff: []string{"10.0.0.1"}, want: "203.0.113.9"},
		{name: "what the client prepended is skipped", remote: proxy, xff: []string{"1.2.3.4, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "a client posing as a trusted proxy", remote: proxy, xff: []string{"1.2.3.4, 10.0.0.1, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "a client's open quote hides nothing", remote: proxy, xff: []string{`"1.2.3.4, 198.51.100.1`}, want: "198.51.100.1"},
		{name: "Forwarded is not read", remote: proxy, fwd: []string{"for=198.51.100.1"}, want: "10.1.2.3"},
		{name: "Forwarded beside X-Forwarded-For is not read", remote: proxy, xff: []string{"198.51.100.1"}, fwd: []string{"for=203.0.113.66"}, want: "198.51.100.1"},

		// Entries that tell no address stop the walk at the last trusted hop.
		{name: "garbage stops at the last trusted hop", remote: proxy, xff: []string{"198.51.100.1, nonsense, 10.0.0.7"}, want: "10.0.0.7"},
		{name: "unknown", remote: proxy, xff: []string{"198.51.100.1, unknown"}, want: "10.1.2.3"},
		{name: "a host name", remote: proxy, xff: []string{"198.51.100.1, client.example.com"}, want: "10.1.2.3"},
		{name: "port out of range", remote: proxy, xff: []string{"198.51.100.1, 203.0.113.7:65536"}, want: "10.1.2.3"},
		{name: "port with letters", remote: proxy, xff: []string{"198.51.100.1, 203.0.113.7:https"}, want: "10.1.2.3"},
		{name: "obfuscated port (Forwarded only)", remote: proxy, xff: []string{"198.51.100.1, 203.0.113.7:_p1"}, want: "10.1.2.3"},
		{name: "empty port", remote: proxy, xff: []string{"198.51.100.1, 203.0.113.7:"}, want: "10.1.2.3"},
		{name: "bracketed IPv4", remote: proxy, xff: []string{"198.51.100.1, [203.0.113.7]:80"}, want: "10.1.2.3"},
		{name: "bracket left open", remote: proxy, xff: []string{"198.51.100.1, [2001:db8::1"}, want: "10.1.2.3"},
		{name: "garbage after the bracket", remote: proxy, xff: []string{"198.51.100.1, [2001:db8::1]x"}, want: "10.1.2.3"},
		{name: "quote left open", remote: proxy, xff: []string{`198.51.100.1, "203.0.113.7`}, want: "10.1.2.3"},
		{name: "escaped quote", remote: proxy, xff: []string{`198.51.100.1, "203.0.113.7\"`}, want: "10.1.2.3"},
		{name: "empty entry", remote: proxy, xff: []string{"198.51.100.1, , 10.0.0.7"}, want: "10.0.0.7"},
		{name: "trailing comma", remote: proxy, xff: []string{"198.51.100.1,"}, want: "10.1.2.3"},
		{name: "empty header", remote: proxy, xff: []string{""}, want: "10.1.2.3"},
		{name: "an unreadable RemoteAddr is not a proxy", remote: "@", xff: []string{"198.51.100.1"}, want: ""},
		{name: "64 entries in a line are read", remote: proxy, xff: []string{"198.51.100.1" + strings.Repeat(", 10.0.0.2", 63)}, want: "198.51.100.1"},
		{name: "past 64 entries in a line the walk stops", remote: proxy, xff: []string{"198.51.100.1" + strings.Repeat(", 10.0.0.2", 64)}, want: "10.0.0.2"},
		{name: "64 entries per line, not in all", remote: proxy, xff: []string{"198.51.100.1", strings.Repeat("10.0.0.2, ", 63) + "10.0.0.2"}, want: "198.51.100.1"},
	})
}

// TestClientIPFromForwarded: with Header Forwarded the walk reads RFC
// 7239's for= (quoted or not, several elements, several headers) and
// stops where a hop cannot be told (for=unknown, _hidden, no for=, bad
// syntax), at the last trusted hop. Every comma ends an element, quoted or
// not, so that a quote the client leaves open hides nothing a proxy
// appends.
func TestClientIPFromForwarded(t *testing.T) {
	t.Parallel()
	const proxy = "10.1.2.3:443"
	runClientIPCases(t, selfservice.TrustProxiesWith(selfservice.ProxyOptions{
		Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		Header:  selfservice.Forwarded,
	}), []clientIPCase{
		{name: "RFC 7239 example", remote: proxy, fwd: []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, want: "192.0.2.60"},
		{name: "quoted IPv6 with a port", remote: proxy, fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "quoted bracketed IPv6", remote: proxy, fwd: []string{`for="[2001:db8:cafe::17]"`}, want: "2001:db8:cafe::17"},
		{name: "quoted IPv4 with a port", remote: proxy, fwd: []string{`for="192.0.2.60:8080"`}, want: "192.0.2.60"},
		{name: "obfuscated port", remote: proxy, fwd: []string{`for="[2001:db8::1]:_p1"`}, want: "2001:db8::1"},
		{name: "parameter names in any case", remote: proxy, fwd: []string{"FOR=192.0.2.60;Proto=https"}, want: "192.0.2.60"},
		{name: "pairs in any order, empty pairs", remote: proxy, fwd: []string{"proto=https;;by=10.0.0.1; for=192.0.2.60 ;host=example.com"}, want: "192.0.2.60"},
		{name: "several elements", remote: proxy, fwd: []string{"for=192.0.2.43, for=198.51.100.17"}, want: "198.51.100.17"},
		{name: "several elements, no spaces", remote: proxy, fwd: []string{"for=192.0.2.43,for=198.51.100.17"}, want: "198.51.100.17"},
		{name: "a chain of trusted proxies", remote: proxy, fwd: []string{`for=192.0.2.43, for="[fd00::2]";by=10.0.0.3, for=10.0.0.2`}, want: "192.0.2.43"},
		{name: "several headers", remote: proxy, fwd: []string{"for=192.0.2.43", "for=10.0.0.2"}, want: "192.0.2.43"},
		{name: "escaped quote in another value", remote: proxy, fwd: []string{`for="192.0.2.60";host="a\"b"`}, want: "192.0.2.60"},
		{name: "bare IPv6 (nginx for=$remote_addr)", remote: proxy, fwd: []string{"for=2001:db8::7"}, want: "2001:db8::7"},
		{name: "IPv6 in brackets, unquoted", remote: proxy, fwd: []string{"for=[2001:db8::7]:443"}, want: "2001:db8::7"},

		// Spoofing.
		{name: "an untrusted peer's header is ignored", remote: "203.0.113.9:5000", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.9"},
		{name: "what the client prepended is skipped", remote: proxy, fwd: []string{"for=1.2.3.4;proto=https, for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "a client's garbage before the proxy's element", remote: proxy, fwd: []string{"for 1.2.3.4 ;;= x, for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "a client's open quote in a line of its own", remote: proxy, fwd: []string{`for="1.2.3.4`, "for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "a client's open quote before the proxy's element", remote: proxy, fwd: []string{`for="1.2.3.4, for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's bare open quote before the proxy's element", remote: proxy, fwd: []string{`for=", for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's open quote before two proxies' elements", remote: proxy, fwd: []string{`for=", for=198.51.100.1, for="[fd00::2]:443"`}, want: "198.51.100.1"},
		{name: "a client's open quote around a trusted address", remote: proxy, fwd: []string{`for="10.0.0.9, for=10.0.0.8, for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's escaped quote before the proxy's element", remote: proxy, fwd: []string{`for="", for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's open quote in another parameter", remote: proxy, fwd: []string{`for=1.2.3.4;host="x, for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's quoted comma before the proxy's element", remote: proxy, fwd: []string{`for=1.2.3.4;host="a, b", for=198.51.100.1`}, want: "198.51.100.1"},
		{name: "a client's open quote before the proxy's unknown: the proxy", remote: proxy, fwd: []string{`for="1.2.3.4, for=unknown`}, want: "10.1.2.3"},
		{name: "a client's trailing backslash in a quote", remote: proxy, fwd: []string{`for="1.2.3.4\`, "for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "X-Forwarded-For is not read", remote: proxy, xff: []string{"198.51.100.1"}, want: "10.1.2.3"},
		{name: "X-Forwarded-For beside Forwarded is not read", remote: proxy, xff: []string{"203.0.113.66"}, fwd: []string{"for=198.51.100.1"}, want: "198.51.100.1"},

		// Hops that cannot be told stop the walk at the last trusted hop.
		{name: "for=unknown", remote: proxy, fwd: []string{"for=192.0.2.43, for=unknown"}, want: "10.1.2.3"},
		{name: "for=unknown behind a trusted hop", remote: proxy, fwd: []string{"for=192.0.2.43, for=unknown, for=10.0.0.2"}, want: "10.0.0.2"},
		{name: "quoted unknown with a port", remote: proxy, fwd: []string{`for=192.0.2.43, for="unknown:4711"`}, want: "10.1.2.3"},
		{name: "obfuscated identifier", remote: proxy, fwd: []string{"for=192.0.2.43, for=_hidden"}, want: "10.1.2.3"},
		{name: "obfuscated identifier with a port", remote: proxy, fwd: []string{`for=192.0.2.43, for="_SEVKISEK:_p1"`}, want: "10.1.2.3"},
		{name: "an element without for=", remote: proxy, fwd: []string{"for=192.0.2.43, proto=https;by=10.0.0.1"}, want: "10.1.2.3"},
		{name: "for= twice in an element", remote: proxy, fwd: []string{"for=192.0.2.43;for=198.51.100.1"}, want: "10.1.2.3"},
		{name: "no =", remote: proxy, fwd: []string{"for=192.0.2.43, for 198.51.100.1"}, want: "10.1.2.3"},
		{name: "space before =", remote: proxy, fwd: []string{"for=192.0.2.43, for =198.51.100.1"}, want: "10.1.2.3"},
		{name: "empty value", remote: proxy, fwd: []string{"for=192.0.2.43, for="}, want: "10.1.2.3"},
		{name: "empty quoted value", remote: proxy, fwd: []string{`for=192.0.2.43, for=""`}, want: "10.1.2.3"},
		{name: "garbage after a quoted value", remote: proxy, fwd: []string{`for=192.0.2.43, for="198.51.100.1"x`}, want: "10.1.2.3"},
		{name: "IPv4 in brackets", remote: proxy, fwd: []string{`for=192.0.2.43, for="[198.51.100.1]"`}, want: "10.1.2.3"},
		{name: "port out of range", remote: proxy, fwd: []string{`for=192.0.2.43, for="198.51.100.1:99999"`}, want: "10.1.2.3"},
		{name: "empty element at the end", remote: proxy, fwd: []string{"for=192.0.2.43,"}, want: "10.1.2.3"},
		{name: "empty element behind a trusted hop", remote: proxy, fwd: []string{"for=192.0.2.43, , for=10.0.0.2"}, want: "10.0.0.2"},
		{name: "empty header", remote: proxy, fwd: []string{""}, want: "10.1.2.3"},
		{name: "a quote left open by the last proxy", remote: proxy, fwd: []string{`for=192.0.2.43, for="198.51.100.1`}, want: "10.1.2.3"},
		{name: "a quoted comma ends the element: neither part is read", remote: proxy, fwd: []string{`for=192.0.2.43, for=10.0.0.5;host="x, for=198.51.100.1"`}, want: "10.1.2.3"},
		{name: "a quoted comma behind a trusted hop", remote: proxy, fwd: []string{`for=192.0.2.43, for=10.0.0.5;host="x,y", for=10.0.0.2`}, want: "10.0.0.2"},
		{name: "a quoted comma in for=", remote: proxy, fwd: []string{`for=192.0.2.43, for="198.51.100.1,"`}, want: "10.1.2.3"},
		{name: "64 elements in a line are read", remote: proxy, fwd: []string{"for=198.51.100.1" + strings.Repeat(", for=10.0.0.2", 63)}, want: "198.51.100.1"},
		{name: "past 64 elements in a line the walk stops", remote: proxy, fwd: []string{"for=198.51.100.1" + strings.Repeat(", for=10.0.0.2", 64)}, want: "10.0.0.2"},
		{name: "64 elements per line, not in all", remote: proxy, fwd: []string{"for=198.51.100.1", strings.Repeat("for=10.0.0.2, ", 63) + "for=10.0.0.2"}, want: "198.51.100.1"},
	})
}

// TestClientIPUnixSocket: a peer on a Unix socket has no address to check.
// Without ProxyOptions.UnixSocket it is one shared budget (the zero Addr),
// as before; with it, it is a trusted proxy and its header is walked.
func TestClientIPUnixSocket(t *testing.T) {
	t.Parallel()
	tcp := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8080}
	unixCases := func(want string) []clientIPCase {
		return []clientIPCase{
			{name: "unnamed peer (@)", remote: "@", local: unixListener, xff: []string{"198.51.100.1"}, want: want},
			{name: "no RemoteAddr", remote: "", local: unixListener, xff: []string{"198.51.100.1"}, want: want},
			{name: "peer bound to a path", remote: "/run/nginx/client.sock", local: unixListener, xff: []string{"198.51.100.1"}, want: want},
			{name: "peer bound to a path named like a trusted proxy", remote: "10.0.0.1", local: unixListener, xff: []string{"198.51.100.1"}, want: want},
		}
	}
	t.Run("RemoteIP", func(t *testing.T) {
		t.Parallel()
		runClientIPCases(t, selfservice.RemoteIP, unixCases(""))
	})
	t.Run("TrustProxies", func(t *testing.T) {
		t.Parallel()
		runClientIPCases(t, selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8")), unixCases(""))
	})
	t.Run("UnixSocket", func(t *testing.T) {
		t.Parallel()
		clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true})
		runClientIPCases(t, clientIP, append(unixCases("198.51.100.1"),
			clientIPCase{name: "no header", remote: "@", local: unixListener, want: ""},
			clientIPCase{name: "garbage", remote: "@", local: unixListener, xff: []string{"198.51.100.1, unknown"}, want: ""},
			clientIPCase{name: "with a port", remote: "@", local: unixListener, xff: []string{"203.0.113.7:41234"}, want: "203.0.113.7"},
			clientIPCase{name: "what the client prepended is skipped", remote: "@", local: unixListener, xff: []string{"1.2.3.4, 198.51.100.1"}, want: "198.51.100.1"},
			clientIPCase{name: "not over a Unix socket as far as the request tells", remote: "@", xff: []string{"198.51.100.1"}, want: ""},
			clientIPCase{name: "an unreadable RemoteAddr on a TCP listener", remote: "@", local: tcp, xff: []string{"198.51.100.1"}, want: ""},
			clientIPCase{name: "a TCP peer is not trusted by UnixSocket", remote: "10.0.0.1:5000", local: tcp, xff: []string{"198.51.100.1"}, want: "10.0.0.1"},
		))
	})
	t.Run("UnixSocket and proxies", func(t *testing.T) {
		t.Parallel()
		clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{
			Proxies:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			UnixSocket: true,
		})
		runClientIPCases(t, clientIP, []clientIPCase{
			{name: "a TCP proxy", remote: "10.0.0.1:5000", local: tcp, xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
			{name: "a proxy chain ending on the socket", remote: "@", local: unixListener, xff: []string{"1.2.3.4, 198.51.100.1, 10.0.0.9"}, want: "198.51.100.1"},
		})
	})
	t.Run("UnixSocket and Forwarded", func(t *testing.T) {
		t.Parallel()
		clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true, Header: selfservice.Forwarded})
		runClientIPCases(t, clientIP, []clientIPCase{
			{name: "for=", remote: "@", local: unixListener, fwd: []string{`for="[2001:db8::7]:4711"`}, want: "2001:db8::7"},
			{name: "for=unknown", remote: "@", local: unixListener, fwd: []string{"for=unknown"}, want: ""},
		})
	})
}

// TestClientIPOverARealUnixSocket serves over a Unix socket in a temporary
// directory to check what net/http really puts in RemoteAddr and the
// context, and what each ClientIP makes of it.
func TestClientIPOverARealUnixSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no Unix socket at %s: %v", sock, err)
	}
	tcpOnly := selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8"))
	unixXFF := selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true})
	unixFwd := selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true, Header: selfservice.Forwarded})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]string{
				"remote":       r.RemoteAddr,
				"RemoteIP":     selfservice.RemoteIP(r).String(),
				"TrustProxies": tcpOnly(r).String(),
				"UnixSocket":   unixXFF(r).String(),
				"Forwarded":    unixFwd(r).String(),
			})
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})

	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodGet, "http://app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "1.2.3.4, 198.51.100.7")
	req.Header.Set("Forwarded", `for="[2001:db8::7]:4711";proto=https`)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	t.Logf("RemoteAddr of an unnamed Unix peer: %q", got["remote"])
	if _, err := netip.ParseAddr(got["remote"]); err == nil {
		t.Errorf("RemoteAddr %q over a Unix socket reads as an IP address", got["remote"])
	}
	for k, want := range map[string]string{
		"RemoteIP":     "invalid IP",
		"TrustProxies": "invalid IP",
		"UnixSocket":   "198.51.100.7",
		"Forwarded":    "2001:db8::7",
	} {
		if got[k] != want {
			t.Errorf("%s over a Unix socket: %s, want %s", k, got[k], want)
		}
	}
}

// TestProxyOptionsPanic: options that cannot be meant panic when the
// ClientIP is built, not on the first request.
func TestProxyOptionsPanic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts selfservice.ProxyOptions
	}{
		{"zero prefix", selfservice.ProxyOptions{Proxies: []netip.Prefix{{}}}},
		{"IPv4 /0", selfservice.ProxyOptions{Proxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
		{"IPv6 /0", selfservice.ProxyOptions{Proxies: []netip.Prefix{netip.MustParsePrefix("::/0")}}},
		{"IPv4-mapped /96", selfservice.ProxyOptions{Proxies: []netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/96")}}},
		{"unknown header", selfservice.ProxyOptions{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Header: "X-Real-IP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("TrustProxiesWith(%+v) did not panic", tc.opts)
				}
			}()
			selfservice.TrustProxiesWith(tc.opts)
		})
	}
	t.Run("no proxy is RemoteIP", func(t *testing.T) {
		t.Parallel()
		r := clientIPCase{remote: "10.0.0.1:5000", xff: []string{"198.51.100.1"}}.request()
		if got := selfservice.TrustProxies()(r); got != netip.MustParseAddr("10.0.0.1") {
			t.Errorf("TrustProxies() = %v, want the connection's 10.0.0.1", got)
		}
	})
	t.Run("an IPv4-mapped prefix is its IPv4 prefix", func(t *testing.T) {
		t.Parallel()
		r := clientIPCase{remote: "10.0.0.1:5000", xff: []string{"198.51.100.1"}}.request()
		if got := selfservice.TrustProxies(netip.MustParsePrefix("::ffff:10.0.0.0/104"))(r); got != netip.MustParseAddr("198.51.100.1") {
			t.Errorf("got %v, want 198.51.100.1", got)
		}
	})
}

// TestClientIPLongHeaders: what reading a header allocates does not grow
// with the header, even when every hop is a trusted proxy: the walk reads
// at most the last 64 entries of a line, found from its end.
func TestClientIPLongHeaders(t *testing.T) { // not parallel: AllocsPerRun counts every goroutine's
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name   string
		header selfservice.ProxyHeader
		entry  string
	}{
		{"X-Forwarded-For", selfservice.XForwardedFor, "10.0.0.2"},
		{"X-Forwarded-For with ports", selfservice.XForwardedFor, "10.0.0.2:443"},
		{"Forwarded", selfservice.Forwarded, "for=10.0.0.2;proto=https"},
		{"Forwarded quoted", selfservice.Forwarded, `for="10.0.0.2:443";by="[fd00::1]"`},
		{"commas", selfservice.XForwardedFor, ""},
		{"commas in Forwarded", selfservice.Forwarded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{Proxies: trusted, Header: tc.header})
			allocs := func(entries int) float64 {
				r := clientIPCase{remote: "10.0.0.1:5000"}.request()
				r.Header.Set(string(tc.header), strings.Repeat(tc.entry+", ", entries-1)+tc.entry)
				return testing.AllocsPerRun(5, func() { clientIP(r) })
			}
			if short, long := allocs(100), allocs(1<<20/(len(tc.entry)+2)); long > short {
				t.Errorf("%v allocations for a 1 MiB header, %v for 100 entries", long, short)
			}
		})
	}
}

// dialFrom is an HTTP client whose connections leave from the loopback
// address ip (127.0.0.0/8 is all loopback on Linux), so that a proxy sees
// clients apart.
func dialFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestClientIPThroughReverseProxy puts an httputil.ReverseProxy, which
// appends its peer's address to X-Forwarded-For, between clients and the
// service, over TCP and over a Unix socket: two clients behind the one
// trusted proxy have budgets of their own, and a client that writes
// X-Forwarded-For itself, even naming another client, still spends its own.
func TestClientIPThroughReverseProxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		clientIP func(*http.Request) netip.Addr
		unix     bool
	}{
		{"tcp", selfservice.TrustProxies(netip.MustParsePrefix("127.0.0.1/32")), false},
		{"unix socket", selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWith(t, func(c *selfservice.Config) {
				c.ClientIP = tc.clientIP
				c.Budgets.SendsPerIP = []store.Limit{{N: 2, Window: time.Hour}}
			})
			backend, _ := url.Parse(f.srv.URL)
			proxy := httputil.NewSingleHostReverseProxy(backend)
			if tc.unix {
				sock := filepath.Join(t.TempDir(), "app.sock")
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Skipf("no Unix socket at %s: %v", sock, err)
				}
				srv := &http.Server{Handler: f.svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(l) }()
				t.Cleanup(func() { _ = srv.Close() })
				tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", sock)
				}}
				t.Cleanup(tr.CloseIdleConnections)
				proxy.Transport = tr
			}
			front := httptest.NewServer(proxy)
			t.Cleanup(front.Close)

			n := 0
			send := func(c *http.Client, xff string) reply {
				t.Helper()
				n++
				h := baseHeaders("en")
				if xff != "" {
					h.Set("X-Forwarded-For", xff)
				}
				return testkit.Do(t, c, http.MethodPost, front.URL+selfservice.SendCodePath, h,
					fmt.Sprintf(`{"email":"to%d@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`, n))
			}
			alice, bob, mallory := dialFrom(t, "127.0.0.2"), dialFrom(t, "127.0.0.3"), dialFrom(t, "127.0.0.4")
			for i := range 2 {
				if r := send(alice, ""); r.Status != http.StatusOK {
					t.Fatalf("alice's send %d: %d %s", i, r.Status, r.Raw)
				}
			}
			assertLimited(t, "alice's third send", send(alice, ""), "IDAAS.SDK.CAPTCHA.9201", 0)
			if r := send(bob, ""); r.Status != http.StatusOK {
				t.Fatalf("bob's first send, behind the same proxy as alice: %d %s, want 200 (a budget of his own)", r.Status, r.Raw)
			}
			for i, xff := range []string{"127.0.0.3", "203.0.113.1"} {
				if r := send(mallory, xff); r.Status != http.StatusOK {
					t.Fatalf("mallory's send %d: %d %s", i, r.Status, r.Raw)
				}
			}
			assertLimited(t, "mallory's third send, with X-Forwarded-For of her own", send(mallory, "203.0.113.2"), "IDAAS.SDK.CAPTCHA.9201", 0)
			if r := send(bob, ""); r.Status != http.StatusOK {
				t.Fatalf("bob's second send after mallory wrote his address: %d %s, want 200", r.Status, r.Raw)
			}
		})
	}
}

// TestClientIPTransitionAddressesShareBudget: a host that reaches the
// service over IPv4 and through an IPv6 transition address spends one
// budget; another host keeps its own.
func TestClientIPTransitionAddressesShareBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ip string }{
		{"NAT64", "64:ff9b::192.0.2.7"},
		{"NAT64 local use", "64:ff9b:1::c000:207"},
		{"6to4", "2002:c000:207:1::42"},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdf8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWith(t, func(c *selfservice.Config) {
				trustLoopback(c)
				c.Budgets.SendsPerIP = []store.Limit{{N: 1, Window: time.Hour}}
			})
			if r := f.send(t, "a@example.com", fromIP("192.0.2.7")); r.Status != http.StatusOK {
				t.Fatalf("send from 192.0.2.7: %d %s", r.Status, r.Raw)
			}
			assertLimited(t, "send from "+tc.ip, f.send(t, "b@example.com", fromIP(tc.ip)), "IDAAS.SDK.CAPTCHA.9201", 0)
			if r := f.send(t, "c@example.com", fromIP("192.0.2.8")); r.Status != http.StatusOK {
				t.Fatalf("send from another host, 192.0.2.8: %d %s", r.Status, r.Raw)
			}
		})
	}
}

// FuzzClientIP: whatever a client writes in either header, on one line or
// several, however the proxies format the address they append, the
// ClientIP is the client's real address, or the last trusted hop when the
// first proxy could not tell the client (it wrote unknown), never an
// address the client wrote: what the client writes does not change the
// answer, also when it leaves a Forwarded quoted string open on the
// proxies' line. From an untrusted peer it is always the peer.
func FuzzClientIP(f *testing.F) {
	for _, s := range []struct {
		written, written2 string
		mode              uint8
		real              []byte
	}{
		{"", "", 0, []byte{198, 51, 100, 7}},
		{"1.2.3.4", "10.0.0.3", 2, []byte{198, 51, 100, 7}},
		{"for=1.2.3.4", `for="[2001:db8::1]:80"`, 3, []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}},
		{`for="1.2.3.4`, "", 3, []byte{198, 51, 100, 7}},
		{`for="1.2.3.4\`, "unknown", 1 | 4 | 8 | 16, []byte{198, 51, 100, 7}},
		{"_hidden, unknown", "10.0.0.1, ", 4 | 16, []byte{192, 0, 2, 1}},
		{"[::1]:99, 10.0.0.2:443", `"`, 2 | 4, []byte{203, 0, 113, 9}},
		{"for=10.0.0.2;for=x", ",", 1 | 2 | 32, []byte{203, 0, 113, 9}},
		{"for=1.2.3.4", `for="x`, 1 | 2, []byte{198, 51, 100, 7}},
		{"1.2.3.4", "198.51.100.9", 64, []byte{198, 51, 100, 7}},
		{"for=1.2.3.4", "", 1 | 16 | 64, []byte{198, 51, 100, 7}},
		{"1.2.3.4", "5.6.7.8", 2 | 8 | 64, []byte{198, 51, 100, 7}},
	} {
		f.Add(s.written, s.written2, s.mode, s.real, uint16(41234))
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	trusted := func(ip netip.Addr) bool { return proxies[0].Contains(ip) || proxies[1].Contains(ip) }
	clientIPs := map[bool]func(*http.Request) netip.Addr{
		false: selfservice.TrustProxiesWith(selfservice.ProxyOptions{Proxies: proxies, UnixSocket: true}),
		true:  selfservice.TrustProxiesWith(selfservice.ProxyOptions{Proxies: proxies, UnixSocket: true, Header: selfservice.Forwarded}),
	}
	f.Fuzz(func(t *testing.T, written, written2 string, mode uint8, real []byte, port uint16) {
		var (
			forwarded     = mode&1 != 0
			sameLine      = mode&2 != 0
			withPort      = mode&4 != 0
			viaUnix       = mode&8 != 0
			twoProxies    = mode&16 != 0
			untrustedPeer = mode&32 != 0
			unknownClient = mode&64 != 0
		)
		client, ok := netip.AddrFromSlice(real)
		if !ok {
			client = netip.MustParseAddr("198.51.100.7")
		}
		client = client.Unmap()
		if trusted(client) {
			return
		}

		// What the proxies append: the address each saw as its peer.
		hops := []netip.AddrPort{netip.AddrPortFrom(client, port)}
		if twoProxies {
			hops = append(hops, netip.MustParseAddrPort("10.0.0.2:443"))
		}
		var appended []string
		for i, h := range hops {
			switch node := h.Addr().String(); {
			case i == 0 && unknownClient && forwarded:
				appended = append(appended, "for=unknown")
			case i == 0 && unknownClient:
				appended = append(appended, "unknown")
			case forwarded && withPort:
				appended = append(appended, `for="`+h.String()+`"`)
			case forwarded && h.Addr().Is6():
				appended = append(appended, `for="[`+node+`]"`)
			case forwarded:
				appended = append(appended, "for="+node)
			case withPort:
				appended = append(appended, h.String())
			default:
				appended = append(appended, node)
			}
		}
		name := "X-Forwarded-For"
		if forwarded {
			name = "Forwarded"
		}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header[name] = []string{written, written2}
		if sameLine {
			r.Header[name][1] += ", " + strings.Join(appended, ", ")
		} else {
			r.Header[name] = append(r.Header[name], strings.Join(appended, ", "))
		}
		// The other header is the client's alone.
		other := "Forwarded"
		if forwarded {
			other = "X-Forwarded-For"
		}
		r.Header[other] = []string{written2, written}

		connection := netip.MustParseAddr("10.0.0.1")
		switch {
		case untrustedPeer:
			connection = netip.MustParseAddr("203.0.113.9")
			r.RemoteAddr = "203.0.113.9:5000"
		case viaUnix:
			connection = netip.Addr{}
			r.RemoteAddr = "@"
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, unixListener))
		default:
			r.RemoteAddr = "10.0.0.1:5000"
		}

		want := client
		switch {
		case untrustedPeer:
			want = connection
		case unknownClient && twoProxies:
			want = netip.MustParseAddr("10.0.0.2")
		case unknownClient:
			want = connection
		}
		if got := clientIPs[forwarded](r); got != want {
			t.Fatalf("got %v, want %v (client %v, connection %v); headers %q", got, want, client, connection, r.Header)
		}

		// Whatever is in RemoteAddr, RemoteIP reads it without panicking.
		r.RemoteAddr = written
		_ = selfservice.RemoteIP(r)
	})
}

// nginx in front, on the private network 10.0.0.0/8, with
//
//	proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
func ExampleTrustProxies() {
	clientIP := selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8"))

	// What nginx at 10.0.0.5 passes on for a client at 203.0.113.7 that
	// wrote an X-Forwarded-For of its own.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.RemoteAddr = "10.0.0.5:50312"
	r.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
	fmt.Println(clientIP(r))
	// Output: 203.0.113.7
}

// A cloud load balancer: trust the networks it connects from, and on
// Google Cloud also the forwarding rule's own address, which the load
// balancer writes after the client's.
func ExampleTrustProxiesWith_loadBalancer() {
	clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{
		Proxies: []netip.Prefix{
			netip.MustParsePrefix("10.1.0.0/24"),     // AWS ALB or Azure Application Gateway: its subnet
			netip.MustParsePrefix("35.191.0.0/16"),   // Google front ends
			netip.MustParsePrefix("130.211.0.0/22"),  // Google front ends
			netip.MustParsePrefix("34.111.22.33/32"), // your Google forwarding rule's address
		},
	})

	azure := httptest.NewRequest(http.MethodPost, "/", nil)
	azure.RemoteAddr = "10.1.0.7:50312"
	azure.Header.Set("X-Forwarded-For", "203.0.113.7:41234") // with the client's port
	fmt.Println(clientIP(azure))

	google := httptest.NewRequest(http.MethodPost, "/", nil)
	google.RemoteAddr = "35.191.10.20:50312"
	google.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.8, 34.111.22.33")
	fmt.Println(clientIP(google))
	// Output:
	// 203.0.113.7
	// 203.0.113.8
}

// A proxy that writes RFC 7239 Forwarded: name the header, and only that
// one is read.
func ExampleTrustProxiesWith_forwarded() {
	clientIP := selfservice.TrustProxiesWith(selfservice.ProxyOptions{
		Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Header:  selfservice.Forwarded,
	})

	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.RemoteAddr = "10.0.0.5:50312"
	r.Header.Set("X-Forwarded-For", "198.51.100.1") // not written by the proxy: ignored
	r.Header.Set("Forwarded", `for="[2001:db8:cafe::17]:4711";proto=https`)
	fmt.Println(clientIP(r))
	// Output: 2001:db8:cafe::17
}

// nginx passing requests to unix:/run/app/app.sock: the socket's peer is
// trusted because only nginx can open the socket.
func ExampleTrustProxiesWith_unixSocket() {
	cfg := yourConfig()
	cfg.ClientIP = selfservice.TrustProxiesWith(selfservice.ProxyOptions{UnixSocket: true})
	svc, err := selfservice.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Mount(mux, "")

	const sock = "/run/app/app.sock" // in a directory only the app and nginx's group may enter
	_ = os.Remove(sock)              // left by an earlier run
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(l))
}

// yourConfig stands for the stores, verifier, mailer and secret of
// Example_production.
func yourConfig() selfservice.Config { return selfservice.Config{} }
