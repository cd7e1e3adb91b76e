package selfservice_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/selfservicetest"
	"github.com/ciamkit/selfservice/store"
)

// goAPI is a Service to call through its Go-level operations, with what
// the cases need around it.
type goAPI struct {
	svc  *selfservice.Service
	iss  *selfservicetest.Issuer
	mail *selfservicetest.Mailer
	cfg  selfservice.Config
}

func newGoAPI(t *testing.T, edit func(*selfservice.Config)) *goAPI {
	t.Helper()
	g := &goAPI{iss: selfservicetest.NewIssuer(t), mail: &selfservicetest.Mailer{}}
	g.cfg = selfservicetest.Config(t, g.iss, g.mail,
		store.User{ID: "alice", Email: "alice@example.com"}, store.User{ID: "bob", Email: "bob@example.com"})
	if edit != nil {
		edit(&g.cfg)
	}
	svc, err := selfservice.New(g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	g.svc = svc
	return g
}

// caller is a complete Caller for the issuer's client.
func (g *goAPI) caller() selfservice.Caller {
	return selfservice.Caller{
		ClientID: g.iss.ClientID,
		Device:   middleware.Device{OSVersion: "ios17", Fingerprint: "fp-1", Agent: "app/1.0"},
		IP:       netip.MustParseAddr("192.0.2.10"),
	}
}

// sent mails a code to email through the Go API and returns it.
func (g *goAPI) sent(t *testing.T, email string) string {
	t.Helper()
	err := g.svc.SendCode(context.Background(), selfservice.SendCodeRequest{
		Caller: g.caller(), Email: email, Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
	})
	if err != nil {
		t.Fatalf("SendCode(%s): %v", email, err)
	}
	return g.mail.Code(t, email)
}

// TestGoAPIUpdateEmail runs update-email's checks through the Go call, in
// the contract's order: each case breaks one thing, and those that break
// two show which check comes first. Both ways of naming the user (an
// Identity the application verified, an IDToken for Config.Verifier) are
// covered.
func TestGoAPIUpdateEmail(t *testing.T) {
	t.Parallel()
	alice := middleware.Identity{Subject: "alice"}
	good := func(g *goAPI) selfservice.UpdateEmailRequest {
		return selfservice.UpdateEmailRequest{Caller: g.caller(), Identity: alice, Email: "new@example.com", VerifyCode: "123456"}
	}
	tests := []struct {
		name string
		mod  func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest)
		edit func(*selfservice.Config)
		want i18n.Code // "" for success
	}{
		{"device incomplete before an unknown client", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Device.Agent, r.ClientID = " ", "nobody"
		}, nil, i18n.CodeDeviceIncomplete},
		{"device with a control character", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Device.Fingerprint = "fp\n1"
		}, nil, i18n.CodeDeviceIncomplete},
		{"client empty before no user", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.ClientID, r.Identity = " ", middleware.Identity{}
		}, nil, i18n.CodeClientIDEmpty},
		{"client unknown", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) { r.ClientID = "nobody" }, nil, i18n.CodeClientUnknown},
		{"no user and no token", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) { r.Identity = middleware.Identity{} }, nil, i18n.CodeTokenEmpty},
		{"token of another client, before an empty code", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity, r.IDToken, r.VerifyCode = middleware.Identity{}, g.iss.Token(t, "alice", selfservicetest.WithClaim("aud", "other")), ""
		}, nil, i18n.CodeTokenInvalid},
		{"expired token", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity, r.IDToken = middleware.Identity{}, g.iss.Token(t, "alice", selfservicetest.WithClaim("exp", time.Now().Add(-time.Hour).Unix()))
		}, nil, i18n.CodeTokenInvalid},
		// Without a Verifier a token is not looked at, as over HTTP.
		{"a token but no Verifier", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity, r.IDToken = middleware.Identity{}, g.iss.Token(t, "alice")
		}, func(c *selfservice.Config) { c.Verifier = nil }, i18n.CodeNotSignedIn},
		{"no user and no Verifier", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity = middleware.Identity{}
		}, func(c *selfservice.Config) { c.Verifier = nil }, i18n.CodeNotSignedIn},
		{"sign-in too old, no Verifier", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity.AuthTime = time.Now().Add(-time.Hour)
		}, func(c *selfservice.Config) { c.Verifier, c.MaxAuthAge = nil, time.Minute }, i18n.CodeSignInAgain},
		{"a trusted backend without a device", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Device, r.Backend = selfservice.Device{}, "support-cli"
			r.VerifyCode = g.sent(t, r.Email)
		}, nil, ""},
		{"a trusted backend with half a device", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Device, r.Backend = selfservice.Device{Agent: "cli"}, "support-cli"
		}, nil, i18n.CodeDeviceIncomplete},
		{"sign-in too old before an empty code", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity.AuthTime, r.VerifyCode = time.Now().Add(-time.Hour), ""
		}, func(c *selfservice.Config) { c.MaxAuthAge = time.Minute }, i18n.CodeReauthRequired},
		{"no sign-in time where one is required", nil, func(c *selfservice.Config) { c.MaxAuthAge = time.Minute }, i18n.CodeReauthRequired},
		{"empty code before a bad address", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.VerifyCode, r.Email = "", "not an address"
		}, nil, i18n.CodeVerifyCodeEmpty},
		{"bad address before an unknown user", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Email, r.Identity = "a@b@example.com", middleware.Identity{Subject: "ghost"}
		}, nil, i18n.CodeEmailInvalid},
		{"unknown user", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity = middleware.Identity{Subject: "ghost"}
		}, nil, i18n.CodeUserNotFound},
		{"own address again, whatever the code", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Email, r.VerifyCode = " ALICE@example.com", "nonsense"
		}, nil, ""},
		{"code not six digits", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) { r.VerifyCode = "12345a" }, nil, i18n.CodeVerifyCodeIncorrect},
		{"wrong code", nil, nil, i18n.CodeVerifyCodeIncorrect},
		{"budget spent before the right code", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.VerifyCode = g.sent(t, r.Email)
			for range 10 {
				wrong := *r
				wrong.Email, wrong.VerifyCode = "elsewhere@example.com", "000000"
				_ = g.svc.UpdateEmail(context.Background(), wrong)
			}
		}, nil, i18n.CodeWrongCodesLimited},
		{"right code for a taken address", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Email = "Bob@Example.com"
			r.VerifyCode = g.sent(t, r.Email)
		}, nil, i18n.CodeEmailExists},
		{"right code", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) { r.VerifyCode = g.sent(t, r.Email) }, nil, ""},
		{"right code with a token", func(t *testing.T, g *goAPI, r *selfservice.UpdateEmailRequest) {
			r.Identity, r.IDToken = middleware.Identity{}, g.iss.Token(t, "alice")
			r.VerifyCode = g.sent(t, r.Email)
		}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGoAPI(t, tt.edit)
			req := good(g)
			if tt.mod != nil {
				tt.mod(t, g, &req)
			}
			err := g.svc.UpdateEmail(context.Background(), req)
			assertCode(t, err, tt.want)
			// A front answering over HTTP itself gets the endpoints'
			// challenge: only a stale sign-in under a Verifier has one.
			want := ""
			if tt.want == i18n.CodeReauthRequired {
				want = `Bearer error="insufficient_user_authentication", max_age=60`
			}
			if f := g.svc.Failure(err, language.English); f.Challenge != want {
				t.Errorf("Failure(%v).Challenge = %q, want %q", err, f.Challenge, want)
			}
			if tt.want == "" && req.Email == "new@example.com" {
				u, _ := g.cfg.Users.User(context.Background(), "alice")
				if u.Email != "new@example.com" {
					t.Errorf("email is %q after success", u.Email)
				}
			}
		})
	}
}

// TestGoAPISendCode runs send-code's checks through the Go call, in order.
func TestGoAPISendCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(r *selfservice.SendCodeRequest)
		edit func(*selfservice.Config)
		want i18n.Code
	}{
		{"device incomplete before an unknown client", func(r *selfservice.SendCodeRequest) { r.Device.OSVersion, r.ClientID = "", "nobody" }, nil, i18n.CodeDeviceIncomplete},
		{"client empty before a bad type", func(r *selfservice.SendCodeRequest) { r.ClientID, r.Type = "", "LOGIN_EMS" }, nil, i18n.CodeClientIDEmpty},
		{"client unknown", func(r *selfservice.SendCodeRequest) { r.ClientID = "nobody" }, nil, i18n.CodeClientUnknown},
		{"type unsupported before a bad address", func(r *selfservice.SendCodeRequest) { r.Type, r.Email = "REGISTER_EMS", "nope" }, nil, i18n.CodeTypeUnsupported},
		{"bad address before no captcha", func(r *selfservice.SendCodeRequest) { r.Email, r.CaptchaToken = "a@example", "" }, nil, i18n.CodeEmailInvalid},
		{"no captcha", func(r *selfservice.SendCodeRequest) { r.CaptchaToken = " " }, nil, i18n.CodeCaptchaFailed},
		{"captcha refused", nil, func(c *selfservice.Config) {
			c.Captcha = selfservice.CaptchaFunc(func(context.Context, string) error { return selfservice.ErrCaptchaRejected })
		}, i18n.CodeCaptchaFailed},
		{"captcha service down", nil, func(c *selfservice.Config) {
			c.Captcha = selfservice.CaptchaFunc(func(context.Context, string) error { return errors.New("timeout") })
		}, i18n.CodeInternal},
		{"mailer down", nil, func(c *selfservice.Config) {
			c.Mailer = selfservice.MailerFunc(func(context.Context, selfservice.Message) error { return errors.New("451") })
		}, i18n.CodeSendFailed},
		{"sent", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGoAPI(t, tt.edit)
			req := selfservice.SendCodeRequest{Caller: g.caller(), Email: "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok"}
			if tt.mod != nil {
				tt.mod(&req)
			}
			assertCode(t, g.svc.SendCode(context.Background(), req), tt.want)
		})
	}

	t.Run("too often, with the wait", func(t *testing.T) {
		t.Parallel()
		g := newGoAPI(t, nil)
		g.sent(t, "new@example.com")
		err := g.svc.SendCode(context.Background(), selfservice.SendCodeRequest{
			Caller: g.caller(), Email: "NEW@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
		})
		assertCode(t, err, i18n.CodeSendLimited)
		if e := i18n.ErrorOf(err); e.RetryAfter <= 0 || e.RetryAfter > time.Minute {
			t.Errorf("RetryAfter = %v, want within the minute", e.RetryAfter)
		}
	})
}

// assertCode checks that err is answered with want ("" for success).
func assertCode(t *testing.T, err error, want i18n.Code) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("err = %v, want success", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %s", err, want)
	}
	if got := i18n.ErrorOf(err).Code; got != want {
		t.Fatalf("ErrorOf(err).Code = %s, want %s", got, want)
	}
}

// TestOwnAuthenticationOverHTTP: with no Verifier, an application's own
// authentication hands the user to the handlers with WithIdentity, and the
// whole flow runs over HTTP.
func TestOwnAuthenticationOverHTTP(t *testing.T) {
	t.Parallel()
	iss, mail := selfservicetest.NewIssuer(t), &selfservicetest.Mailer{}
	cfg := selfservicetest.Config(t, iss, mail, store.User{ID: "u-1001", Email: "old@example.com"})
	cfg.Verifier = nil
	svc, err := selfservice.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())

	// The application's own authentication: its session cookie says who
	// the user is.
	appAuth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := r.Cookie("session"); err == nil && c.Value == "s3cr3t" {
				r = r.WithContext(middleware.WithIdentity(r.Context(), middleware.Identity{Subject: "u-1001"}))
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(appAuth(svc.Handler()))
	defer srv.Close()

	// Neutral words for an application without tokens, and a stray token
	// is not looked at.
	stranger := selfservicetest.NewClient(srv.URL, iss.ClientID)
	stranger.UpdateEmail(t, "", "new@example.com", "123456").Expect(t, http.StatusForbidden, "IDAAS.SDK.USER.9207")
	stranger.UpdateEmail(t, iss.Token(t, "u-1001"), "new@example.com", "123456").Expect(t, http.StatusForbidden, "IDAAS.SDK.USER.9207")
	signedIn := selfservicetest.NewClient(srv.URL, iss.ClientID)
	signedIn.Header = http.Header{"Cookie": {"session=s3cr3t"}}
	signedIn.SendCode(t, "new@example.com").Expect(t, http.StatusOK, "")
	signedIn.UpdateEmail(t, "", "new@example.com", mail.Code(t, "new@example.com")).Expect(t, http.StatusOK, "")
	if u, _ := cfg.Users.User(context.Background(), "u-1001"); u.Email != "new@example.com" {
		t.Errorf("email is %q", u.Email)
	}
}

// TestCallerOf: a front that calls the Go API itself reads the Caller from
// the request with the endpoints' rules.
func TestCallerOf(t *testing.T) {
	t.Parallel()
	g := newGoAPI(t, func(c *selfservice.Config) {
		c.ClientIP = selfservice.TrustProxies(netip.MustParsePrefix("10.0.0.0/8"))
	})
	request := func(edit func(h http.Header)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = "10.1.2.3:4444"
		r.Header = selfservicetest.Headers(" "+g.iss.ClientID+" ", "zh-CN")
		r.Header.Set("X-Forwarded-For", "198.51.100.9")
		if edit != nil {
			edit(r.Header)
		}
		return r
	}
	for _, tt := range []struct {
		name string
		edit func(h http.Header)
		want i18n.Code
		lang string
	}{
		{"complete", nil, "", "zh"},
		{"Accept-Language when X-L is absent", func(h http.Header) { h.Del("X-L"); h.Set("Accept-Language", "en-GB") }, "", "en"},
		{"X-L repeated: the default language", func(h http.Header) { h.Add("X-L", "zh") }, i18n.CodeHeaderRepeated, "en"},
		{"device incomplete, answered in the caller's language", func(h http.Header) { h.Del("X-Agent") }, i18n.CodeDeviceIncomplete, "zh"},
		{"device ip not an address", func(h http.Header) { h.Set("X-Device-Ip", "nope") }, i18n.CodeDeviceIncomplete, "zh"},
		{"client id repeated", func(h http.Header) { h.Add("X-Client-Id", "other") }, i18n.CodeHeaderRepeated, "zh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := g.svc.CallerOf(request(tt.edit))
			if tt.want == "" && err != nil || tt.want != "" && !errors.Is(err, tt.want) {
				t.Fatalf("CallerOf: %v, want %q", err, tt.want)
			}
			if c.Language.String() != tt.lang {
				t.Errorf("Language %v, want %s", c.Language, tt.lang)
			}
			if err != nil {
				return
			}
			if c.ClientID != g.iss.ClientID || c.IP != netip.MustParseAddr("198.51.100.9") || c.Device.Agent != "selfservicetest" {
				t.Errorf("Caller %+v", c)
			}
			err = g.svc.SendCode(context.Background(), selfservice.SendCodeRequest{
				Caller: c, Email: "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
			})
			if err != nil && !errors.Is(err, i18n.CodeSendLimited) {
				t.Errorf("SendCode with the Caller: %v", err)
			}
		})
	}
}
