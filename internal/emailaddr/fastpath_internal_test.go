package emailaddr

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// canonicalFull is Canonical without its ASCII shortcuts: every address is
// normalised, its local part checked for compatibility characters and its
// domain mapped by UTS #46. Canonical must answer exactly as it does.
func canonicalFull(s string) (email, canonical string, err error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 4*MaxLen || !utf8.ValidString(s) {
		return "", "", ErrSyntax
	}
	s = norm.NFC.String(s)
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", ErrSyntax
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalLen {
		return "", "", ErrLength
	}
	if err := checkLocalPart(local, false); err != nil {
		return "", "", err
	}
	asciiDomain, err := checkDomain(domain)
	if err != nil {
		return "", "", err
	}
	canonical = norm.NFC.String(strings.ToLower(local)) + "@" + asciiDomain
	if len(s) > MaxLen || len(canonical) > MaxLen {
		return "", "", ErrLength
	}
	return s, canonical, nil
}

// fastPathSeeds are ASCII addresses at the edges of isPlainHostName, and a
// few that are not ASCII.
var fastPathSeeds = []string{
	"a@example.com", "Alice.Smith+tag@Example.COM", "a@EXAMPLE.com", "a@sub.domain-with-hyphen.example",
	"a@xn--bcher-kva.example", "a@XN--BCHER-KVA.example", "a@ab--cd.example", "a@ab--.example", "a@a--b.example",
	"a@-a.example", "a@a-.example", "a@example.", "a@.example", "a@example..com", "a@example", "a@example.123",
	"a@example.c0m", "a@example.xn--4rr70v", "a@example.XN--4RR70V", "a@exa_mple.com", "a@192.168.1.2",
	"a@" + strings.Repeat("d", 63) + ".com", "a@" + strings.Repeat("d", 64) + ".com",
	"a@" + strings.Repeat(strings.Repeat("d", 62)+".", 4) + "com", "a@" + strings.Repeat(strings.Repeat("d", 61)+".", 4) + "co",
	strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 65) + "@example.com",
	strings.Repeat("l", 64) + "@" + strings.Repeat(strings.Repeat("d", 60)+".", 3) + "com",
	"a..b@example.com", ".a@example.com", "a b@example.com", "a\x7f@example.com", "\"a\"@example.com",
	"  a@example.com\t", "a@b@example.com", "@example.com", "a@", "josé@bücher.example", "a@bücher.example",
}

func TestFastPath(t *testing.T) {
	t.Parallel()
	for _, in := range fastPathSeeds {
		checkFastPath(t, in)
	}
}

func FuzzFastPath(f *testing.F) {
	for _, s := range fastPathSeeds {
		f.Add(s)
	}
	f.Fuzz(checkFastPath)
}

func checkFastPath(t *testing.T, in string) {
	email, canonical, err := Canonical(in)
	wantEmail, wantCanonical, wantErr := canonicalFull(in)
	if email != wantEmail || canonical != wantCanonical || err != wantErr {
		t.Fatalf("Canonical(%q) = %q, %q, %v; the full path gives %q, %q, %v",
			in, email, canonical, err, wantEmail, wantCanonical, wantErr)
	}
}
