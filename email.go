package selfservice

import (
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/emailaddr"
)

// Address limits from RFC 5321 section 4.5.3.1, in bytes.
const (
	MaxEmailLen     = emailaddr.MaxLen
	MaxLocalPartLen = emailaddr.MaxLocalLen
)

// CanonicalEmail checks s against the address rules and returns it twice:
// email, trimmed and NFC-normalised but in the case the user typed, for
// display and mail; and canonical, the one form used for uniqueness, code
// binding and lookup. The rules:
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
// A broken rule yields an error wrapping i18n.CodeEmailInvalid whose text
// names the rule, for logs; clients only see IDAAS.SDK.USER.0021.
func CanonicalEmail(s string) (email, canonical string, err error) {
	email, canonical, err = emailaddr.Canonical(s)
	if err != nil {
		return "", "", i18n.Wrap(i18n.CodeEmailInvalid, err)
	}
	return email, canonical, nil
}
