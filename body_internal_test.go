package selfservice

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ciamkit/selfservice/i18n"
)

func TestDecodeFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body       string
		wantErr          bool
		wantEmail, wantC string
	}{
		{name: "both", body: `{"email":"a@b.co","verify_code":"123456"}`, wantEmail: "a@b.co", wantC: "123456"},
		{name: "white space around", body: " \n{ \"email\" : \"a@b.co\" }\n ", wantEmail: "a@b.co"},
		{name: "empty object", body: `{}`},
		{name: "null members", body: `{"email":null,"verify_code":null}`},
		{name: "escapes", body: `{"email":"a\u0040b.co"}`, wantEmail: "a@b.co"},
		{name: "null", body: `null`, wantErr: true},
		{name: "array", body: `[]`, wantErr: true},
		{name: "string", body: `"x"`, wantErr: true},
		{name: "empty", body: ``, wantErr: true},
		{name: "unknown field", body: `{"email":"a@b.co","admin":"true"}`, wantErr: true},
		{name: "field name in another case", body: `{"Email":"a@b.co"}`, wantErr: true},
		{name: "duplicate field", body: `{"email":"a@b.co","email":"c@d.co"}`, wantErr: true},
		{name: "number", body: `{"verify_code":123456}`, wantErr: true},
		{name: "bool", body: `{"email":true}`, wantErr: true},
		{name: "nested", body: `{"email":{"x":"y"}}`, wantErr: true},
		{name: "trailing object", body: `{}{}`, wantErr: true},
		{name: "trailing garbage", body: `{"email":"a@b.co"} x`, wantErr: true},
		{name: "truncated", body: `{"email":"a@b.co"`, wantErr: true},
		{name: "invalid UTF-8", body: "{\"email\":\"\xff@b.co\"}", wantErr: true},
		{name: "trailing comma", body: `{"email":"a@b.co",}`, wantErr: true},
		{name: "escaped name", body: `{"em\u0061il":"a@b.co"}`, wantEmail: "a@b.co"},
		{name: "escaped quotes", body: `{"verify_code":"\"1\"\\\/"}`, wantC: `"1"\/`},
		{name: "tabs and returns", body: "\t{\r\n\"email\"\t:\r\"a@b.co\"\t}\r\n", wantEmail: "a@b.co"},
		{name: "null cut short", body: `{"email":nul}`, wantErr: true},
		{name: "null and more", body: `{"email":nullx}`, wantErr: true},
		{name: "control character", body: "{\"email\":\"a\x01@b.co\"}", wantErr: true},
		{name: "unknown escape", body: `{"email":"\q"}`, wantErr: true},
		{name: "short unicode escape", body: `{"email":"\u12"}`, wantErr: true},
		{name: "non-hex unicode escape", body: `{"email":"\u12g4"}`, wantErr: true},
		{name: "escape at the end", body: `{"email":"\`, wantErr: true},
		{name: "missing colon", body: `{"email" "a@b.co"}`, wantErr: true},
		{name: "missing comma", body: `{"email":"a@b.co" "verify_code":"1"}`, wantErr: true},
		{name: "lone comma", body: `{,}`, wantErr: true},
		{name: "unquoted name", body: `{email:"a@b.co"}`, wantErr: true},
		{name: "extra brace", body: `{"email":"a@b.co"}}`, wantErr: true},
		{name: "open brace only", body: `{`, wantErr: true},
		{name: "white space only", body: " \n", wantErr: true},
		{name: "single quotes", body: `{'email':'a@b.co'}`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var email, code string
			err := decodeFields([]byte(tc.body), []field{{"email", &email}, {"verify_code", &code}})
			if tc.wantErr {
				if !errors.Is(err, i18n.CodeBodyMalformed) {
					t.Fatalf("err = %v, want REQ.9104", err)
				}
				return
			}
			if err != nil || email != tc.wantEmail || code != tc.wantC {
				t.Fatalf("got %q %q %v, want %q %q", email, code, err, tc.wantEmail, tc.wantC)
			}
		})
	}
}

func TestIsJSON(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON; Charset=UTF-8":   true,
		"application/json;charset=utf8":     true,
		"application/json;charset=latin1":   true,
		"application/json; boundary=x":      false,
		"text/plain":                        false,
		"application/x-www-form-urlencoded": false,
		"":                                  false,
		"application/json, text/plain":      false,
	} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func FuzzDecodeFields(f *testing.F) {
	for _, s := range []string{`{"email":"a@b.co","verify_code":"123456"}`, `{}`, `null`, `[]`, `{"email":1}`, `{"a":"b"}{}`, "{\"email\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var email, code string
		err := decodeFields(body, []field{{"email", &email}, {"verify_code", &code}})
		if err != nil && !errors.Is(err, i18n.CodeBodyMalformed) {
			t.Fatalf("error %v is not REQ.9104", err)
		}
		// Differential check: what is accepted, encoding/json reads the
		// same way.
		var ref map[string]*string
		refErr := json.Unmarshal(body, &ref)
		if err == nil {
			if refErr != nil || ref == nil {
				t.Fatalf("accepted %q, which encoding/json refuses as an object of strings: %v", body, refErr)
			}
			for name, got := range map[string]string{"email": email, "verify_code": code} {
				want := ""
				if p := ref[name]; p != nil {
					want = *p
				}
				if got != want {
					t.Fatalf("%s = %q, encoding/json reads %q from %q", name, got, want, body)
				}
			}
			for name := range ref {
				if name != "email" && name != "verify_code" {
					t.Fatalf("accepted unknown field %q in %q", name, body)
				}
			}
			return
		}
		// And the other way: what encoding/json reads as one object of
		// strings or nulls, in valid UTF-8, with known names given once
		// each, is accepted.
		if refErr == nil && ref != nil && utf8.Valid(body) && knownOnce(body) {
			t.Fatalf("refused %q, which encoding/json reads as %v: %v", body, ref, err)
		}
	})
}

func TestCodes(t *testing.T) {
	t.Parallel()
	if codeBound%codeSpace != 0 || codeBound+codeSpace <= 1<<32 {
		t.Fatalf("codeBound %d is not the largest multiple of %d below 2^32", codeBound, codeSpace)
	}
	seen := map[string]bool{}
	for range 1000 {
		c := newCode()
		if !wellFormedCode(c) {
			t.Fatalf("newCode() = %q", c)
		}
		seen[c] = true
	}
	// 1000 draws from a million: a repeat or two is possible, dozens are not.
	if len(seen) < 990 {
		t.Fatalf("only %d distinct codes in 1000 draws", len(seen))
	}
	for in, want := range map[uint32]string{0: "000000", 7: "000007", 999999: "999999", 123456: "123456"} {
		if got := formatCode(in); got != want {
			t.Errorf("formatCode(%d) = %q", in, got)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", " 12345", "１２３４５６", "+12345", "12 345"} {
		if wellFormedCode(bad) {
			t.Errorf("wellFormedCode(%q) = true", bad)
		}
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	h := newCodeHasher(secret)
	a := h.hash("UPDATE_EMAIL_EMS", "a@b.co", "123456")
	if again := h.hash("UPDATE_EMAIL_EMS", "a@b.co", "123456"); string(again) != string(a) {
		t.Fatal("the pooled HMAC is not reset between uses")
	}
	// The stored form must not change between releases: codes in flight
	// in a shared store would stop matching.
	want := hmac.New(sha256.New, secret)
	want.Write([]byte("UPDATE_EMAIL_EMS\x00a@b.co\x00123456"))
	if !hmac.Equal(a, want.Sum(nil)) {
		t.Fatalf("hash = %x, want HMAC-SHA256(secret, purpose NUL address NUL code) = %x", a, want.Sum(nil))
	}
	long := strings.Repeat("x", 300) + "@b.co" // longer than the pooled buffer
	want.Reset()
	want.Write([]byte("UPDATE_EMAIL_EMS\x00" + long + "\x00123456"))
	if got := h.hash("UPDATE_EMAIL_EMS", long, "123456"); !hmac.Equal(got, want.Sum(nil)) {
		t.Fatalf("hash of a long input = %x, want %x", got, want.Sum(nil))
	}
	for _, other := range [][]byte{
		h.hash("UPDATE_EMAIL_EMS", "a@b.co", "123457"),
		h.hash("UPDATE_EMAIL_EMS", "a@b.com", "123456"),
		h.hash("REGISTER_EMS", "a@b.co", "123456"),
		newCodeHasher([]byte("another secret of thirty-two b..")).hash("UPDATE_EMAIL_EMS", "a@b.co", "123456"),
	} {
		if string(other) == string(a) {
			t.Fatal("different inputs share a code hash")
		}
	}
}

// knownOnce reports whether the JSON object body names only email and
// verify_code, each at most once.
func knownOnce(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok || seen[name] || (name != "email" && name != "verify_code") {
			return false
		}
		seen[name] = true
		if _, err := dec.Token(); err != nil { // the value: a string or null
			return false
		}
	}
	return true
}
