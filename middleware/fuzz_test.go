package middleware_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

func FuzzDeviceHeaders(f *testing.F) {
	f.Add("windows10.1.1", "fp-1", "Mozilla/5.0", "203.0.113.7", uint8(0xff))
	f.Add("ios17", "fp", "app/1", "2001:db8::1", uint8(0x07))
	f.Add(" ", "fp", "app", "999.1.1.1", uint8(0xff))
	f.Add("a\x00", "fp\n", "\x7f", "fe80::1%eth0", uint8(0xff))
	f.Add(strings.Repeat("v", 129), "fp", "agent", "", uint8(0x0f))
	f.Add("os", "fp", "agent", "::ffff:1.2.3.4", uint8(0x1f)) // repeated X-Agent
	keys := []string{"X-Operating-Sys-Version", "X-Device-Fingerprint", "X-Agent", "X-Device-Ip"}
	f.Fuzz(func(t *testing.T, osVersion, fingerprint, agent, ip string, present uint8) {
		values := []string{osVersion, fingerprint, agent, ip}
		h := http.Header{}
		for i, k := range keys {
			if present&(1<<i) != 0 {
				h[k] = []string{values[i]}
			}
		}
		if present&(1<<4) != 0 {
			h["X-Agent"] = append(h["X-Agent"], agent)
		}
		next := &handlertest.Recorder{}
		w := handlertest.Serve(middleware.DeviceHeaders(next), handlertest.NewRequest(h))
		if w.Code != http.StatusOK {
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeDevice, handlertest.MsgDevice)
			return
		}
		handlertest.AssertPassed(t, w, next)
		d, ok := middleware.DeviceFromContext(next.Context(t))
		if !ok {
			t.Fatal("next ran without a device")
		}
		for _, f := range []struct {
			got, sent string
			max       int
		}{
			{d.OSVersion, osVersion, middleware.MaxOSVersionLen},
			{d.Fingerprint, fingerprint, middleware.MaxFingerprintLen},
			{d.Agent, agent, middleware.MaxAgentLen},
		} {
			if f.got == "" || f.got != strings.TrimSpace(f.sent) || len(f.got) > f.max ||
				strings.ContainsFunc(f.got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Errorf("device field %q accepted from %q", f.got, f.sent)
			}
		}
		if d.IP.IsValid() != (present&8 != 0 && strings.TrimSpace(ip) != "") {
			t.Errorf("device IP %v from X-device-ip %q (sent: %v)", d.IP, ip, present&8 != 0)
		}
	})
}
