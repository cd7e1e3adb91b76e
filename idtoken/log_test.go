package idtoken_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

// TestRefusalLog: every refused token is logged once, at the level the
// integrator chose, with a reason that tells the failures apart and the kid,
// and never the token or its subject (issue 10, 4).
func TestRefusalLog(t *testing.T) {
	t.Parallel()
	k := keys(t)
	const secretSub = "subject-that-must-not-be-logged"
	sign := func(edits ...func(jwt.MapClaims)) string {
		return eddsa(k).sign(t, claims(append([]func(jwt.MapClaims){setClaim("sub", secretSub)}, edits...)...))
	}
	good := sign()
	tests := []struct {
		name   string
		raw    string
		client string
		reason error
		kid    string
	}{
		{"expired", sign(setClaim("exp", testNow.Add(-time.Hour).Unix())), testClient, jwt.ErrTokenExpired, "ed-1"},
		{"audience", good, "app-2", idtoken.ErrTokenAudience, "ed-1"},
		{"azp", sign(setClaim("azp", "app-2")), testClient, idtoken.ErrTokenAuthorizedParty, "ed-1"},
		{"issuer", sign(setClaim("iss", "https://evil.example")), testClient, jwt.ErrTokenInvalidIssuer, "ed-1"},
		{"signature", good[:len(good)-6] + "AAAAAA", testClient, jwt.ErrTokenSignatureInvalid, "ed-1"},
		{"access token", sign(setClaim("client_id", "app-2")), testClient, idtoken.ErrTokenAccessToken, "ed-1"},
		{"string date", sign(setClaim("exp", "1999999999")), testClient, idtoken.ErrTokenNumericDate, "ed-1"},
		{"no kid", signer{jwt.SigningMethodEdDSA, k.ed, ""}.sign(t, claims(setClaim("sub", secretSub))), testClient, idtoken.ErrTokenNoKID, ""},
		{"malformed", "not.a.token", testClient, jwt.ErrTokenMalformed, ""},
		{"too large", strings.Repeat("x", 9000), testClient, idtoken.ErrTokenTooLarge, ""},
		{"padded kid", signer{jwt.SigningMethodEdDSA, k.ed, strings.Repeat("k", 4000)}.sign(t, claims(setClaim("sub", secretSub), setClaim("aud", "app-2"))),
			testClient, idtoken.ErrTokenAudience, strings.Repeat("k", 128) + "…"},
	}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug, slog.LevelWarn} {
		for _, tt := range tests {
			t.Run(level.String()+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				logs := &handlertest.LogSink{}
				v := staticVerifier(t, k, func(o *idtoken.Options) {
					o.Logger = logs.Logger()
					if level != slog.LevelInfo { // Info is the zero value, the default
						o.RefusalLogLevel = level
					}
				})
				next := &handlertest.Recorder{}
				r := handlertest.NewRequest(http.Header{"X-Client-Id": {tt.client}, "Authorization": {"Bearer " + tt.raw}})
				handlertest.AssertError(t, handlertest.Serve(middleware.RequireBearer(v)(next), r), next, http.StatusBadRequest, handlertest.CodeTokenInvalid, handlertest.MsgTokenInvalid)

				recs := logs.Records()
				if len(recs) != 1 {
					t.Fatalf("%d log records, want 1:\n%s", len(recs), logs.Text())
				}
				rec := recs[0]
				want := map[string]any{
					"level": level.String(), "msg": "selfservice: id_token refused",
					"reason": tt.reason.Error(), "kid": tt.kid, "client": tt.client,
				}
				for key, value := range want {
					if rec[key] != value {
						t.Errorf("log %s = %v, want %v", key, rec[key], value)
					}
				}
				assertNoSecrets(t, logs.Text(), tt.raw, secretSub)
				if n := len(logs.Text()); n > 1500 {
					t.Errorf("log record of %d bytes", n)
				}
			})
		}
	}
}

// assertNoSecrets fails when text holds the token, any of its parts longer
// than a header, or the subject.
func assertNoSecrets(t *testing.T, text, raw, sub string) {
	t.Helper()
	if strings.Contains(text, sub) {
		t.Errorf("log holds the subject: %s", text)
	}
	for _, part := range append(strings.Split(raw, "."), raw) {
		if len(part) > 40 && strings.Contains(text, part) {
			t.Errorf("log holds the token or a part of it: %s", text)
		}
	}
}

// TestRefusalLogCached: an accepted token logs nothing, and a refusal
// served from the cache is logged like any other, with its kid.
func TestRefusalLogCached(t *testing.T) {
	t.Parallel()
	k := keys(t)
	logs := &handlertest.LogSink{}
	v := staticVerifier(t, k, func(o *idtoken.Options) {
		o.Logger = logs.Logger()
		o.Cache = idtoken.CacheOptions{MaxEntries: 10}
	})
	raw := eddsa(k).sign(t, claims())
	for range 2 {
		if _, err := v.Verify(context.Background(), raw, testClient); err != nil {
			t.Fatal(err)
		}
	}
	if text := logs.Text(); text != "" {
		t.Fatalf("accepted tokens logged: %s", text)
	}
	if _, err := v.Verify(context.Background(), raw, "app-2"); !errors.Is(err, idtoken.ErrTokenAudience) {
		t.Fatalf("Verify for another client: %v", err)
	}
	recs := logs.Records()
	if len(recs) != 1 || recs[0]["reason"] != idtoken.ErrTokenAudience.Error() || recs[0]["kid"] != "ed-1" {
		t.Errorf("logged %s, want one audience refusal with kid ed-1", logs.Text())
	}
	assertNoSecrets(t, logs.Text(), raw, testUser)
}

// TestRefusalLogKeysUnavailable: keys that never loaded are an outage,
// logged once at Error, by Verify only (RequireBearer adds nothing).
func TestRefusalLogKeysUnavailable(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, nil)
	srv.status.Store(http.StatusServiceUnavailable)
	logs := &handlertest.LogSink{}
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.KeyRetryMin = time.Hour // no background fetch meanwhile
		o.UnknownKIDInterval = time.Hour
		o.Logger = logs.Logger()
	})
	raw := rs256(k).sign(t, claims())
	w := handlertest.Serve(middleware.RequireBearer(v)(&handlertest.Recorder{}), bearerRequest(raw))
	handlertest.AssertError(t, w, nil, http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal)
	var outages int
	for _, rec := range logs.Records() {
		switch rec["msg"] {
		case "selfservice: token keys unavailable":
			outages++
			if rec["level"] != "ERROR" || rec["kid"] != "rs-1" {
				t.Errorf("outage logged as %v", rec)
			}
		case "selfservice: JWKS fetch failed":
		default:
			t.Errorf("unexpected log record %v", rec)
		}
	}
	if outages != 1 {
		t.Errorf("%d outage records, want 1:\n%s", outages, logs.Text())
	}
	assertNoSecrets(t, logs.Text(), raw, testUser)
}

// TestRefusalLogUnknownKID: a kid the JWKS does not have is its own reason.
func TestRefusalLogUnknownKID(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, standardSet(k)...))
	logs := &handlertest.LogSink{}
	v := newVerifier(t, func(o *idtoken.Options) {
		o.JWKSURL = srv.URL
		o.Logger = logs.Logger()
	})
	raw := signer{jwt.SigningMethodRS256, k.rs, "rotated-away"}.sign(t, claims())
	if _, err := v.Verify(context.Background(), raw, testClient); !errors.Is(err, jwkset.ErrKeyNotFound) {
		t.Fatalf("Verify: %v", err)
	}
	var refusals []map[string]any
	for _, rec := range logs.Records() {
		if rec["msg"] == "selfservice: id_token refused" {
			refusals = append(refusals, rec)
		}
	}
	if len(refusals) != 1 || refusals[0]["reason"] != jwkset.ErrKeyNotFound.Error() || refusals[0]["kid"] != "rotated-away" {
		t.Errorf("logged %s, want one refusal for the unknown kid", logs.Text())
	}

	// jwkset quotes the kid in its error: a padded one is cut there too.
	before := len(logs.Text())
	padded := signer{jwt.SigningMethodRS256, k.rs, strings.Repeat("k", 6000)}.sign(t, claims())
	if _, err := v.Verify(context.Background(), padded, testClient); err == nil {
		t.Fatal("token of a padded unknown kid accepted")
	}
	if n := len(logs.Text()) - before; n > 2000 {
		t.Errorf("%d bytes logged for one refusal of a padded kid", n)
	}
}
