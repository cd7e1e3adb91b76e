package selfservice

import (
	"net/netip"
	"testing"
)

// TestClientIPKey: the unit an IP budget counts. An address that stands
// for an IPv4 host (mapped, NAT64, 6to4, Teredo) has the key of that IPv4
// address, so one host is one budget whichever way it comes; other IPv6
// addresses count per /64.
func TestClientIPKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ip, want string
	}{
		{"IPv4", "192.0.2.7", "192.0.2.7"},
		{"IPv4-mapped", "::ffff:192.0.2.7", "192.0.2.7"},
		{"IPv6 per /64", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6 zone dropped", "fe80::1%eth0", "fe80::/64"},

		{"NAT64 well-known prefix", "64:ff9b::192.0.2.7", "192.0.2.7"},
		{"NAT64 well-known prefix, another host", "64:ff9b::c000:208", "192.0.2.8"},
		{"NAT64 local-use /48, a /96 at its start", "64:ff9b:1::c000:207", "192.0.2.7"},
		{"NAT64 local-use /48, a /96 further in", "64:ff9b:1:abcd:1:2:c000:207", "192.0.2.7"},
		{"64:ff9b:0:1:: is outside the well-known /96", "64:ff9b:0:1::c000:207", "64:ff9b:0:1::/64"},

		{"6to4", "2002:c000:207::1", "192.0.2.7"},
		{"6to4, another subnet of the same host", "2002:c000:207:ffff:1:2:3:4", "192.0.2.7"},
		{"6to4, another host", "2002:cb00:7101::1", "203.0.113.1"},

		// RFC 4380's example: server 65.54.227.120, client 192.0.2.7 behind
		// a cone NAT on port 40000.
		{"Teredo: the client's address", "2001:0:4136:e378:8000:63bf:3fff:fdf8", "192.0.2.7"},
		{"Teredo: the same client through another server", "2001:0:cb00:7101:8000:63bf:3fff:fdf8", "192.0.2.7"},
		{"Teredo: another client of the same server", "2001:0:4136:e378:8000:63bf:3fff:fdf7", "192.0.2.8"},
		{"2001:db8::/32 is not Teredo", "2001:db8::3fff:fdf8", "2001:db8::/64"},
		{"2001:1::/32 is not Teredo", "2001:1::3fff:fdf8", "2001:1::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ipKey(netip.MustParseAddr(tc.ip)); got != tc.want {
				t.Errorf("ipKey(%s) = %q, want %q", tc.ip, got, tc.want)
			}
		})
	}
	t.Run("the zero Addr", func(t *testing.T) {
		t.Parallel()
		if got := ipKey(netip.Addr{}); got != "unknown" {
			t.Errorf("ipKey(zero) = %q, want %q", got, "unknown")
		}
	})
	t.Run("budget keys collide with the plain IPv4 ones", func(t *testing.T) {
		t.Parallel()
		plain := netip.MustParseAddr("192.0.2.7")
		for _, s := range []string{"64:ff9b::192.0.2.7", "2002:c000:207::1", "2001:0:4136:e378:8000:63bf:3fff:fdf8"} {
			ip := netip.MustParseAddr(s)
			if c, p := (caller{ip: ip}), (caller{ip: plain}); sendsPerIPKey(c) != sendsPerIPKey(p) || wrongPerIPKey(c) != wrongPerIPKey(p) || revertsPerIPKey(c) != revertsPerIPKey(p) {
				t.Errorf("%s does not share 192.0.2.7's budgets", s)
			}
		}
	})
}
