package middleware

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/ciamkit/selfservice/i18n"
)

// Device is what the client says about itself in the device headers.
type Device struct {
	OSVersion   string     // X-operating-sys-version
	Fingerprint string     // X-device-fingerprint
	Agent       string     // X-agent
	IP          netip.Addr // X-device-ip; the zero Addr when absent
}

// Length limits of the device headers, in bytes. Real values are far
// shorter; the limits keep logs and stores safe from padding.
const (
	MaxOSVersionLen   = 128
	MaxFingerprintLen = 256
	MaxAgentLen       = 512
	maxIPLen          = 64
)

// DeviceHeaders is a middleware that requires X-operating-sys-version,
// X-device-fingerprint and X-agent (non-blank, within their length limits,
// no control characters, one value each) and, when present, an X-device-ip
// that parses as an IPv4 or IPv6 address. Anything else is answered with
// IDAAS.SDK.PARAM.0001. The parsed Device goes into the request context.
func DeviceHeaders(next http.Handler) http.Handler {
	return stepMiddleware(deviceHeaders)(next)
}

func deviceHeaders(w http.ResponseWriter, r *http.Request, st *state) bool {
	d, ok := parseDevice(r.Header)
	if !ok {
		writeError(w, st.localeOrDefault(), i18n.CodeDeviceIncomplete)
		return false
	}
	st.device, st.hasDevice = d, true
	return true
}

// ParseDevice reads the device headers of h as DeviceHeaders does: an
// error (i18n.CodeDeviceIncomplete) unless X-operating-sys-version,
// X-device-fingerprint and X-agent are each given once, not blank, within
// their length limits and free of control characters, and X-device-ip,
// when present, is an IPv4 or IPv6 address. Values are trimmed.
func ParseDevice(h http.Header) (Device, error) {
	d, ok := parseDevice(h)
	if !ok {
		return Device{}, i18n.CodeDeviceIncomplete
	}
	return d, nil
}

// Valid reports whether d is what DeviceHeaders accepts: OSVersion,
// Fingerprint and Agent not blank, within their length limits and free of
// control characters. IP may be the zero Addr (the header was absent).
func (d Device) Valid() bool {
	return validField(d.OSVersion, MaxOSVersionLen) && validField(d.Fingerprint, MaxFingerprintLen) &&
		validField(d.Agent, MaxAgentLen)
}

func validField(v string, maxLen int) bool {
	if len(v) > maxLen || strings.TrimSpace(v) == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func parseDevice(h http.Header) (Device, bool) {
	var d Device
	var ok bool
	if d.OSVersion, ok = deviceField(h, "X-Operating-Sys-Version", MaxOSVersionLen, true); !ok {
		return Device{}, false
	}
	if d.Fingerprint, ok = deviceField(h, "X-Device-Fingerprint", MaxFingerprintLen, true); !ok {
		return Device{}, false
	}
	if d.Agent, ok = deviceField(h, "X-Agent", MaxAgentLen, true); !ok {
		return Device{}, false
	}
	ip, ok := deviceField(h, "X-Device-Ip", maxIPLen, false)
	if !ok {
		return Device{}, false
	}
	// Present means it must parse: a blank value is not an address.
	if _, present := h["X-Device-Ip"]; present {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return Device{}, false
		}
		d.IP = addr
	}
	return d, true
}

// deviceField returns the trimmed single value of header key. ok is false
// when the header repeats, is too long, holds a control character, or is
// required and blank.
func deviceField(h http.Header, key string, maxLen int, required bool) (string, bool) {
	vs := h[key]
	switch len(vs) {
	case 0:
		return "", !required
	case 1:
	default:
		return "", false
	}
	v := strings.TrimSpace(vs[0])
	if len(v) > maxLen || (required && v == "") {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	return v, true
}
