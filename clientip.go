package selfservice

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ipKey is the unit an IP budget counts: one IPv4 address, or one IPv6 /64,
// since a single subscriber usually holds a whole /64 and could rotate
// through it. IPv4-mapped IPv6 addresses count as their IPv4 address. The
// zero Addr (an address that could not be read) is one shared unit.
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
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

// RemoteIP is the default Config.ClientIP: the address of the connection
// (http.Request.RemoteAddr), never a header. Behind a reverse proxy every
// request shares the proxy's address; use TrustProxies there.
func RemoteIP(r *http.Request) netip.Addr {
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

// TrustProxies returns a Config.ClientIP for a server behind reverse
// proxies at the given networks: when the connection comes from one of
// them, the client is the right-most X-Forwarded-For address that is not
// itself a trusted proxy (each proxy appends the address it saw, so only
// the entries added by trusted proxies can be believed). A connection from
// anywhere else, or a header that does not parse, gives the connection's own
// address: a client cannot choose its budget by sending the header itself.
func TrustProxies(proxies ...netip.Prefix) func(*http.Request) netip.Addr {
	trusted := make([]netip.Prefix, len(proxies))
	for i, p := range proxies {
		trusted[i] = p.Masked()
	}
	isTrusted := func(ip netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) netip.Addr {
		ip := RemoteIP(r)
		if !ip.IsValid() || !isTrusted(ip) {
			return ip
		}
		hops := r.Header.Values("X-Forwarded-For")
		for i := len(hops) - 1; i >= 0; i-- {
			parts := strings.Split(hops[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				hop, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
				if err != nil {
					return ip
				}
				hop = hop.Unmap()
				if !isTrusted(hop) {
					return hop
				}
				ip = hop
			}
		}
		return ip
	}
}
