package idtoken_test

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

// fuzzKey is a fixed key, so that seeds signed with it stay valid.
var fuzzKey = ed25519.NewKeyFromSeed([]byte("selfservice fuzz key, 32 bytes!!"))

func FuzzBearerToken(f *testing.F) {
	sign := func(c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = "fuzz"
		raw, err := tok.SignedString(fuzzKey)
		if err != nil {
			f.Fatal(err)
		}
		return raw
	}
	valid := sign(claims())
	for _, c := range []jwt.MapClaims{
		claims(setClaim("exp", "1999999999")),
		claims(setClaim("iat", "1")),
		claims(setClaim("client_id", "other-app"), setClaim("scp", []string{"openid"})),
		claims(setClaim("typ", "at+jwt")),
		claims(setClaim("sub", strings.Repeat("s", 256))),
	} {
		f.Add("Bearer " + sign(c))
	}
	for _, s := range []string{
		"Bearer " + valid, "bearer\t" + valid, "Bearer " + valid + "x", "Bearer " + strings.Replace(valid, ".", "..", 1),
		"Bearer a.b.c", "Bearer ....", "Bearer", "Bearer    ", "", "Basic xxx", "Bearer e30.e30.",
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "BEARER " + strings.Repeat("A", 9000),
	} {
		f.Add(s)
	}
	pub := fuzzKey.Public()
	v := newVerifier(f, func(o *idtoken.Options) {
		o.Keyfunc = func(*jwt.Token) (any, error) { return pub, nil }
	})
	h := middleware.RequireBearer(v)
	f.Fuzz(func(t *testing.T, authorization string) {
		next := &handlertest.Recorder{}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header["Authorization"] = []string{authorization}
		r.Header["X-Client-Id"] = []string{testClient}
		w := handlertest.Serve(h(next), r)
		if w.Code == http.StatusOK {
			handlertest.AssertPassed(t, w, next)
			if c := claimsOf(next.Context(t)); c == nil || c.Subject == "" {
				t.Errorf("next ran with claims %+v", c)
			}
			return
		}
		var body struct {
			Code string `json:"error_code"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		switch body.Code {
		case handlertest.CodeTokenEmpty:
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenEmpty, handlertest.MsgTokenEmpty)
		default:
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)
		}
	})
}
