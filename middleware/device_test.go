package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

func TestDeviceHeaders(t *testing.T) {
	t.Parallel()
	type edit func(h http.Header)
	set := func(key, value string) edit { return func(h http.Header) { h[key] = []string{value} } }
	del := func(key string) edit { return func(h http.Header) { delete(h, key) } }
	repeat := func(key string) edit { return func(h http.Header) { h[key] = append(h[key], h[key][0]) } }

	tests := []struct {
		name   string
		edit   edit
		ok     bool
		wantIP netip.Addr // when ok
	}{
		{"all present", func(http.Header) {}, true, netip.MustParseAddr("203.0.113.7")},
		{"X-device-ip absent", del("X-Device-Ip"), true, netip.Addr{}},
		{"X-device-ip present but blank", set("X-Device-Ip", "  "), false, netip.Addr{}},
		{"X-device-ip IPv6", set("X-Device-Ip", "2001:db8::1"), true, netip.MustParseAddr("2001:db8::1")},
		{"X-device-ip IPv6 loopback", set("X-Device-Ip", "::1"), true, netip.MustParseAddr("::1")},
		{"X-device-ip IPv4-mapped IPv6", set("X-Device-Ip", "::ffff:192.0.2.1"), true, netip.MustParseAddr("::ffff:192.0.2.1")},
		{"X-device-ip padded", set("X-Device-Ip", " 10.0.0.1 "), true, netip.MustParseAddr("10.0.0.1")},
		{"X-device-ip not an IP", set("X-Device-Ip", "not-an-ip"), false, netip.Addr{}},
		{"X-device-ip octet out of range", set("X-Device-Ip", "999.1.1.1"), false, netip.Addr{}},
		{"X-device-ip with port", set("X-Device-Ip", "192.0.2.1:443"), false, netip.Addr{}},
		{"X-device-ip CIDR", set("X-Device-Ip", "192.0.2.0/24"), false, netip.Addr{}},
		{"X-device-ip leading zeros", set("X-Device-Ip", "010.0.0.1"), false, netip.Addr{}},
		{"X-device-ip two addresses", set("X-Device-Ip", "192.0.2.1, 192.0.2.2"), false, netip.Addr{}},
		{"X-device-ip repeated", repeat("X-Device-Ip"), false, netip.Addr{}},
		{"X-device-ip too long", set("X-Device-Ip", strings.Repeat("1", 65)), false, netip.Addr{}},
		{"X-device-ip control character", set("X-Device-Ip", "10.0.0.1\x00"), false, netip.Addr{}},
		{"OS version at its limit", set("X-Operating-Sys-Version", strings.Repeat("v", middleware.MaxOSVersionLen)), true, netip.MustParseAddr("203.0.113.7")},
		{"fingerprint at its limit", set("X-Device-Fingerprint", strings.Repeat("f", middleware.MaxFingerprintLen)), true, netip.MustParseAddr("203.0.113.7")},
		{"agent at its limit, padded", set("X-Agent", "  "+strings.Repeat("a", middleware.MaxAgentLen)+"  "), true, netip.MustParseAddr("203.0.113.7")},
		{"agent with UTF-8", set("X-Agent", "客户端/1.0"), true, netip.MustParseAddr("203.0.113.7")},
	}
	required := []struct {
		key    string
		maxLen int
	}{
		{"X-Operating-Sys-Version", middleware.MaxOSVersionLen},
		{"X-Device-Fingerprint", middleware.MaxFingerprintLen},
		{"X-Agent", middleware.MaxAgentLen},
	}
	for _, r := range required {
		tests = append(tests, []struct {
			name   string
			edit   edit
			ok     bool
			wantIP netip.Addr
		}{
			{r.key + " missing", del(r.key), false, netip.Addr{}},
			{r.key + " empty", set(r.key, ""), false, netip.Addr{}},
			{r.key + " blank", set(r.key, " \t "), false, netip.Addr{}},
			{r.key + " too long", set(r.key, strings.Repeat("x", r.maxLen+1)), false, netip.Addr{}},
			{r.key + " with NUL", set(r.key, "a\x00b"), false, netip.Addr{}},
			{r.key + " with newline", set(r.key, "a\nX-Injected: 1"), false, netip.Addr{}},
			{r.key + " with inner tab", set(r.key, "a\tb"), false, netip.Addr{}},
			{r.key + " with DEL", set(r.key, "a\x7fb"), false, netip.Addr{}},
			{r.key + " repeated", repeat(r.key), false, netip.Addr{}},
			{r.key + " repeated with an empty value", func(h http.Header) { h[r.key] = append(h[r.key], "") }, false, netip.Addr{}},
		}...)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := handlertest.DeviceHeaders()
			tt.edit(h)
			next := &handlertest.Recorder{}
			w := handlertest.Serve(middleware.DeviceHeaders(next), handlertest.NewRequest(h))
			if !tt.ok {
				handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeDevice, handlertest.MsgDevice)
				return
			}
			handlertest.AssertPassed(t, w, next)
			d, ok := middleware.DeviceFromContext(next.Context(t))
			if !ok {
				t.Fatal("DeviceFromContext reports no device")
			}
			want := middleware.Device{
				OSVersion:   strings.TrimSpace(h["X-Operating-Sys-Version"][0]),
				Fingerprint: strings.TrimSpace(h["X-Device-Fingerprint"][0]),
				Agent:       strings.TrimSpace(h["X-Agent"][0]),
				IP:          tt.wantIP,
			}
			if d != want {
				t.Errorf("DeviceFromContext = %+v, want %+v", d, want)
			}
		})
	}
}

// Header names are case-insensitive on the wire: the server canonicalises
// them before DeviceHeaders sees them.
func TestDeviceHeadersOverHTTP(t *testing.T) {
	t.Parallel()
	got := make(chan middleware.Device, 1)
	srv := httptest.NewServer(middleware.DeviceHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := middleware.DeviceFromContext(r.Context())
		got <- d
	})))
	t.Cleanup(srv.Close)

	r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Non-canonical keys go on the wire as written.
	r.Header = http.Header{
		"x-operating-sys-version": {"ios17.2"},
		"X-DEVICE-FINGERPRINT":    {"abc"},
		"x-agent":                 {"app/2.0"},
		"x-device-ip":             {"2001:db8::2"},
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	want := middleware.Device{OSVersion: "ios17.2", Fingerprint: "abc", Agent: "app/2.0", IP: netip.MustParseAddr("2001:db8::2")}
	if d := <-got; d != want {
		t.Errorf("device = %+v, want %+v", d, want)
	}
}

func TestDeviceHeadersLocalised(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hdr  http.Header
		msg  string
	}{
		{"X-L zh", http.Header{"X-L": {"zh"}}, handlertest.MsgDeviceZH},
		{"X-L zh-CN", http.Header{"X-L": {"zh-CN"}}, handlertest.MsgDeviceZH},
		{"Accept-Language zh", http.Header{"Accept-Language": {"zh-CN,zh;q=0.9"}}, handlertest.MsgDeviceZH},
		{"X-L en", http.Header{"X-L": {"en"}}, handlertest.MsgDevice},
		{"no language", http.Header{}, handlertest.MsgDevice},
	}
	h := middleware.Localize(i18n.Default())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			w := handlertest.Serve(h(middleware.DeviceHeaders(next)), handlertest.NewRequest(tt.hdr))
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeDevice, tt.msg)
		})
	}
}
