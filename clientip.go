package selfservice

import (
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// IPv6 prefixes whose addresses stand for an IPv4 host. Counted per /64
// like other IPv6 addresses, NAT64 would put every IPv4 client of a
// translator in one budget, and so would Teredo every client of one Teredo
// server, while 6to4 would give one IPv4 host 65,536 budgets.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215
	sixToFour      = netip.MustParsePrefix("2002::/16")      // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32")      // RFC 4380
)

// ipKey is the unit an IP budget counts: one IPv4 address, or one IPv6 /64,
// since a single subscriber usually holds a whole /64 and could rotate
// through it. An IPv6 address that stands for an IPv4 host (IPv4-mapped,
// NAT64, 6to4, Teredo: see embeddedIPv4) counts as that IPv4 address, so
// one host is one budget whichever way it reaches the server. The zero Addr
// (an address that could not be read) is one shared unit.
func ipKey(ip netip.Addr) string {
	ip = embeddedIPv4(ip.WithZone("").Unmap())
	switch {
	case !ip.IsValid():
		return "unknown"
	case ip.Is4():
		return ip.String()
	default:
		p, _ := ip.Prefix(64)
		return p.String()
	}
}

// embeddedIPv4 returns the IPv4 host an IPv6 transition address stands
// for, or ip itself:
//   - NAT64 64:ff9b::/96: the last 32 bits (RFC 6052).
//   - NAT64 local use 64:ff9b:1::/48: the last 32 bits. RFC 8215 lets an
//     operator carve a prefix of any length out of it, and RFC 6052 places
//     the IPv4 address differently for each length; a /96 is assumed, the
//     only length whose embedding needs no knowledge of the operator's
//     choice and the one translators use in practice.
//   - 6to4 2002::/16: bits 16 to 47 (RFC 3056).
//   - Teredo 2001::/32: the client's public IPv4 address, the last 32
//     bits inverted (RFC 4380). Bits 32 to 63 are the Teredo server's,
//     which all its clients share.
//
// A client cannot use this to spend someone else's budget: completing a
// TCP handshake from such an address needs the replies, and they are routed
// to the embedded IPv4 host.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	if !ip.Is6() {
		return ip
	}
	b := ip.As16()
	switch {
	case nat64WellKnown.Contains(ip), nat64Local.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	case teredo.Contains(ip):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
	}
	return ip
}

// RemoteIP is the default Config.ClientIP: the address of the connection
// (http.Request.RemoteAddr), never a header. Behind a reverse proxy every
// request shares the proxy's address; use TrustProxies there.
//
// A connection over a Unix socket has no IP address: RemoteIP returns the
// zero Addr, so that every client behind a proxy on a Unix socket shares one
// budget until ProxyOptions.UnixSocket trusts that proxy. Sharing fails
// closed (nobody gets more than one budget's worth), where believing a
// header from any local process would let each request pick its budget.
func RemoteIP(r *http.Request) netip.Addr {
	if onUnixSocket(r) {
		return netip.Addr{}
	}
	return parseRemoteAddr(r.RemoteAddr)
}

func parseRemoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.WithZone("").Unmap()
}

// onUnixSocket reports whether r came over a Unix socket, from the local
// address http.Server puts in the request's context. RemoteAddr cannot
// tell: for a Unix peer it is "@" (an unnamed socket on Linux), "" or the
// path the peer bound, and a path may read like an IP address.
func onUnixSocket(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr)
	return ok && a != nil
}

// ProxyHeader names the header trusted proxies write the client's address
// in.
type ProxyHeader string

const (
	// XForwardedFor is X-Forwarded-For: a comma-separated list of
	// addresses, each proxy appending the address of its peer. nginx
	// ($proxy_add_x_forwarded_for), HAProxy (option forwardfor), AWS ALB,
	// Azure Application Gateway, Google Cloud load balancers and
	// httputil.ReverseProxy write it.
	XForwardedFor ProxyHeader = "X-Forwarded-For"
	// Forwarded is the header of RFC 7239: elements such as
	// for=192.0.2.60;proto=https, each proxy appending one.
	Forwarded ProxyHeader = "Forwarded"
)

// ProxyOptions says which peers are trusted reverse proxies and which
// header they write; TrustProxiesWith turns it into a Config.ClientIP.
type ProxyOptions struct {
	// Proxies are the networks of the trusted proxies. A connection from
	// any other address is the client, whatever it sends.
	Proxies []netip.Prefix
	// UnixSocket trusts the peer of a connection over a Unix socket (a
	// proxy passing requests to unix:/run/app.sock) as a proxy. Such a
	// connection has no address to check, so trusting it is a separate,
	// explicit choice: make it when only your proxy can open the socket
	// (its file mode and directory). The server must be an http.Server,
	// which records the listener's address in the request's context.
	// Default: false, and every client behind the socket shares one budget
	// (see RemoteIP).
	UnixSocket bool
	// Header is the header the proxies write. Only that header is read:
	// the other one, if present, was written by the client or by a proxy
	// nobody trusted, and believing whichever of the two is present would
	// let the client choose. Default: XForwardedFor.
	Header ProxyHeader
}

// TrustProxies returns a Config.ClientIP for a server behind reverse
// proxies at the given networks that write X-Forwarded-For. It is
// TrustProxiesWith(ProxyOptions{Proxies: proxies}), and panics as it does.
func TrustProxies(proxies ...netip.Prefix) func(*http.Request) netip.Addr {
	return TrustProxiesWith(ProxyOptions{Proxies: proxies})
}

// TrustProxiesWith returns a Config.ClientIP for a server behind reverse
// proxies. When the connection comes from a trusted proxy (or, with
// opts.UnixSocket, over a Unix socket), the client is the right-most
// address of opts.Header that is not itself a trusted proxy: each proxy
// appends the address of its peer, so only the entries appended by trusted
// proxies can be believed, and everything left of the first untrusted one
// may have been written by the client. A connection from anywhere else
// gives its own address, whatever it sends.
//
// An entry may carry a port (203.0.113.7:41234, [2001:db8::1]:443, as
// Azure Application Gateway writes them), brackets ([2001:db8::1]) or
// quotes; Forwarded's for= is read as RFC 7239 writes it, and also when a
// proxy writes an IPv6 address without the brackets and quotes. Every
// comma ends an entry, in Forwarded too, also between quotes: a quote the
// client leaves open cannot run over the elements the proxies append. An
// entry that tells no address (unknown, an obfuscated identifier such as
// for=_hidden, an element without for=, a quoted string cut at a comma, a
// name, garbage) stops the walk: the client is then the last trusted hop
// (the zero Addr if that is the Unix socket's peer), never an entry before
// it, which the client may have written. That hop is one budget shared by
// every such request, which fails closed. The walk reads at most the last
// 64 entries of a header line; going further stops it in the same way.
//
// Panics if a prefix is not valid or is a /0 (trusting every address lets
// every client choose its budget), or if opts.Header is neither
// XForwardedFor, Forwarded nor empty.
func TrustProxiesWith(opts ProxyOptions) func(*http.Request) netip.Addr {
	t := proxyTrust{unixSocket: opts.UnixSocket}
	switch opts.Header {
	case "", XForwardedFor:
		t.header, t.hops = string(XForwardedFor), xForwardedForHops
	case Forwarded:
		t.header, t.hops = string(Forwarded), forwardedHops
	default:
		panic(fmt.Sprintf("selfservice: TrustProxiesWith: unknown ProxyOptions.Header %q", opts.Header))
	}
	for _, p := range opts.Proxies {
		if !p.IsValid() {
			panic(fmt.Sprintf("selfservice: TrustProxiesWith: invalid prefix %q", p))
		}
		// Addresses are unmapped before they are compared, so a prefix
		// of IPv4-mapped addresses is its IPv4 prefix.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() == 0 {
			panic(fmt.Sprintf("selfservice: TrustProxiesWith: prefix %s trusts every address", p))
		}
		t.proxies = append(t.proxies, p.Masked())
	}
	return t.clientIP
}

// proxyTrust is a ProxyOptions made ready for requests.
type proxyTrust struct {
	proxies    []netip.Prefix
	unixSocket bool
	header     string
	hops       func(line string) iter.Seq[netip.Addr]
}

func (t proxyTrust) trusts(ip netip.Addr) bool {
	for _, p := range t.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (t proxyTrust) clientIP(r *http.Request) netip.Addr {
	ip := RemoteIP(r)
	if ip.IsValid() && !t.trusts(ip) {
		return ip
	}
	if !ip.IsValid() && !(t.unixSocket && onUnixSocket(r)) {
		return ip
	}
	// Several header lines are one list, in order (RFC 9110, 5.3).
	lines := r.Header.Values(t.header)
	for _, line := range slices.Backward(lines) {
		for hop := range t.hops(line) {
			if !hop.IsValid() {
				return ip
			}
			if !t.trusts(hop) {
				return hop
			}
			ip = hop
		}
	}
	return ip
}

// maxHopsPerLine bounds the entries of one header line that the walk
// reads, so that a long header costs little: no chain of proxies is that
// long, and past it the walk stops as at an entry that tells nothing.
const maxHopsPerLine = 64

// xForwardedForHops yields the entries of one X-Forwarded-For line from the
// right, each as its address or the zero Addr.
func xForwardedForHops(line string) iter.Seq[netip.Addr] {
	return hopsFromRight(line, xForwardedForNode)
}

// xForwardedForNode reads one X-Forwarded-For entry, in quotes or not.
func xForwardedForNode(e string) netip.Addr {
	e = strings.Trim(e, " \t")
	if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
		e = e[1 : len(e)-1]
	}
	if strings.ContainsAny(e, `"\`) {
		return netip.Addr{}
	}
	return parseNode(e, false)
}

// forwardedHops yields the elements of one Forwarded line (RFC 7239) from
// the right, each as its for= node (see forwardedNode).
func forwardedHops(line string) iter.Seq[netip.Addr] {
	return hopsFromRight(line, forwardedNode)
}

// hopsFromRight yields node(e) for the entries e of one header line from
// the right, at most maxHopsPerLine of them and then, if there are more,
// the zero Addr. Entries end at every comma, quoted or not: were quotes to
// group commas, as RFC 7239's grammar has them do, a quoted string the
// client leaves open (Forwarded: for=") would run over what the proxies
// append to the same line, and the client could choose to be counted as
// the last trusted hop. No node contains a comma (an IP address, [IPv6]
// with a port, unknown, an obfuscated identifier), so splitting costs
// only a quoted comma in another parameter, and that element stops the
// walk as any element that tells nothing does.
func hopsFromRight(line string, node func(string) netip.Addr) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		end := len(line)
		for range maxHopsPerLine {
			start := strings.LastIndexByte(line[:end], ',') + 1
			if !yield(node(line[start:end])) || start == 0 {
				return
			}
			end = start - 1
		}
		yield(netip.Addr{})
	}
}

// forwardedNode reads one Forwarded element: the address of its for=
// node, or the zero Addr when it tells none: no for=, for= twice,
// for=unknown, an obfuscated node, a syntax error, an empty element.
func forwardedNode(elem string) netip.Addr {
	var (
		node  string
		found bool
	)
	for i := 0; ; {
		i = skipOWS(elem, i)
		if i == len(elem) {
			break
		}
		if elem[i] == ';' { // forwarded-pair is optional between semicolons
			i++
			continue
		}
		j := i
		for j < len(elem) && isTchar(elem[j]) {
			j++
		}
		if j == i || j == len(elem) || elem[j] != '=' {
			return netip.Addr{}
		}
		value, next, ok := forwardedValue(elem, j+1)
		if !ok {
			return netip.Addr{}
		}
		if strings.EqualFold(elem[i:j], "for") {
			if found {
				return netip.Addr{}
			}
			found, node = true, value
		}
		i = skipOWS(elem, next)
		if i < len(elem) && elem[i] != ';' {
			return netip.Addr{}
		}
	}
	if !found {
		return netip.Addr{}
	}
	return parseNode(node, true)
}

// forwardedValue reads a pair's value at s[i:]: a quoted-string, unquoted,
// or else everything up to a separator (RFC 7239 wants a token, but an
// IPv6 address left bare by a proxy is still what that proxy saw). It
// returns the index after the value; ok is false for a quoted string left
// open, with next at the end of s.
func forwardedValue(s string, i int) (value string, next int, ok bool) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for i++; i < len(s); i++ {
			switch s[i] {
			case '"':
				return b.String(), i + 1, true
			case '\\':
				i++
				if i == len(s) {
					return "", i, false
				}
			}
			b.WriteByte(s[i])
		}
		return "", i, false
	}
	j := i
	for j < len(s) && !strings.ContainsRune(";, \t\"", rune(s[j])) {
		j++
	}
	return s[i:j], j, true
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode reads the address of one hop: an IP address, IPv4:port,
// [IPv6] or [IPv6]:port, and with obfuscatedPort a port such as "_p1"
// (RFC 7239 node-port). Zones are dropped and IPv4-mapped addresses
// unmapped, as for RemoteAddr. Anything else is the zero Addr.
func parseNode(s string, obfuscatedPort bool) netip.Addr {
	host, port, hasPort, bracketed := s, "", false, false
	if rest, ok := strings.CutPrefix(s, "["); ok {
		var after string
		if host, after, ok = strings.Cut(rest, "]"); !ok {
			return netip.Addr{}
		}
		bracketed = true
		if after != "" {
			if port, hasPort = strings.CutPrefix(after, ":"); !hasPort {
				return netip.Addr{}
			}
		}
	} else if strings.Count(s, ":") == 1 { // an IPv6 address has at least two
		host, port, hasPort = strings.Cut(s, ":")
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil,
		bracketed && !ip.Is6(),
		hasPort && !bracketed && !ip.Is4(),
		hasPort && !validPort(port, obfuscatedPort):
		return netip.Addr{}
	}
	return ip.WithZone("").Unmap()
}

// validPort accepts 1 to 5 digits up to 65535, and with obfuscated an
// RFC 7239 obfport: "_" and letters, digits, ".", "_" or "-".
func validPort(p string, obfuscated bool) bool {
	if obfuscated && len(p) > 1 && p[0] == '_' {
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return true
	}
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}
