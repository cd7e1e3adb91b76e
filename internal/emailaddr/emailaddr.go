// Package emailaddr holds the email address rules of the module: which
// strings are addresses, and the one canonical form that uniqueness, code
// binding, lookup and storage use. The root package's CanonicalEmail answers
// requests with it and the stores' create methods check seeded users with
// it, so that one rule holds everywhere.
//
// Errors are plain sentinels; the root package wraps them in its API error
// (IDAAS.SDK.USER.0021) and the stores in their own context.
package emailaddr

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Address limits from RFC 5321 section 4.5.3.1, in bytes.
const (
	MaxLen      = 254
	MaxLocalLen = 64
)

// Why an address breaks the rules. The texts predate this package and are
// kept, so that logs read as before.
var (
	ErrSyntax    = errors.New("selfservice: email is not a plain addr-spec")
	ErrLength    = errors.New("selfservice: email or its local part is too long")
	ErrCharacter = errors.New("selfservice: email holds a control, invisible, space or compatibility character")
	ErrDomain    = errors.New("selfservice: email domain is not a valid host name")
	// ErrMismatch: a user handed to a store carries a canonical address
	// that is not the canonical form of its address, or one without an
	// address (see Reconcile).
	ErrMismatch = errors.New("selfservice: canonical email is not the canonical form of the email")
)

// domainProfile maps an internationalised domain to its ASCII form the way a
// resolver would (UTS #46), and refuses anything that is not a host name.
var domainProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// Canonical checks s against the address rules and returns it twice: email,
// trimmed and NFC-normalised but in the case the user typed, for display and
// mail; and canonical, the one form used for uniqueness, code binding and
// lookup. The rules:
//
//   - surrounding white space is trimmed; the rest must be a bare addr-spec,
//     local@domain, with no display name, comment, quoting, white space,
//     control, format (invisible, bidirectional), default-ignorable or
//     compatibility character anywhere, and no non-ASCII letter whose lower
//     case is ASCII (İ);
//   - at most 254 bytes, a local part of at most 64: a dot-atom of letters,
//     digits, marks and RFC 5322 atext symbols;
//   - a domain of at least two LDH labels separated by the ASCII full stop
//     only, internationalised names allowed, with an alphabetic top-level
//     label, that UTS #46 maps to nothing but its own lower case;
//   - canonical is the local part lower-cased (Unicode simple case mapping,
//     so ß stays ß and never meets ss) and the domain in lower-case ASCII
//     (IDNA), so bücher.example and xn--bcher-kva.example are one address.
//
// A broken rule yields one of ErrSyntax, ErrLength, ErrCharacter and
// ErrDomain.
func Canonical(s string) (email, canonical string, err error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 4*MaxLen || !utf8.ValidString(s) {
		return "", "", ErrSyntax
	}
	// Most addresses are ASCII, which is its own NFC and NFKC form: they
	// skip the normalisation, and a domain of plain LDH labels skips
	// UTS #46, which maps it to its lower case.
	ascii := isASCII(s)
	if !ascii {
		s = norm.NFC.String(s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", ErrSyntax
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalLen {
		return "", "", ErrLength
	}
	if err := checkLocalPart(local, ascii); err != nil {
		return "", "", err
	}
	if ascii && isPlainHostName(domain) {
		if err := checkTLD(domain); err != nil {
			return "", "", err
		}
		canonical = strings.ToLower(s)
	} else {
		asciiDomain, err := checkDomain(domain)
		if err != nil {
			return "", "", err
		}
		canonical = norm.NFC.String(strings.ToLower(local)) + "@" + asciiDomain
	}
	if len(s) > MaxLen || len(canonical) > MaxLen {
		return "", "", ErrLength
	}
	return s, canonical, nil
}

// Reconcile checks the two forms of a user's address that a store is handed
// when it is seeded, so that a store never holds an address in a form the
// handlers would not have written:
//
//   - both empty: a user without an address;
//   - email set, canonical empty: canonical is computed;
//   - both set: canonical must be the canonical form of email;
//   - canonical set without email: refused.
//
// It returns the address as Canonical gives it (trimmed, NFC) and its
// canonical form, or an error wrapping ErrMismatch or one of Canonical's
// reasons.
func Reconcile(email, canonical string) (string, string, error) {
	if email == "" {
		if canonical != "" {
			return "", "", ErrMismatch
		}
		return "", "", nil
	}
	e, c, err := Canonical(email)
	if err != nil {
		return "", "", err
	}
	if canonical != "" && canonical != c {
		return "", "", ErrMismatch
	}
	return e, c, nil
}

// atextSymbols are the non-alphanumeric ASCII characters RFC 5322 allows in
// an atom.
const atextSymbols = "!#$%&'*+-/=?^_`{|}~"

// checkLocalPart checks the local part of an address; ascii tells that the
// address is ASCII.
func checkLocalPart(local string, ascii bool) error {
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return ErrSyntax
	}
	// A compatibility character (fullwidth letters, ligatures, superscripts)
	// looks like another address it is not; refuse rather than fold.
	if !ascii && !norm.NFKC.IsNormalString(local) {
		return ErrCharacter
	}
	for _, r := range local {
		switch {
		case r < utf8.RuneSelf:
			if !isASCIIAlnum(byte(r)) && r != '.' && !strings.ContainsRune(atextSymbols, r) {
				if r <= ' ' || r == 0x7f {
					return ErrCharacter
				}
				return ErrSyntax
			}
		case unicode.ToLower(r) < utf8.RuneSelf:
			// İ (U+0130) lower-cases to ASCII i: a mailbox İx@ would
			// prove an unrelated ASCII address ix@.
			return ErrCharacter
		case isIgnorable(r):
			// Some of them are letters (U+115F HANGUL CHOSEONG FILLER) or
			// marks (U+034F COMBINING GRAPHEME JOINER, U+FE0F): they
			// render as nothing, so admin<U+034F>@ would pass for admin@.
			return ErrCharacter
		case unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r):
		default:
			return ErrCharacter
		}
	}
	return nil
}

// isIgnorable reports whether r is a Default_Ignorable_Code_Point (Unicode
// DerivedCoreProperties: Other_Default_Ignorable_Code_Point, format
// characters and variation selectors, less a few white space and visible
// format characters, which are refused anyway).
func isIgnorable(r rune) bool {
	return unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Cf)
}

// isLabelSeparator reports whether r is one of the full stops that UTS #46
// reads as the ASCII one: a mail server that does not would deliver to
// another domain than the one the code is bound to.
func isLabelSeparator(r rune) bool {
	return r == '\u3002' || r == '\uff0e' || r == '\uff61'
}

func checkDomain(domain string) (string, error) {
	// UTS #46 would fold fullwidth letters, circled letters and the like
	// into another domain; refuse them, as in the local part.
	if !norm.NFKC.IsNormalString(domain) {
		return "", ErrCharacter
	}
	for _, r := range domain {
		// UTS #46 would silently drop the ignorable characters and read
		// the other full stops as dots; refuse them instead.
		if unicode.IsControl(r) || unicode.IsSpace(r) || isIgnorable(r) || isLabelSeparator(r) {
			return "", ErrCharacter
		}
	}
	lookup, err := domainProfile.ToASCII(domain)
	if err != nil {
		return "", ErrDomain
	}
	lookup = strings.ToLower(lookup)
	if !isASCII(domain) && !sameLabels(lookup, strings.ToLower(domain)) {
		return "", ErrCharacter
	}
	if err := checkTLD(lookup); err != nil {
		return "", err
	}
	return lookup, nil
}

// checkTLD requires at least two labels and an alphabetic top-level label
// (or an internationalised one) of lookup, a domain in ASCII.
func checkTLD(lookup string) error {
	dot := strings.LastIndexByte(lookup, '.')
	if dot <= 0 || dot == len(lookup)-1 {
		return ErrDomain
	}
	tld := lookup[dot+1:]
	if !hasPrefixFold(tld, "xn--") && strings.IndexFunc(tld, func(r rune) bool { return !isASCIILetter(r) }) >= 0 {
		return ErrDomain
	}
	return nil
}

// isPlainHostName reports whether domain is a host name that UTS #46, with
// domainProfile, maps to its lower case and nothing else: ASCII letters,
// digits and hyphens in labels of 1 to 63 bytes separated by full stops, at
// most 253 bytes, no label that starts or ends with a hyphen or has two in
// its third and fourth places (such as the xn-- of internationalised
// labels, which need decoding). Any other domain takes the full path, which
// decides.
func isPlainHostName(domain string) bool {
	if len(domain) > 253 {
		return false
	}
	for label := range strings.SplitSeq(domain, ".") {
		n := len(label)
		if n == 0 || n > 63 || label[0] == '-' || label[n-1] == '-' || (n >= 4 && label[2] == '-' && label[3] == '-') {
			return false
		}
		for i := 0; i < n; i++ {
			if c := label[i]; !isASCIIAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isASCIILetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

// sameLabels reports whether lookup, the ASCII form a resolver looks up, is
// typed, lower-cased, label by label: an ASCII label as it is, any other in
// its Unicode form. UTS #46 may map a character to another (ẞ to ss) or drop
// it; then the domain mailed is not the one the code is bound to.
func sameLabels(lookup, typed string) bool {
	for lookup != "" || typed != "" {
		var l, t string
		l, lookup, _ = strings.Cut(lookup, ".")
		t, typed, _ = strings.Cut(typed, ".")
		if isASCII(t) {
			if l != t {
				return false
			}
			continue
		}
		u, err := domainProfile.ToUnicode(l)
		if err != nil || u != t {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
