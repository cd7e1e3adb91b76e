package selfservice_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
)

func TestCanonicalEmail(t *testing.T) {
	t.Parallel()
	valid := []struct{ in, email, canonical string }{
		{"a@example.com", "a@example.com", "a@example.com"},
		{"  Alice.Smith+tag@Example.COM\t", "Alice.Smith+tag@Example.COM", "alice.smith+tag@example.com"},
		{"15201657312@163.com", "15201657312@163.com", "15201657312@163.com"},
		{"o'brien!#$%&*=?^_`{|}~-/@example.org", "o'brien!#$%&*=?^_`{|}~-/@example.org", "o'brien!#$%&*=?^_`{|}~-/@example.org"},
		{"josé@bücher.example", "josé@bücher.example", "josé@xn--bcher-kva.example"},
		{"jose\u0301@BÜCHER.example", "josé@BÜCHER.example", "josé@xn--bcher-kva.example"}, // NFD in, NFC out
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{"用户@例子.广告", "用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
		{"Straße@example.de", "Straße@example.de", "straße@example.de"}, // no full folding: ß never becomes ss
		{"a@sub.domain-with-hyphen.example", "a@sub.domain-with-hyphen.example", "a@sub.domain-with-hyphen.example"},
		{strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 64) + "@example.com"},
	}
	for _, tc := range valid {
		t.Run("valid/"+tc.in, func(t *testing.T) {
			email, canonical, err := selfservice.CanonicalEmail(tc.in)
			if err != nil {
				t.Fatalf("CanonicalEmail(%q): %v", tc.in, err)
			}
			if email != tc.email || canonical != tc.canonical {
				t.Fatalf("CanonicalEmail(%q) = %q, %q; want %q, %q", tc.in, email, canonical, tc.email, tc.canonical)
			}
			if _, again, err := selfservice.CanonicalEmail(canonical); err != nil || again != canonical {
				t.Fatalf("canonical form %q is not stable: %q, %v", canonical, again, err)
			}
		})
	}

	invalid := []string{
		"", "   ", "plain", "@example.com", "a@", "a@@example.com", "a@b@example.com",
		"a@example", "a@localhost", "a@example.", "a@.example.com", "a@example..com",
		"Alice <a@example.com>", "<a@example.com>", "a(comment)@example.com", `"quoted"@example.com`,
		"a b@example.com", "a\tb@example.com", "a\r\nBcc: x@y.com@example.com", "a@example.com\r\nBcc: x@y.com",
		"a\x00@example.com", "a\x7f@example.com",
		".a@example.com", "a.@example.com", "a..b@example.com",
		strings.Repeat("l", 65) + "@example.com",
		"a@" + strings.Repeat(strings.Repeat("d", 62)+".", 4) + "com", // 257 bytes
		"a@-example.com", "a@example-.com", "a@exa_mple.com", "a@[192.168.1.2]", "a@192.168.1.2", "a@example.123",
		"ａ@example.com",        // fullwidth: a compatibility character
		"ﬁle@example.com",      // ligature
		"a\u200b@example.com",  // zero-width space
		"a\u202e@example.com",  // right-to-left override
		"a@exa\u200dmple.com",  // zero-width joiner in the domain
		"a@exa\u00admple.com",  // soft hyphen in the domain
		"\xff@example.com",     // invalid UTF-8
		"a\u2028b@example.com", // line separator
		"☃@example.com",        // a symbol, not a letter
	}
	for _, in := range invalid {
		t.Run("invalid/"+in, func(t *testing.T) {
			_, _, err := selfservice.CanonicalEmail(in)
			if !errors.Is(err, i18n.ErrEmailInvalid) {
				t.Fatalf("CanonicalEmail(%q) = %v, want USER.0021", in, err)
			}
		})
	}
}

// TestCanonicalEmailNoCollisions lists addresses that must stay apart.
func TestCanonicalEmailNoCollisions(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{
		{"strasse@example.de", "straße@example.de"},
		{"i@example.com", "ı@example.com"},
		{"a@example.com", "a@example.co"},
		{"a.b@example.com", "ab@example.com"},
	}
	for _, p := range pairs {
		_, c1, err1 := selfservice.CanonicalEmail(p[0])
		_, c2, err2 := selfservice.CanonicalEmail(p[1])
		if err1 == nil && err2 == nil && c1 == c2 {
			t.Errorf("%q and %q share the canonical form %q", p[0], p[1], c1)
		}
	}
}

func FuzzCanonicalEmail(f *testing.F) {
	for _, s := range []string{"a@example.com", "josé@bücher.example", "a\r\n@b.com", "ａ@b.com", "用户@例子.广告", "x@xn--bcher-kva.example", `"a"@b.c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		email, canonical, err := selfservice.CanonicalEmail(in)
		if err != nil {
			if !errors.Is(err, i18n.ErrEmailInvalid) {
				t.Fatalf("error %v does not wrap USER.0021", err)
			}
			return
		}
		if len(email) > selfservice.MaxEmailLen || len(canonical) > selfservice.MaxEmailLen {
			t.Fatalf("%q accepted at length %d/%d", in, len(email), len(canonical))
		}
		if strings.ContainsAny(email+canonical, "\r\n\x00<>\"() ") {
			t.Fatalf("%q accepted with a forbidden character: %q %q", in, email, canonical)
		}
		if _, again, err := selfservice.CanonicalEmail(canonical); err != nil || again != canonical {
			t.Fatalf("canonical %q of %q is not stable: %q, %v", canonical, in, again, err)
		}
		if _, fromEmail, err := selfservice.CanonicalEmail(email); err != nil || fromEmail != canonical {
			t.Fatalf("email %q of %q canonicalises to %q, not %q (%v)", email, in, fromEmail, canonical, err)
		}
	})
}
