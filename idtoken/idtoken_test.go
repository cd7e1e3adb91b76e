package idtoken_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// TestAccessTokenOfAnotherClient replays issue 10, 2: the provider (Ory
// Hydra) issues JWT access tokens with the header typ JWT, signed by the
// id_token keys and served on the same JWKS, with client_id and scp claims
// and an audience the requesting client chooses. One minted for another
// client, with this client as its audience, must not pass as an id_token,
// whatever its marker looks like.
func TestAccessTokenOfAnotherClient(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	v := newVerifier(t, func(o *idtoken.Options) { o.JWKSURL = srv.URL })
	reg := memstore.NewClientRegistry(store.Client{ID: testClient}, store.Client{ID: "other-app"})
	hydra := func(edits ...func(jwt.MapClaims)) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			c["aud"] = []string{testClient} // chosen by the other client
			c["client_id"] = "other-app"
			c["scp"] = []string{"openid", "offline_access"}
			c["jti"] = "4b5f3e2c-0b1d-4f1e-9a57-3c6f1b1d2e0a"
			c["ext"] = map[string]any{}
			for _, e := range edits {
				e(c)
			}
		}
	}
	tests := []struct {
		name  string
		claim func(jwt.MapClaims)
	}{
		{"as Hydra mints it", hydra()},
		{"client_id alone", hydra(dropClaim("scp"))},
		{"scp alone", hydra(dropClaim("client_id"))},
		{"scope instead of scp", hydra(dropClaim("scp"), dropClaim("client_id"), setClaim("scope", "openid offline_access"))},
		{"client_id of this client", hydra(setClaim("client_id", testClient), dropClaim("scp"))},
		{"with azp of this client", hydra(setClaim("azp", testClient))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := rs256(k).sign(t, claims(setClaim("sub", "victim-7"), tt.claim), func(h map[string]any) { h["typ"] = "JWT" })

			_, err := v.Verify(context.Background(), raw, testClient)
			if !errors.Is(err, i18n.CodeTokenInvalid) || !errors.Is(err, idtoken.ErrTokenAccessToken) {
				t.Errorf("Verify error = %v, want ErrTokenInvalid wrapping ErrTokenAccessToken", err)
			}
			next := &handlertest.Recorder{}
			w := handlertest.Serve(chain(reg, v, next), bearerRequest(raw))
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)
		})
	}
	// The same claims without the markers: an id_token, accepted.
	raw := rs256(k).sign(t, claims(setClaim("sub", "victim-7"), hydra(dropClaim("client_id"), dropClaim("scp"))))
	if _, err := v.Verify(context.Background(), raw, testClient); err != nil {
		t.Errorf("the same token without access-token claims: %v", err)
	}
}

// TestKeyfuncRequiresKID: with a Keyfunc as with a JWKS, a token that names
// no key is refused before the Keyfunc is asked (issue 10, 5).
func TestKeyfuncRequiresKID(t *testing.T) {
	t.Parallel()
	k := keys(t)
	var calls atomic.Int32
	pub := k.ed.Public()
	v := newVerifier(t, func(o *idtoken.Options) {
		o.Keyfunc = func(*jwt.Token) (any, error) {
			calls.Add(1)
			return pub, nil
		}
	})
	tests := []struct {
		name   string
		header func(map[string]any)
		ok     bool
	}{
		{"kid", func(map[string]any) {}, true},
		{"no kid", func(h map[string]any) { delete(h, "kid") }, false},
		{"empty kid", func(h map[string]any) { h["kid"] = "" }, false},
		{"kid not a string", func(h map[string]any) { h["kid"] = 7 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := eddsa(k).sign(t, claims(), tt.header)
			before := calls.Load()
			_, err := v.Verify(context.Background(), raw, testClient)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, idtoken.ErrTokenNoKID) {
				t.Errorf("Verify error = %v, want ErrTokenNoKID", err)
			}
			if calls.Load() != before {
				t.Error("the Keyfunc was asked for a token without a kid")
			}
		})
	}
}

// TestVerifierClaimsACRAMR: the claims of OpenID Connect Core section 2 the
// package leaves to its caller are there to judge.
func TestVerifierClaimsACRAMR(t *testing.T) {
	t.Parallel()
	k := keys(t)
	v := staticVerifier(t, k, nil)
	raw := eddsa(k).sign(t, claims(setClaim("acr", "urn:mace:incommon:iap:silver"), setClaim("amr", []string{"pwd", "mfa"}),
		setClaim("auth_time", testNow.Add(-2*time.Minute).Unix())))
	c, err := v.Verify(context.Background(), raw, testClient)
	if err != nil {
		t.Fatal(err)
	}
	if c.ACR != "urn:mace:incommon:iap:silver" || len(c.AMR) != 2 || c.AMR[1] != "mfa" || !c.AuthTime.Equal(testNow.Add(-2*time.Minute)) {
		t.Errorf("claims = %+v", c)
	}
}
