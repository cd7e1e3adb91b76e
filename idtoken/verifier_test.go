package idtoken_test

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

func TestVerifier(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	v := newVerifier(t, func(o *idtoken.Options) { o.JWKSURL = srv.URL })

	pubDER, err := x509.MarshalPKIXPublicKey(&k.rs.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	header := func(key string, value any) func(map[string]any) {
		return func(h map[string]any) { h[key] = value }
	}
	dropHeader := func(key string) func(map[string]any) {
		return func(h map[string]any) { delete(h, key) }
	}
	ago := func(d time.Duration) int64 { return testNow.Add(-d).Unix() }
	in := func(d time.Duration) int64 { return testNow.Add(d).Unix() }

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		cause   error // for a refused token, when the reason has a sentinel
		ok      bool
		subject string // of an accepted token; "": testUser
	}{
		{name: "RS256", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims()) }},
		{name: "ES256", ok: true, token: func(t *testing.T) string { return es256(k).sign(t, claims()) }},
		{name: "EdDSA", ok: true, token: func(t *testing.T) string { return eddsa(k).sign(t, claims()) }},
		{name: "PS256", ok: true, token: func(t *testing.T) string { return ps256(k).sign(t, claims()) }},
		{name: "no typ header", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(), dropHeader("typ")) }},
		{name: "typ in lower case", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(), header("typ", "jwt")) }},
		{name: "no nbf", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(dropClaim("nbf"))) }},
		{name: "expired within leeway", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", ago(10*time.Second))))
		}},
		{name: "nbf in the future within leeway", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("nbf", in(10*time.Second))))
		}},
		{name: "iat in the future within leeway", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iat", in(10*time.Second))))
		}},
		{name: "audience list of one", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("aud", []string{testClient})))
		}},
		{name: "audience list with azp of this client", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("aud", []string{testClient, "other-app"}), setClaim("azp", testClient)))
		}},
		{name: "single audience with azp of this client", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("azp", testClient)))
		}},
		{name: "typ claim JWT", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(setClaim("typ", "JWT"))) }},
		{name: "typ claim ID (Keycloak)", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(setClaim("typ", "ID"))) }},
		{name: "sub of 255 printable ASCII characters", ok: true, subject: " " + strings.Repeat("~", 254), token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", " "+strings.Repeat("~", 254))))
		}},
		{name: "fractional dates", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", float64(in(time.Minute))+0.5), setClaim("iat", float64(ago(time.Minute))+0.25)))
		}},
		{name: "dates in exponent form", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", json.Number(strconv.FormatFloat(float64(in(time.Minute)), 'e', -1, 64)))))
		}},
		{name: "null nbf is no nbf", ok: true, token: func(t *testing.T) string { return rs256(k).sign(t, claims(setClaim("nbf", nil))) }},
		{name: "auth_time, acr and amr", ok: true, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("auth_time", ago(time.Hour)), setClaim("acr", "1"), setClaim("amr", []string{"pwd", "otp"})))
		}},

		{name: "expired", cause: jwt.ErrTokenExpired, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", ago(2*time.Minute))))
		}},
		{name: "nbf in the future beyond leeway", cause: jwt.ErrTokenNotValidYet, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("nbf", in(2*time.Minute))))
		}},
		{name: "iat in the future beyond leeway", cause: jwt.ErrTokenUsedBeforeIssued, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iat", in(2*time.Minute))))
		}},
		{name: "exp not a number", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", "tomorrow")))
		}},
		{name: "exp a numeric string", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", strconv.FormatInt(in(10*time.Minute), 10))))
		}},
		{name: "iat a numeric string", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iat", strconv.FormatInt(ago(time.Minute), 10))))
		}},
		{name: "nbf a numeric string", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("nbf", strconv.FormatInt(ago(time.Minute), 10))))
		}},
		{name: "auth_time a numeric string", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("auth_time", strconv.FormatInt(ago(time.Minute), 10))))
		}},
		{name: "exp a boolean", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", true)))
		}},
		{name: "exp an array", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", []int64{in(time.Minute)})))
		}},
		{name: "exp negative", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", -1)))
		}},
		{name: "exp past the year 9999", cause: idtoken.ErrTokenNumericDate, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", 1e300)))
		}},
		{name: "exp null", cause: jwt.ErrTokenRequiredClaimMissing, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("exp", nil)))
		}},
		{name: "iat null", cause: idtoken.ErrTokenNoIssuedAt, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iat", nil)))
		}},
		{name: "client_id claim (RFC 9068 access token)", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("client_id", "other-app")))
		}},
		{name: "client_id claim of this client", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("client_id", testClient)))
		}},
		{name: "client_id claim null", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("client_id", nil)))
		}},
		{name: "scope claim", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("scope", "openid email")))
		}},
		{name: "scp claim", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("scp", []string{"openid"})))
		}},
		{name: "scp claim empty", cause: idtoken.ErrTokenAccessToken, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("scp", []string{})))
		}},
		{name: "typ claim at+jwt", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("typ", "at+jwt")))
		}},
		{name: "typ claim Bearer (Keycloak access token)", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("typ", "Bearer")))
		}},
		{name: "typ claim not a string", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("typ", 1)))
		}},
		{name: "sub of 256 characters", cause: idtoken.ErrTokenSubject, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", strings.Repeat("u", 256))))
		}},
		{name: "sub not ASCII", cause: idtoken.ErrTokenSubject, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", "usér-42")))
		}},
		{name: "sub with a control character", cause: idtoken.ErrTokenSubject, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", "user-42\n")))
		}},
		{name: "sub not a string", cause: jwt.ErrTokenMalformed, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", 42)))
		}},
		{name: "amr not a list of strings", cause: jwt.ErrTokenMalformed, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("amr", []any{"pwd", 1})))
		}},
		{name: "missing iat", cause: idtoken.ErrTokenNoIssuedAt, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(dropClaim("iat")))
		}},
		{name: "missing exp", cause: jwt.ErrTokenRequiredClaimMissing, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(dropClaim("exp")))
		}},
		{name: "wrong issuer", cause: jwt.ErrTokenInvalidIssuer, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iss", "https://evil.example.com")))
		}},
		{name: "issuer with a trailing slash", cause: jwt.ErrTokenInvalidIssuer, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("iss", testIssuer+"/")))
		}},
		{name: "missing issuer", token: func(t *testing.T) string { return rs256(k).sign(t, claims(dropClaim("iss"))) }},
		{name: "wrong audience", cause: idtoken.ErrTokenAudience, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("aud", "other-app")))
		}},
		{name: "missing audience", cause: idtoken.ErrTokenAudience, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(dropClaim("aud")))
		}},
		{name: "audience list without azp", cause: idtoken.ErrTokenAuthorizedParty, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("aud", []string{testClient, "other-app"})))
		}},
		{name: "audience list with azp of another client", cause: idtoken.ErrTokenAuthorizedParty, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("aud", []string{testClient, "other-app"}), setClaim("azp", "other-app")))
		}},
		{name: "single audience with azp of another client", cause: idtoken.ErrTokenAuthorizedParty, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("azp", "other-app")))
		}},
		{name: "missing sub", cause: idtoken.ErrTokenNoSubject, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(dropClaim("sub")))
		}},
		{name: "empty sub", cause: idtoken.ErrTokenNoSubject, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("sub", "")))
		}},
		{name: "alg none", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rs-1"}.sign(t, claims())
		}},
		{name: "HS256 keyed with the RSA public key PEM", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodHS256, pubPEM, "rs-1"}.sign(t, claims())
		}},
		{name: "HS256 keyed with the RSA public key DER", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodHS256, pubDER, "rs-1"}.sign(t, claims())
		}},
		{name: "RS384, not in the allow-list", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodRS384, k.rs, "rs-1"}.sign(t, claims())
		}},
		{name: "unknown kid", cause: jwkset.ErrKeyNotFound, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodRS256, k.rs, "no-such-kid"}.sign(t, claims())
		}},
		{name: "missing kid", cause: idtoken.ErrTokenNoKID, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodRS256, k.rs, ""}.sign(t, claims())
		}},
		{name: "empty kid", cause: idtoken.ErrTokenNoKID, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("kid", ""))
		}},
		{name: "kid not a string", cause: idtoken.ErrTokenNoKID, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("kid", 1))
		}},
		{name: "tampered payload", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return tamper(t, rs256(k).sign(t, claims()), setClaim("sub", "admin"))
		}},
		{name: "tampered payload, EdDSA", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return tamper(t, eddsa(k).sign(t, claims()), setClaim("aud", "other-app"))
		}},
		{name: "signature of another key under the same kid", cause: jwt.ErrTokenSignatureInvalid, token: func(t *testing.T) string {
			return signer{jwt.SigningMethodRS256, k.other, "rs-1"}.sign(t, claims())
		}},
		{name: "signature of another token", token: func(t *testing.T) string {
			a := strings.Split(rs256(k).sign(t, claims()), ".")
			b := strings.Split(rs256(k).sign(t, claims(setClaim("sub", "admin"))), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}},
		{name: "PS256 under a key published for RS256", token: func(t *testing.T) string {
			return signer{jwt.SigningMethodPS256, k.rs, "rs-1"}.sign(t, claims())
		}},
		{name: "ES256 under the kid of an RSA key", token: func(t *testing.T) string {
			return signer{jwt.SigningMethodES256, k.es, "rs-1"}.sign(t, claims())
		}},
		{name: "key published for encryption", token: func(t *testing.T) string {
			return signer{jwt.SigningMethodES256, k.enc, "enc-1"}.sign(t, claims())
		}},
		{name: "typ at+jwt", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("typ", "at+jwt"))
		}},
		{name: "typ application/at+jwt", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("typ", "application/at+jwt"))
		}},
		{name: "typ not a string", cause: idtoken.ErrTokenType, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("typ", 7))
		}},
		{name: "crit header", cause: idtoken.ErrTokenCrit, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(), header("crit", []string{"exp"}))
		}},
		{name: "larger than MaxTokenBytes", cause: idtoken.ErrTokenTooLarge, token: func(t *testing.T) string {
			return rs256(k).sign(t, claims(setClaim("nonce", strings.Repeat("n", 8<<10))))
		}},
		{name: "garbage a.b.c", cause: jwt.ErrTokenMalformed, token: func(*testing.T) string { return "a.b.c" }},
		{name: "garbage ....", cause: jwt.ErrTokenMalformed, token: func(*testing.T) string { return "...." }},
		{name: "empty", cause: jwt.ErrTokenMalformed, token: func(*testing.T) string { return "" }},
		{name: "two parts", cause: jwt.ErrTokenMalformed, token: func(*testing.T) string { return "eyJhbGciOiJSUzI1NiJ9.e30" }},
		{name: "five parts (JWE)", cause: jwt.ErrTokenMalformed, token: func(*testing.T) string { return "a.b.c.d.e" }},
		{name: "empty JSON objects", token: func(*testing.T) string { return "e30.e30.e30" }},
		{name: "header without alg", token: func(*testing.T) string {
			enc := base64.RawURLEncoding.EncodeToString
			return enc([]byte(`{"kid":"rs-1"}`)) + "." + enc([]byte(`{"sub":"x"}`)) + ".c2ln"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := tt.token(t)
			subject := cmp.Or(tt.subject, testUser)

			got, err := v.Verify(context.Background(), raw, testClient)
			switch {
			case tt.ok && err != nil:
				t.Fatalf("Verify: %v", err)
			case tt.ok && (got == nil || got.Subject != subject):
				t.Fatalf("Verify claims = %+v, want subject %q", got, subject)
			case !tt.ok && err == nil:
				t.Fatalf("Verify accepted the token: %+v", got)
			case !tt.ok && !errors.Is(err, i18n.CodeTokenInvalid):
				t.Errorf("Verify error %v is not ErrTokenInvalid", err)
			case !tt.ok && tt.cause != nil && !errors.Is(err, tt.cause):
				t.Errorf("Verify error %v does not wrap %v", err, tt.cause)
			}

			next := &handlertest.Recorder{}
			w := handlertest.Serve(middleware.RequireBearer(v)(next), bearerRequest(raw))
			if !tt.ok {
				if raw == "" {
					handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty)
				} else {
					handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)
				}
				return
			}
			handlertest.AssertPassed(t, w, next)
			if c := claimsOf(next.Context(t)); c == nil || c.Subject != subject {
				t.Errorf("ClaimsFromContext = %+v, want subject %q", c, subject)
			}
		})
	}
}

// staticVerifier verifies against one EdDSA key without any JWKS.
func staticVerifier(t testing.TB, k *testKeys, edit func(*idtoken.Options)) *idtoken.Verifier {
	t.Helper()
	pub := k.ed.Public()
	return newVerifier(t, func(o *idtoken.Options) {
		o.Keyfunc = func(*jwt.Token) (any, error) { return pub, nil }
		if edit != nil {
			edit(o)
		}
	})
}

func TestVerifierClaims(t *testing.T) {
	t.Parallel()
	k := keys(t)
	v := staticVerifier(t, k, nil)
	raw := eddsa(k).sign(t, claims(
		setClaim("azp", testClient),
		setClaim("nonce", "n-0S6_WzA2Mj"),
		setClaim("auth_time", testNow.Add(-time.Hour).Unix()),
		setClaim("jti", "id-1"),
	))
	c, err := v.Verify(context.Background(), raw, testClient)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != testUser || c.Issuer != testIssuer || c.AuthorizedParty != testClient ||
		c.Nonce != "n-0S6_WzA2Mj" || c.ID != "id-1" ||
		c.AuthTime == nil || !c.AuthTime.Equal(testNow.Add(-time.Hour)) ||
		c.ExpiresAt == nil || !c.ExpiresAt.Equal(testNow.Add(10*time.Minute)) {
		t.Errorf("claims = %+v", c)
	}
}

func TestVerifierMaxTokenBytes(t *testing.T) {
	t.Parallel()
	k := keys(t)
	raw := eddsa(k).sign(t, claims(setClaim("nonce", strings.Repeat("n", 1000))))
	tests := []struct {
		name  string
		limit int
		ok    bool
	}{
		{"limit equals the length", len(raw), true},
		{"limit one byte short", len(raw) - 1, false},
		{"default limit", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := staticVerifier(t, k, func(o *idtoken.Options) { o.MaxTokenBytes = tt.limit })
			_, err := v.Verify(context.Background(), raw, testClient)
			if tt.ok && err != nil {
				t.Errorf("Verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, idtoken.ErrTokenTooLarge) {
				t.Errorf("Verify error = %v, want ErrTokenTooLarge", err)
			}
		})
	}
}

func TestVerifierOptions(t *testing.T) {
	t.Parallel()
	k := keys(t)
	tests := []struct {
		name  string
		edit  func(*idtoken.Options)
		token func(t *testing.T) string
		ok    bool
	}{
		{"allow-list RS256 only refuses EdDSA", func(o *idtoken.Options) { o.Algorithms = []string{"RS256"} },
			func(t *testing.T) string { return eddsa(k).sign(t, claims()) }, false},
		{"allow-list EdDSA only accepts EdDSA", func(o *idtoken.Options) { o.Algorithms = []string{"EdDSA"} },
			func(t *testing.T) string { return eddsa(k).sign(t, claims()) }, true},
		{"longer leeway accepts a token expired a minute ago", func(o *idtoken.Options) { o.Leeway = 2 * time.Minute },
			func(t *testing.T) string {
				return eddsa(k).sign(t, claims(setClaim("exp", testNow.Add(-time.Minute).Unix())))
			}, true},
		{"default leeway refuses a token expired a minute ago", func(*idtoken.Options) {},
			func(t *testing.T) string {
				return eddsa(k).sign(t, claims(setClaim("exp", testNow.Add(-time.Minute).Unix())))
			}, false},
		{"the clock is Now", func(o *idtoken.Options) { o.Now = func() time.Time { return testNow.Add(time.Hour) } },
			func(t *testing.T) string { return eddsa(k).sign(t, claims()) }, false},
		{"default clock is the real time", func(o *idtoken.Options) { o.Now = nil },
			func(t *testing.T) string {
				now := time.Now()
				return eddsa(k).sign(t, claims(
					setClaim("iat", now.Unix()), setClaim("nbf", now.Unix()), setClaim("exp", now.Add(time.Minute).Unix())))
			}, true},
		{"default clock refuses a token of the fixed test time", func(o *idtoken.Options) { o.Now = nil },
			func(t *testing.T) string {
				return eddsa(k).sign(t, claims(setClaim("iat", time.Now().Add(-time.Hour).Unix()),
					setClaim("nbf", time.Now().Add(-time.Hour).Unix()), setClaim("exp", time.Now().Add(-time.Hour).Unix())))
			}, false},
		{"Keyfunc error refuses", func(o *idtoken.Options) {
			o.Keyfunc = func(*jwt.Token) (any, error) { return nil, errors.New("no key") }
		}, func(t *testing.T) string { return eddsa(k).sign(t, claims()) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := staticVerifier(t, k, tt.edit)
			_, err := v.Verify(context.Background(), tt.token(t), testClient)
			if tt.ok && err != nil {
				t.Errorf("Verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, i18n.CodeTokenInvalid) {
				t.Errorf("Verify error = %v, want ErrTokenInvalid", err)
			}
		})
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	kf := func(*jwt.Token) (any, error) { return nil, errors.New("unused") }
	tests := []struct {
		name string
		opts idtoken.Options
	}{
		{"empty Issuer", idtoken.Options{Keyfunc: kf}},
		{"blank Issuer", idtoken.Options{Issuer: "  ", Keyfunc: kf}},
		{"neither JWKSURL nor Keyfunc", idtoken.Options{Issuer: testIssuer}},
		{"both JWKSURL and Keyfunc", idtoken.Options{Issuer: testIssuer, Keyfunc: kf, JWKSURL: "http://127.0.0.1:1/keys"}},
		{"HS256 allowed", idtoken.Options{Issuer: testIssuer, Keyfunc: kf, Algorithms: []string{"RS256", "HS256"}}},
		{"HS512 allowed", idtoken.Options{Issuer: testIssuer, Keyfunc: kf, Algorithms: []string{"HS512"}}},
		{"none allowed", idtoken.Options{Issuer: testIssuer, Keyfunc: kf, Algorithms: []string{"none"}}},
		{"JWKSURL not a URL", idtoken.Options{Issuer: testIssuer, JWKSURL: "not a url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := idtoken.New(tt.opts)
			if v != nil {
				v.Close()
			}
			if !errors.Is(err, configerr.Err) {
				t.Errorf("NewVerifier error = %v, want ErrConfig", err)
			}
		})
	}
}

func TestVerifierWithKeyfuncIsReady(t *testing.T) {
	t.Parallel()
	v := staticVerifier(t, keys(t), nil)
	if err := v.Ready(context.Background()); err != nil {
		t.Errorf("Ready = %v, want nil", err)
	}
	v.Close()
	v.Close() // more than once is fine
}

func TestRequireBearerAuthorizationHeader(t *testing.T) {
	t.Parallel()
	k := keys(t)
	v := staticVerifier(t, k, nil)
	good := eddsa(k).sign(t, claims())
	tests := []struct {
		name          string
		authorization []string // nil: no header
		status        int
		code, msg     string
	}{
		{"Bearer", []string{"Bearer " + good}, http.StatusOK, "", ""},
		{"lower-case scheme", []string{"bearer " + good}, http.StatusOK, "", ""},
		{"upper-case scheme", []string{"BEARER " + good}, http.StatusOK, "", ""},
		{"tab after the scheme", []string{"Bearer\t" + good}, http.StatusOK, "", ""},
		{"several spaces and padding", []string{"  Bearer    " + good + "  "}, http.StatusOK, "", ""},
		{"missing", nil, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"empty", []string{""}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"scheme only", []string{"Bearer"}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"scheme and spaces", []string{"Bearer    "}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"Basic", []string{"Basic xxx"}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"Basic with a token", []string{"Basic " + good}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"token without a scheme", []string{good}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"no space after the scheme", []string{"Bearer" + good}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"short", []string{"Bear"}, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty},
		{"garbage token", []string{"Bearer a.b.c"}, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid},
		{"two tokens", []string{"Bearer " + good + " " + good}, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid},
		{"repeated", []string{"Bearer " + good, "Basic xxx"}, http.StatusBadRequest, handlertest.CodeHeaderRepeated, handlertest.MsgHeaderRepeated},
		{"repeated with the same token", []string{"Bearer " + good, "Bearer " + good}, http.StatusBadRequest, handlertest.CodeHeaderRepeated, handlertest.MsgHeaderRepeated},
		{"repeated, the first empty", []string{"", "Bearer " + good}, http.StatusBadRequest, handlertest.CodeHeaderRepeated, handlertest.MsgHeaderRepeated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{"X-Client-Id": {testClient}}
			if tt.authorization != nil {
				h["Authorization"] = tt.authorization
			}
			next := &handlertest.Recorder{}
			w := handlertest.Serve(middleware.RequireBearer(v)(next), handlertest.NewRequest(h))
			if tt.status != http.StatusOK {
				handlertest.AssertError(t, w, next, tt.status, tt.code, tt.msg)
				return
			}
			handlertest.AssertPassed(t, w, next)
			if c := claimsOf(next.Context(t)); c == nil || c.Subject != testUser {
				t.Errorf("ClaimsFromContext = %+v", c)
			}
		})
	}
}

// The audience is the client RequireClientID found when it ran, else the
// X-client-id header.
func TestRequireBearerAudienceSource(t *testing.T) {
	t.Parallel()
	k := keys(t)
	v := staticVerifier(t, k, nil)
	// The registry folds case, so the client it finds ("app-1") differs
	// from the header ("APP-1").
	folding := foldingRegistry{map[string]store.Client{testClient: {ID: testClient}}}
	forApp := eddsa(k).sign(t, claims())
	forUpper := eddsa(k).sign(t, claims(setClaim("aud", "APP-1")))

	standalone := func(next http.Handler) http.Handler { return middleware.RequireBearer(v)(next) }
	chained := func(next http.Handler) http.Handler {
		return middleware.RequireClientID(folding, discard)(middleware.RequireBearer(v)(next))
	}
	tests := []struct {
		name     string
		chain    func(http.Handler) http.Handler
		clientID []string
		token    string
		ok       bool
	}{
		{"standalone, header is the audience", standalone, []string{testClient}, forApp, true},
		{"standalone, padded header", standalone, []string{" " + testClient + " "}, forApp, true},
		{"standalone, header of another client", standalone, []string{"other-app"}, forApp, false},
		{"standalone, no header", standalone, nil, forApp, false},
		{"standalone, blank header", standalone, []string{"  "}, forApp, false},
		{"chained, registry client is the audience", chained, []string{"APP-1"}, forApp, true},
		{"chained, header is not the audience", chained, []string{"APP-1"}, forUpper, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{"Authorization": {"Bearer " + tt.token}}
			if tt.clientID != nil {
				h["X-Client-Id"] = tt.clientID
			}
			next := &handlertest.Recorder{}
			w := handlertest.Serve(tt.chain(next), handlertest.NewRequest(h))
			if !tt.ok {
				handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)
				return
			}
			handlertest.AssertPassed(t, w, next)
		})
	}
}

func TestRequireBearerLocalised(t *testing.T) {
	t.Parallel()
	v := staticVerifier(t, keys(t), nil)
	tests := []struct {
		name, authorization, code, msg string
	}{
		{"empty", "", handlertest.CodeTokenEmpty, handlertest.MsgTokenEmptyZH},
		{"invalid", "Bearer x.y.z", handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalidZH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			h := middleware.Localize(i18n.Default())(middleware.RequireBearer(v)(next))
			r := handlertest.NewRequest(http.Header{"Authorization": {tt.authorization}, "X-L": {"zh"}, "X-Client-Id": {testClient}})
			handlertest.AssertError(t, handlertest.Serve(h, r), next, http.StatusBadRequest, tt.code, tt.msg)
		})
	}
}

func TestRequireBearerPanicsOnNilVerifier(t *testing.T) {
	t.Parallel()
	handlertest.AssertPanics(t, "RequireBearer(nil)", func() { middleware.RequireBearer(nil) })
}

// TestRequireBearerRepeatedClientID: on its own, RequireBearer reads
// X-client-id as the audience and refuses two of them, as RequireClientID
// does.
func TestRequireBearerRepeatedClientID(t *testing.T) {
	t.Parallel()
	k := keys(t)
	v := staticVerifier(t, k, nil)
	raw := eddsa(k).sign(t, claims(setClaim("aud", []string{testClient, "app-2"}), setClaim("azp", testClient)))
	for _, ids := range [][]string{{testClient, "app-2"}, {testClient, testClient}, {"app-2", testClient}} {
		next := &handlertest.Recorder{}
		w := handlertest.Serve(middleware.RequireBearer(v)(next), handlertest.NewRequest(http.Header{"X-Client-Id": ids, "Authorization": {"Bearer " + raw}}))
		handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeHeaderRepeated, handlertest.MsgHeaderRepeated)
	}
}

// TestVerifierClientIssuer: a Verifier refuses the tokens of its issuer for
// the client in the context (middleware.ClientFromContext) when that client
// is registered with another issuer, as if Issuers had been configured and
// found it, before any key lookup or cache; a client registered without an
// issuer, or with this one, takes them as before, as does a request
// without a client in the context or with another client there.
func TestVerifierClientIssuer(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	const other = "https://other.example.com"
	otherKeys := other + "/keys"
	tests := []struct {
		name    string
		client  *store.Client // in the context; nil for none
		keyfunc bool          // the Verifier has a Keyfunc, no JWKSURL
		ok      bool
	}{
		{"no client in the context", nil, false, true},
		{"client without an issuer", &store.Client{ID: testClient}, false, true},
		{"client of this issuer", &store.Client{ID: testClient, Issuer: testIssuer, JWKSURL: srv.URL}, false, true},
		{"client of another issuer", &store.Client{ID: testClient, Issuer: other, JWKSURL: otherKeys}, false, false},
		{"client of this issuer at other keys", &store.Client{ID: testClient, Issuer: testIssuer, JWKSURL: otherKeys}, false, false},
		{"client of another issuer at these keys", &store.Client{ID: testClient, Issuer: other, JWKSURL: srv.URL}, false, false},
		{"client with keys but no issuer", &store.Client{ID: testClient, JWKSURL: srv.URL}, false, false},
		{"client with an issuer but no keys", &store.Client{ID: testClient, Issuer: testIssuer}, false, false},
		{"another client of another issuer", &store.Client{ID: "app-2", Issuer: other, JWKSURL: otherKeys}, false, true},
		{"Keyfunc, client of this issuer", &store.Client{ID: testClient, Issuer: testIssuer, JWKSURL: otherKeys}, true, true},
		{"Keyfunc, client of another issuer", &store.Client{ID: testClient, Issuer: other, JWKSURL: otherKeys}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &handlertest.LogSink{}
			edit := func(o *idtoken.Options) {
				o.Logger = logs.Logger()
				o.RefusalLogLevel = slog.LevelWarn
			}
			var v *idtoken.Verifier
			var raw string
			if tt.keyfunc {
				v, raw = staticVerifier(t, k, edit), eddsa(k).sign(t, claims())
			} else {
				v = newVerifier(t, func(o *idtoken.Options) { o.JWKSURL = srv.URL; edit(o) })
				raw = es256(k).sign(t, claims())
			}
			ctx := context.Background()
			if tt.client != nil {
				ctx = middleware.WithClient(ctx, *tt.client)
			}
			_, err := v.Verify(ctx, raw, testClient)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, i18n.CodeTokenInvalid) || !errors.Is(err, idtoken.ErrClientOtherIssuer) || errors.Is(err, i18n.CodeInternal) {
				t.Fatalf("Verify error = %v, want CodeTokenInvalid wrapping ErrClientOtherIssuer", err)
			}
			recs := logs.Records()
			if len(recs) != 1 {
				t.Fatalf("%d log records, want 1:\n%s", len(recs), logs.Text())
			}
			want := map[string]any{"level": "WARN", "msg": "selfservice: id_token refused",
				"reason": idtoken.ErrClientOtherIssuer.Error(), "client": testClient}
			for key, value := range want {
				if recs[0][key] != value {
					t.Errorf("log %s = %v, want %v", key, recs[0][key], value)
				}
			}
		})
	}
}

// TestVerifierClientIssuerChain: the Verifier alone as the chain's verifier
// (Issuers forgotten) refuses its issuer's tokens for a client the registry
// names with another issuer, also one its cache holds (verified for that
// client without a client in the context), and an unknown kid for that
// client fetches nothing; a client of its own issuer is served.
func TestVerifierClientIssuerChain(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.UnknownKIDInterval = time.Millisecond
		o.Cache = idtoken.CacheOptions{MaxEntries: 16}
	})
	reg := memstore.NewClientRegistry(
		store.Client{ID: testClient, Issuer: "https://other.example.com", JWKSURL: "https://other.example.com/keys"},
		store.Client{ID: "app-2", Issuer: testIssuer, JWKSURL: srv.URL},
	)
	request := func(client, raw string) *http.Request {
		r := bearerRequest(raw)
		r.Header.Set("X-Client-Id", client)
		return r
	}
	next := &handlertest.Recorder{}
	handlertest.AssertPassed(t, handlertest.Serve(chain(reg, v, next), request("app-2", es256(k).sign(t, claims(setClaim("aud", "app-2"))))), next)
	cached := es256(k).sign(t, claims(setClaim("jti", "cached")))
	if _, err := v.Verify(context.Background(), cached, testClient); err != nil {
		t.Fatalf("without a client in the context: %v", err)
	}

	for name, raw := range map[string]string{
		"token of this issuer":    es256(k).sign(t, claims()),
		"token the cache holds":   cached,
		"token of an unknown kid": signer{jwt.SigningMethodES256, k.es, "unknown"}.sign(t, claims()),
	} {
		t.Run(name, func(t *testing.T) {
			next := &handlertest.Recorder{}
			w := handlertest.Serve(chain(reg, v, next), request(testClient, raw))
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)
		})
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1 (start-up)", n)
	}
}
