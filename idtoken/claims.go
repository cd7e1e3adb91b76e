package idtoken

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// reason is the type of the sentinel errors that name why a token is
// refused: constants, so that no importer can reassign them.
type reason string

func (r reason) Error() string { return string(r) }

// Is makes ErrTokenAuthorizedParty an ErrTokenAudience too.
func (r reason) Is(target error) bool {
	return r == ErrTokenAuthorizedParty && target == ErrTokenAudience
}

// Reasons a token is refused, wrapped in the i18n.CodeTokenInvalid that
// VerifyToken returns so that logs can tell them apart; clients see only
// IDAAS.SDK.PARAM.0016. Failures golang-jwt detects keep its own sentinels
// (jwt.ErrTokenExpired, jwt.ErrTokenInvalidIssuer, jwt.ErrTokenMalformed,
// jwt.ErrTokenSignatureInvalid, ...), and an unknown kid wraps
// jwkset.ErrKeyNotFound.
const (
	ErrTokenTooLarge   reason = "idtoken: token larger than MaxTokenBytes"
	ErrTokenAudience   reason = "idtoken: token audience is not this client"
	ErrTokenNoSubject  reason = "idtoken: token has no sub"
	ErrTokenNoIssuedAt reason = "idtoken: token has no iat"
	ErrTokenType       reason = "idtoken: token typ is not an id_token"
	ErrTokenCrit       reason = "idtoken: token has critical header extensions"

	// ErrTokenAuthorizedParty: azp names another client, or the token has
	// several audiences and no azp. It is an ErrTokenAudience too.
	ErrTokenAuthorizedParty reason = "idtoken: token audience is not this client: azp is not this client"
	// ErrTokenAccessToken: the token carries a claim of an access token
	// (client_id, scope, scp; RFC 9068 section 2.2) and is refused even
	// when signature, issuer and audience are right: providers sign both
	// kinds with the same keys.
	ErrTokenAccessToken reason = "idtoken: token carries access-token claims (client_id, scope or scp)"
	// ErrTokenNumericDate: exp, iat, nbf or auth_time is not a JSON
	// number of seconds between 1970 and 9999 (RFC 7519 NumericDate); a
	// numeric string is refused.
	ErrTokenNumericDate reason = "idtoken: token exp, iat, nbf or auth_time is not a NumericDate"
	// ErrTokenSubject: sub is longer than 255 characters or holds anything
	// but printable ASCII (OpenID Connect Core section 2).
	ErrTokenSubject reason = "idtoken: token sub is not up to 255 printable ASCII characters"
	// ErrTokenNoKID: the header names no key (kid missing, empty or not a
	// string); see Options.Keyfunc.
	ErrTokenNoKID reason = "idtoken: token has no kid"
)

// maxSubjectLen is OpenID Connect Core section 2's bound on sub.
const maxSubjectLen = 255

// maxNumericDate is 9999-12-31T23:59:59Z: a date past it is no date a
// token can mean, and would overflow time.Time arithmetic.
const maxNumericDate = 253402300799

// Claims are the id_token claims the package reads. Sub is the user id.
// Verify fills them from a payload it decodes strictly (see Verifier); they
// are shared by every request derived from the one they were verified for:
// read them, do not modify them.
type Claims struct {
	jwt.RegisteredClaims
	AuthorizedParty string           `json:"azp,omitempty"`
	AuthTime        *jwt.NumericDate `json:"auth_time,omitempty"`
	Nonce           string           `json:"nonce,omitempty"`
	// ACR and AMR are the authentication context class and methods
	// (OpenID Connect Core section 2); the package does not judge them.
	ACR string   `json:"acr,omitempty"`
	AMR []string `json:"amr,omitempty"`
}

// idToken is what the parser decodes a payload into: every claim Claims
// holds, with strict types, and the claims that mark an access token,
// whose mere presence fails the decoding. Refusals here come before any key
// is looked up. Once the token is verified it turns into the Claims it
// carries, so that one allocation holds both.
type idToken struct {
	claims Claims

	Issuer          string           `json:"iss"`
	Subject         string           `json:"sub"`
	Audience        jwt.ClaimStrings `json:"aud"`
	ExpiresAt       *numericDate     `json:"exp"`
	NotBefore       *numericDate     `json:"nbf"`
	IssuedAt        *numericDate     `json:"iat"`
	ID              string           `json:"jti"`
	AuthorizedParty string           `json:"azp"`
	AuthTime        *numericDate     `json:"auth_time"`
	Nonce           string           `json:"nonce"`
	ACR             string           `json:"acr"`
	AMR             []string         `json:"amr"`

	Type     typClaim         `json:"typ"`
	ClientID accessTokenClaim `json:"client_id"`
	Scope    accessTokenClaim `json:"scope"`
	SCP      accessTokenClaim `json:"scp"`
}

var _ jwt.Claims = (*idToken)(nil)

func (t *idToken) GetExpirationTime() (*jwt.NumericDate, error) {
	return (*jwt.NumericDate)(t.ExpiresAt), nil
}
func (t *idToken) GetIssuedAt() (*jwt.NumericDate, error) { return (*jwt.NumericDate)(t.IssuedAt), nil }
func (t *idToken) GetNotBefore() (*jwt.NumericDate, error) {
	return (*jwt.NumericDate)(t.NotBefore), nil
}
func (t *idToken) GetIssuer() (string, error)             { return t.Issuer, nil }
func (t *idToken) GetSubject() (string, error)            { return t.Subject, nil }
func (t *idToken) GetAudience() (jwt.ClaimStrings, error) { return t.Audience, nil }

// verified returns the Claims of t, which passed the parser's checks.
func (t *idToken) verified() *Claims {
	t.claims = Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.Issuer,
			Subject:   t.Subject,
			Audience:  t.Audience,
			ExpiresAt: (*jwt.NumericDate)(t.ExpiresAt),
			NotBefore: (*jwt.NumericDate)(t.NotBefore),
			IssuedAt:  (*jwt.NumericDate)(t.IssuedAt),
			ID:        t.ID,
		},
		AuthorizedParty: t.AuthorizedParty,
		AuthTime:        (*jwt.NumericDate)(t.AuthTime),
		Nonce:           t.Nonce,
		ACR:             t.ACR,
		AMR:             t.AMR,
	}
	return &t.claims
}

// numericDate is a jwt.NumericDate that only a JSON number fills: golang-jwt
// reads its dates through json.Number, which also takes "123" in quotes.
// A JSON null leaves the pointer to it nil, as an absent claim.
type numericDate jwt.NumericDate

func (d *numericDate) UnmarshalJSON(b []byte) error {
	// The decoder hands over one whole JSON value: one that starts like a
	// number is a number.
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return ErrTokenNumericDate
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > maxNumericDate {
		return ErrTokenNumericDate
	}
	// As jwt.NumericDate reads it: whole seconds and a fraction.
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).Truncate(jwt.TimePrecision)
	return nil
}

// typClaim accepts the typ claims id_tokens carry, JWT and ID (Keycloak),
// and refuses any other, such as an access token's.
type typClaim struct{}

func (*typClaim) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil || !(strings.EqualFold(s, "JWT") || strings.EqualFold(s, "ID")) {
		return fmt.Errorf("%w (typ claim)", ErrTokenType)
	}
	return nil
}

// accessTokenClaim refuses the token whatever its value, null included.
type accessTokenClaim struct{}

func (*accessTokenClaim) UnmarshalJSON([]byte) error { return ErrTokenAccessToken }

// checkHeader refuses what RFC 8725 warns about before any key is fetched:
// extensions we would have to understand (crit), tokens typed as something
// other than an id_token, such as an access token (RFC 9068), and tokens
// that name no key.
func checkHeader(h map[string]any) error {
	if _, ok := h["crit"]; ok {
		return ErrTokenCrit
	}
	if typ, ok := h["typ"]; ok {
		s, _ := typ.(string)
		if !strings.EqualFold(s, "JWT") {
			return ErrTokenType
		}
	}
	if kid, _ := h["kid"].(string); kid == "" {
		return ErrTokenNoKID
	}
	return nil
}

// checkIDToken runs the checks of OpenID Connect Core that do not depend on
// the request and that golang-jwt does not: sub and iat are required, and
// sub is at most 255 ASCII characters.
func checkIDToken(c *Claims) error {
	if c.Subject == "" {
		return ErrTokenNoSubject
	}
	if len(c.Subject) > maxSubjectLen || strings.ContainsFunc(c.Subject, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return ErrTokenSubject
	}
	if c.IssuedAt == nil {
		return ErrTokenNoIssuedAt
	}
	return nil
}

// checkAudience runs the checks that depend on the request's client: it
// must be an audience (OpenID Connect Core 3.1.3.7 step 3) and, with several
// audiences or an azp at all, the authorized party (steps 4 and 5).
func checkAudience(c *Claims, clientID string) error {
	if clientID == "" || !slices.Contains(c.Audience, clientID) {
		return ErrTokenAudience
	}
	if (len(c.Audience) > 1 || c.AuthorizedParty != "") && c.AuthorizedParty != clientID {
		return ErrTokenAuthorizedParty
	}
	return nil
}
