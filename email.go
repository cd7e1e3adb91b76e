package selfservice

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/ciamkit/selfservice/i18n"
)

// Address limits from RFC 5321 section 4.5.3.1, in bytes.
const (
	MaxEmailLen     = 254
	MaxLocalPartLen = 64
)

// Why an address breaks the rules; CanonicalEmail wraps one of them in
// i18n.ErrEmailInvalid for logs, clients only see IDAAS.SDK.USER.0021.
var (
	ErrEmailSyntax    = errors.New("selfservice: email is not a plain addr-spec")
	ErrEmailLength    = errors.New("selfservice: email or its local part is too long")
	ErrEmailCharacter = errors.New("selfservice: email holds a control, invisible, space or compatibility character")
	ErrEmailDomain    = errors.New("selfservice: email domain is not a valid host name")
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

// CanonicalEmail checks s against the address rules and returns it twice:
// email, trimmed and NFC-normalised but in the case the user typed, for
// display and mail; and canonical, the one form used for uniqueness, code
// binding and lookup. The rules:
//
//   - surrounding white space is trimmed; the rest must be a bare addr-spec,
//     local@domain, with no display name, comment, quoting, white space,
//     control, format (invisible, bidirectional) or compatibility character
//     anywhere, and no non-ASCII letter whose lower case is ASCII (İ);
//   - at most 254 bytes, a local part of at most 64: a dot-atom of letters,
//     digits, marks and RFC 5322 atext symbols;
//   - a domain of at least two LDH labels, internationalised names allowed,
//     with an alphabetic top-level label;
//   - canonical is the local part lower-cased (Unicode simple case mapping,
//     so ß stays ß and never meets ss) and the domain in lower-case ASCII
//     (IDNA), so bücher.example and xn--bcher-kva.example are one address.
//
// A broken rule yields an error wrapping i18n.ErrEmailInvalid.
func CanonicalEmail(s string) (email, canonical string, err error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 4*MaxEmailLen || !utf8.ValidString(s) {
		return "", "", invalidEmail(ErrEmailSyntax)
	}
	s = norm.NFC.String(s)
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", invalidEmail(ErrEmailSyntax)
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalPartLen {
		return "", "", invalidEmail(ErrEmailLength)
	}
	if err := checkLocalPart(local); err != nil {
		return "", "", invalidEmail(err)
	}
	asciiDomain, err := checkDomain(domain)
	if err != nil {
		return "", "", invalidEmail(err)
	}
	canonical = norm.NFC.String(strings.ToLower(local)) + "@" + asciiDomain
	if len(s) > MaxEmailLen || len(canonical) > MaxEmailLen {
		return "", "", invalidEmail(ErrEmailLength)
	}
	return s, canonical, nil
}

func invalidEmail(reason error) error { return i18n.ErrEmailInvalid.WithCause(reason) }

// atextSymbols are the non-alphanumeric ASCII characters RFC 5322 allows in
// an atom.
const atextSymbols = "!#$%&'*+-/=?^_`{|}~"

func checkLocalPart(local string) error {
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return ErrEmailSyntax
	}
	// A compatibility character (fullwidth letters, ligatures, superscripts)
	// looks like another address it is not; refuse rather than fold.
	if !norm.NFKC.IsNormalString(local) {
		return ErrEmailCharacter
	}
	for _, r := range local {
		switch {
		case r < utf8.RuneSelf:
			if !isASCIIAlnum(byte(r)) && r != '.' && !strings.ContainsRune(atextSymbols, r) {
				if r <= ' ' || r == 0x7f {
					return ErrEmailCharacter
				}
				return ErrEmailSyntax
			}
		case unicode.ToLower(r) < utf8.RuneSelf:
			// İ (U+0130) lower-cases to ASCII i: a mailbox İx@ would
			// prove an unrelated ASCII address ix@.
			return ErrEmailCharacter
		case unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r):
		default:
			return ErrEmailCharacter
		}
	}
	return nil
}

func checkDomain(domain string) (string, error) {
	// UTS #46 would fold fullwidth letters, circled letters and the like
	// into another domain; refuse them, as in the local part.
	if !norm.NFKC.IsNormalString(domain) {
		return "", ErrEmailCharacter
	}
	for _, r := range domain {
		// UTS #46 mapping would silently drop some invisible characters;
		// they are refused here instead, like in the local part.
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			return "", ErrEmailCharacter
		}
	}
	ascii, err := domainProfile.ToASCII(domain)
	if err != nil {
		return "", ErrEmailDomain
	}
	ascii = strings.ToLower(ascii)
	dot := strings.LastIndexByte(ascii, '.')
	if dot <= 0 || dot == len(ascii)-1 {
		return "", ErrEmailDomain
	}
	tld := ascii[dot+1:]
	if !strings.HasPrefix(tld, "xn--") && strings.IndexFunc(tld, func(r rune) bool { return r < 'a' || r > 'z' }) >= 0 {
		return "", ErrEmailDomain
	}
	return ascii, nil
}

func isASCIIAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
