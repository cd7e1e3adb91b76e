package middleware_test

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

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
		next := &recorder{}
		w := serve(middleware.DeviceHeaders(next), newRequest(h))
		if w.Code != http.StatusOK {
			assertError(t, w, next, http.StatusBadRequest, codeDevice, msgDevice)
			return
		}
		assertPassed(t, w, next)
		d, ok := middleware.DeviceFromContext(next.context(t))
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

// fuzzKey is a fixed key, so that seeds signed with it stay valid.
var fuzzKey = ed25519.NewKeyFromSeed([]byte("selfservice fuzz key, 32 bytes!!"))

func FuzzBearerToken(f *testing.F) {
	sign := func(c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = "fuzz"
		raw, err := tok.SignedString(fuzzKey)
		if err != nil {
			f.Fatal(err)
		}
		return raw
	}
	valid := sign(claims())
	for _, c := range []jwt.MapClaims{
		claims(setClaim("exp", "1999999999")),
		claims(setClaim("iat", "1")),
		claims(setClaim("client_id", "other-app"), setClaim("scp", []string{"openid"})),
		claims(setClaim("typ", "at+jwt")),
		claims(setClaim("sub", strings.Repeat("s", 256))),
	} {
		f.Add("Bearer " + sign(c))
	}
	for _, s := range []string{
		"Bearer " + valid, "bearer\t" + valid, "Bearer " + valid + "x", "Bearer " + strings.Replace(valid, ".", "..", 1),
		"Bearer a.b.c", "Bearer ....", "Bearer", "Bearer    ", "", "Basic xxx", "Bearer e30.e30.",
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "BEARER " + strings.Repeat("A", 9000),
	} {
		f.Add(s)
	}
	pub := fuzzKey.Public()
	v := newVerifier(f, func(o *middleware.VerifierOptions) {
		o.Keyfunc = func(*jwt.Token) (any, error) { return pub, nil }
	})
	h := middleware.RequireBearer(v)
	f.Fuzz(func(t *testing.T, authorization string) {
		next := &recorder{}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header["Authorization"] = []string{authorization}
		r.Header["X-Client-Id"] = []string{testClient}
		w := serve(h(next), r)
		if w.Code == http.StatusOK {
			assertPassed(t, w, next)
			if c := middleware.ClaimsFromContext(next.context(t)); c == nil || c.Subject == "" {
				t.Errorf("next ran with claims %+v", c)
			}
			return
		}
		var body struct {
			Code string `json:"error_code"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		switch body.Code {
		case codeTokenEmpty:
			assertError(t, w, next, http.StatusBadRequest, codeTokenEmpty, msgTokenEmpty)
		default:
			assertError(t, w, next, http.StatusBadRequest, codeTokenInvalid, msgTokenInvalid)
		}
	})
}
