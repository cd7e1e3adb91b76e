package idtoken

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzIDTokenClaims feeds payloads to the strict decoder the parser uses
// (json.Unmarshal into the jwt.Claims holding an *idToken, as golang-jwt
// does) and checks it against a plain reading of the same JSON: a payload
// with a date that is not a JSON number in range, an access-token claim or
// a typ other than an id_token's never decodes, and one that decodes has
// exactly the dates it says.
func FuzzIDTokenClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://id.example.com","sub":"u","aud":"app-1","exp":1999999999,"iat":1999999000}`,
		`{"exp":"1999999999"}`, `{"iat":"123"}`, `{"nbf":"1e9"}`, `{"auth_time":"1"}`,
		`{"exp":1.5}`, `{"exp":-1}`, `{"exp":1e300}`, `{"exp":null}`, `{"exp":true}`, `{"exp":[1]}`,
		`{"client_id":"other"}`, `{"scp":["openid"]}`, `{"scope":"openid"}`, `{"client_id":null}`,
		`{"typ":"at+jwt"}`, `{"typ":"JWT"}`, `{"typ":"ID"}`, `{"typ":1}`,
		`{"EXP":"1"}`, `{"Client_Id":"x"}`, "{\"\u017fcp\":[]}", `{"exp":1,"exp":"1"}`,
		`{"aud":["a",1]}`, `{"amr":["pwd",1]}`, `{"sub":42}`, `[]`, `null`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		t.Parallel()
		tok := new(idToken)
		var claims jwt.Claims = tok
		err := json.Unmarshal(payload, &claims)

		var fields map[string]json.RawMessage
		if json.Unmarshal(payload, &fields) != nil || fields == nil {
			if err == nil && len(fields) != 0 {
				t.Fatalf("%s decoded, but is no JSON object", payload)
			}
			return
		}
		dates := map[string]*numericDate{"exp": tok.ExpiresAt, "iat": tok.IssuedAt, "nbf": tok.NotBefore, "auth_time": tok.AuthTime}
		for key, value := range fields {
			for name, decoded := range dates {
				if !strings.EqualFold(key, name) || string(value) == "null" {
					continue
				}
				secs, ok := plainDate(value)
				if !ok {
					if err == nil {
						t.Fatalf("%s decoded with %s = %s", payload, key, value)
					}
					if !errors.Is(err, ErrTokenNumericDate) && !isDecodeError(err) {
						t.Fatalf("%s: error %v, want ErrTokenNumericDate", payload, err)
					}
				}
				// With one key per name, a decoded date is the one given.
				if err == nil && ok && countFold(fields, name) == 1 && decoded != nil {
					if got := float64(decoded.Unix()) + float64(decoded.Nanosecond())/1e9; got < secs-1 || got > secs+1 {
						t.Fatalf("%s: %s decoded as %v, want %v", payload, key, got, secs)
					}
				}
			}
			for _, marker := range []string{"client_id", "scope", "scp"} {
				if strings.EqualFold(key, marker) && err == nil {
					t.Fatalf("%s decoded with the access-token claim %s", payload, key)
				}
			}
			if strings.EqualFold(key, "typ") && err == nil {
				var s string
				if json.Unmarshal(value, &s) != nil || !(strings.EqualFold(s, "JWT") || strings.EqualFold(s, "ID")) {
					t.Fatalf("%s decoded with typ %s", payload, value)
				}
			}
		}
		if err == nil {
			c := tok.verified()
			if c.Subject != tok.Subject || c.Issuer != tok.Issuer {
				t.Fatalf("verified claims %+v differ from the token", c)
			}
		}
	})
}

// plainDate reads a NumericDate the way RFC 7519 defines it: a JSON number,
// here of seconds from 1970 to 9999.
func plainDate(raw json.RawMessage) (float64, bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && f >= 0 && f <= maxNumericDate
}

// isDecodeError reports whether err is the decoder's own (a type mismatch
// elsewhere in the payload, found before the date).
func isDecodeError(err error) bool {
	var typeErr *json.UnmarshalTypeError
	return errors.As(err, &typeErr) || errors.Is(err, ErrTokenAccessToken) || errors.Is(err, ErrTokenType) ||
		errors.Is(err, jwt.ErrInvalidType)
}

func countFold(fields map[string]json.RawMessage, name string) int {
	n := 0
	for key := range fields {
		if strings.EqualFold(key, name) {
			n++
		}
	}
	return n
}
