package emailaddr_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"

	"github.com/ciamkit/selfservice/internal/emailaddr"
)

// reasons are the errors Canonical may return.
var reasons = []error{emailaddr.ErrSyntax, emailaddr.ErrLength, emailaddr.ErrCharacter, emailaddr.ErrDomain}

func isReason(err error) bool {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	valid := []struct{ in, email, canonical string }{
		{"a@example.com", "a@example.com", "a@example.com"},
		{"  Alice.Smith+tag@Example.COM\t", "Alice.Smith+tag@Example.COM", "alice.smith+tag@example.com"},
		{"15201657312@163.com", "15201657312@163.com", "15201657312@163.com"},
		{"o'brien!#$%&*=?^_`{|}~-/@example.org", "o'brien!#$%&*=?^_`{|}~-/@example.org", "o'brien!#$%&*=?^_`{|}~-/@example.org"},
		{"josé@bücher.example", "josé@bücher.example", "josé@xn--bcher-kva.example"},
		{"jose\u0301@BÜCHER.example", "josé@BÜCHER.example", "josé@xn--bcher-kva.example"}, // NFD in, NFC out
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{"x@bücher.xn--4rr70v", "x@bücher.xn--4rr70v", "x@xn--bcher-kva.xn--4rr70v"}, // labels in both forms
		{"用户@例子.广告", "用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
		{"Straße@example.de", "Straße@example.de", "straße@example.de"}, // no full folding: ß never becomes ss
		{"a@straße.de", "a@straße.de", "a@xn--strae-oqa.de"},            // nor in the domain (UTS 46 non-transitional)
		{"σ@ΕΛΛΆΔΑ.example", "σ@ΕΛΛΆΔΑ.example", "σ@xn--hxakic4aa.example"},
		{"a@sub.domain-with-hyphen.example", "a@sub.domain-with-hyphen.example", "a@sub.domain-with-hyphen.example"},
		{strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 64) + "@example.com"},
		{"한글@example.com", "한글@example.com", "한글@example.com"}, // Hangul syllables are letters, not fillers
	}
	for _, tc := range valid {
		t.Run("valid/"+tc.in, func(t *testing.T) {
			t.Parallel()
			email, canonical, err := emailaddr.Canonical(tc.in)
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tc.in, err)
			}
			if email != tc.email || canonical != tc.canonical {
				t.Fatalf("Canonical(%q) = %q, %q; want %q, %q", tc.in, email, canonical, tc.email, tc.canonical)
			}
			if _, again, err := emailaddr.Canonical(canonical); err != nil || again != canonical {
				t.Fatalf("canonical form %q is not stable: %q, %v", canonical, again, err)
			}
		})
	}

	invalid := []struct {
		in   string
		want error // nil: any reason
	}{
		{"", emailaddr.ErrSyntax}, {"   ", emailaddr.ErrSyntax}, {"plain", emailaddr.ErrSyntax},
		{"@example.com", emailaddr.ErrSyntax}, {"a@", emailaddr.ErrSyntax}, {"a@@example.com", nil},
		{"a@b@example.com", nil}, {"a@example", emailaddr.ErrDomain}, {"a@localhost", emailaddr.ErrDomain},
		{"a@example.", emailaddr.ErrDomain}, {"a@.example.com", emailaddr.ErrDomain}, {"a@example..com", emailaddr.ErrDomain},
		{"Alice <a@example.com>", nil}, {"<a@example.com>", nil}, {"a(comment)@example.com", emailaddr.ErrSyntax},
		{`"quoted"@example.com`, emailaddr.ErrSyntax},
		{"a b@example.com", emailaddr.ErrCharacter}, {"a\tb@example.com", emailaddr.ErrCharacter},
		{"a\r\nBcc: x@y.com@example.com", nil}, {"a@example.com\r\nBcc: x@y.com", nil},
		{"a\x00@example.com", emailaddr.ErrCharacter}, {"a\x7f@example.com", emailaddr.ErrCharacter},
		{".a@example.com", emailaddr.ErrSyntax}, {"a.@example.com", emailaddr.ErrSyntax}, {"a..b@example.com", emailaddr.ErrSyntax},
		{strings.Repeat("l", 65) + "@example.com", emailaddr.ErrLength},
		{"a@" + strings.Repeat(strings.Repeat("d", 62)+".", 4) + "com", nil}, // 257 bytes
		{"a@-example.com", emailaddr.ErrDomain}, {"a@example-.com", emailaddr.ErrDomain}, {"a@exa_mple.com", emailaddr.ErrDomain},
		{"a@[192.168.1.2]", emailaddr.ErrDomain}, {"a@192.168.1.2", emailaddr.ErrDomain}, {"a@example.123", emailaddr.ErrDomain},
		{"ａ@example.com", emailaddr.ErrCharacter},        // fullwidth: a compatibility character
		{"ﬁle@example.com", emailaddr.ErrCharacter},      // ligature
		{"a\u200b@example.com", emailaddr.ErrCharacter},  // zero-width space
		{"a\u202e@example.com", emailaddr.ErrCharacter},  // right-to-left override
		{"a@exa\u200dmple.com", emailaddr.ErrCharacter},  // zero-width joiner in the domain
		{"a@exa\u00admple.com", emailaddr.ErrCharacter},  // soft hyphen in the domain
		{"\xff@example.com", emailaddr.ErrSyntax},        // invalid UTF-8
		{"a\u2028b@example.com", emailaddr.ErrCharacter}, // line separator
		{"☃@example.com", emailaddr.ErrCharacter},        // a symbol, not a letter
		{"İadmin@example.com", emailaddr.ErrCharacter},   // lower-cases to ASCII i

		// Default-ignorable characters that are marks or letters, which
		// the letter/mark/number rule let through (issue 10, 5).
		{"admin\u034f@example.com", emailaddr.ErrCharacter},     // COMBINING GRAPHEME JOINER (Mn)
		{"admin\ufe0f@example.com", emailaddr.ErrCharacter},     // VARIATION SELECTOR-16 (Mn)
		{"admin\U000e0100@example.com", emailaddr.ErrCharacter}, // VARIATION SELECTOR-17 (Mn)
		{"admin\u115f@example.com", emailaddr.ErrCharacter},     // HANGUL CHOSEONG FILLER (Lo)
		{"admin\u1160@example.com", emailaddr.ErrCharacter},     // HANGUL JUNGSEONG FILLER (Lo)
		{"admin\u3164@example.com", emailaddr.ErrCharacter},     // HANGUL FILLER (Lo)
		{"admin\u180b@example.com", emailaddr.ErrCharacter},     // MONGOLIAN FREE VARIATION SELECTOR ONE (Mn)
		{"admin\u17b4@example.com", emailaddr.ErrCharacter},     // KHMER VOWEL INHERENT AQ (Mn)
		{"\u115fadmin@example.com", emailaddr.ErrCharacter},
		{"a@exa\u034fmple.com", emailaddr.ErrCharacter}, // UTS 46 would drop it
		{"a@exa\ufe0fmple.com", emailaddr.ErrCharacter},

		// Full stops other than the ASCII one, which UTS 46 reads as dots.
		{"a@example\u3002com", emailaddr.ErrCharacter}, // IDEOGRAPHIC FULL STOP
		{"a@example\uff0ecom", emailaddr.ErrCharacter}, // FULLWIDTH FULL STOP
		{"a@example\uff61com", emailaddr.ErrCharacter}, // HALFWIDTH IDEOGRAPHIC FULL STOP
		{"a@例子\u3002广告", emailaddr.ErrCharacter},

		// Characters UTS 46 maps to others than their lower case.
		{"a@STRA\u1e9eE.de", emailaddr.ErrCharacter}, // ẞ would become ss
		{"a@\u0130stanbul.example", emailaddr.ErrCharacter},
	}
	for _, tc := range invalid {
		t.Run("invalid/"+tc.in, func(t *testing.T) {
			t.Parallel()
			email, canonical, err := emailaddr.Canonical(tc.in)
			if err == nil {
				t.Fatalf("Canonical(%q) = %q, %q; want an error", tc.in, email, canonical)
			}
			if !isReason(err) {
				t.Fatalf("Canonical(%q) error %v is none of the reasons", tc.in, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Canonical(%q) error %v, want %v", tc.in, err, tc.want)
			}
		})
	}
}

// TestDefaultIgnorableRefused walks every Default_Ignorable_Code_Point (and
// the other format characters, which the derivation leaves out but the rules
// refuse too): none may hide in the local part or the domain.
func TestDefaultIgnorableRefused(t *testing.T) {
	t.Parallel()
	n := 0
	for _, table := range []*unicode.RangeTable{unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Cf} {
		for r := range runes(table) {
			n++
			for _, in := range []string{
				"admin" + string(r) + "@example.com",
				string(r) + "admin@example.com",
				"a@exa" + string(r) + "mple.com",
				"a@example.co" + string(r) + "m",
			} {
				if email, canonical, err := emailaddr.Canonical(in); !errors.Is(err, emailaddr.ErrCharacter) {
					t.Errorf("Canonical(%+q) = %q, %q, %v; want ErrCharacter", in, email, canonical, err)
				}
			}
		}
	}
	if n < 4000 {
		t.Fatalf("walked %d code points; the tables look wrong", n)
	}
}

func runes(table *unicode.RangeTable) func(yield func(rune) bool) {
	return func(yield func(rune) bool) {
		for _, r16 := range table.R16 {
			for r := rune(r16.Lo); r <= rune(r16.Hi); r += rune(r16.Stride) {
				if !yield(r) {
					return
				}
			}
		}
		for _, r32 := range table.R32 {
			for r := rune(r32.Lo); r <= rune(r32.Hi); r += rune(r32.Stride) {
				if !yield(r) {
					return
				}
			}
		}
	}
}

// TestNoCollisions lists addresses that must stay apart.
func TestNoCollisions(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{
		{"strasse@example.de", "straße@example.de"},
		{"a@strasse.de", "a@straße.de"},
		{"i@example.com", "ı@example.com"},
		{"a@example.com", "a@example.co"},
		{"a.b@example.com", "ab@example.com"},
		{"admin@example.com", "admin\u034f@example.com"},
		{"a@example.com", "a@example\u3002com"},
	}
	for _, p := range pairs {
		_, c1, err1 := emailaddr.Canonical(p[0])
		_, c2, err2 := emailaddr.Canonical(p[1])
		if err1 == nil && err2 == nil && c1 == c2 {
			t.Errorf("%q and %q share the canonical form %q", p[0], p[1], c1)
		}
	}
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		email, canonical     string
		wantEmail, wantCanon string
		want                 error
	}{
		{"no address", "", "", "", "", nil},
		{"canonical computed", "Alice@Example.com", "", "Alice@Example.com", "alice@example.com", nil},
		{"canonical agrees", "Alice@Example.com", "alice@example.com", "Alice@Example.com", "alice@example.com", nil},
		{"address trimmed and NFC", " jose\u0301@example.com ", "", "josé@example.com", "josé@example.com", nil},
		{"IDN", "a@Bücher.example", "a@xn--bcher-kva.example", "a@Bücher.example", "a@xn--bcher-kva.example", nil},
		{"canonical of another address", "alice@example.com", "bob@example.com", "", "", emailaddr.ErrMismatch},
		{"canonical not lower-cased", "Alice@Example.com", "Alice@example.com", "", "", emailaddr.ErrMismatch},
		{"canonical with the Unicode domain", "a@bücher.example", "a@bücher.example", "", "", emailaddr.ErrMismatch},
		{"canonical without an address", "", "alice@example.com", "", "", emailaddr.ErrMismatch},
		{"invalid address", "<alice@example.com>", "", "", "", emailaddr.ErrSyntax},
		{"invalid address with a canonical form", "admin\u034f@example.com", "admin@example.com", "", "", emailaddr.ErrCharacter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			email, canonical, err := emailaddr.Reconcile(tt.email, tt.canonical)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Reconcile(%q, %q) error %v, want %v", tt.email, tt.canonical, err, tt.want)
			}
			if email != tt.wantEmail || canonical != tt.wantCanon {
				t.Errorf("Reconcile(%q, %q) = %q, %q; want %q, %q", tt.email, tt.canonical, email, canonical, tt.wantEmail, tt.wantCanon)
			}
		})
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"a@example.com", "josé@bücher.example", "a\r\n@b.com", "ａ@b.com", "用户@例子.广告",
		"x@xn--bcher-kva.example", `"a"@b.c`, "admin\u034f@example.com", "a@example\u3002com", "a@STRA\u1e9eE.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		email, canonical, err := emailaddr.Canonical(in)
		if err != nil {
			if !isReason(err) {
				t.Fatalf("error %v is none of the reasons", err)
			}
			return
		}
		if len(email) > emailaddr.MaxLen || len(canonical) > emailaddr.MaxLen {
			t.Fatalf("%q accepted at length %d/%d", in, len(email), len(canonical))
		}
		if strings.ContainsAny(email+canonical, "\r\n\x00<>\"() \u3002\uff0e\uff61") {
			t.Fatalf("%q accepted with a forbidden character: %q %q", in, email, canonical)
		}
		for _, r := range email + canonical {
			if unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Cf) {
				t.Fatalf("%q accepted with the default-ignorable %U", in, r)
			}
		}
		if _, again, err := emailaddr.Canonical(canonical); err != nil || again != canonical {
			t.Fatalf("canonical %q of %q is not stable: %q, %v", canonical, in, again, err)
		}
		if _, fromEmail, err := emailaddr.Canonical(email); err != nil || fromEmail != canonical {
			t.Fatalf("email %q of %q canonicalises to %q, not %q (%v)", email, in, fromEmail, canonical, err)
		}
		if e, c, err := emailaddr.Reconcile(email, canonical); err != nil || e != email || c != canonical {
			t.Fatalf("Reconcile(%q, %q) = %q, %q, %v", email, canonical, e, c, err)
		}
	})
}

func ExampleCanonical() {
	for _, in := range []string{"  Jose.Smith@Bücher.Example ", "admin\u034f@example.com", "a@example\u3002com"} {
		email, canonical, err := emailaddr.Canonical(in)
		fmt.Printf("%q %q %v\n", email, canonical, err)
	}
	// Output:
	// "Jose.Smith@Bücher.Example" "jose.smith@xn--bcher-kva.example" <nil>
	// "" "" selfservice: email holds a control, invisible, space or compatibility character
	// "" "" selfservice: email holds a control, invisible, space or compatibility character
}
