package selfservice_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/testkit"
)

// messages are the texts every code must be answered with, written out here
// rather than read from the catalog so that a changed text fails the test.
var messages = map[string][2]string{ // code -> {en, zh}
	"IDAAS.SDK.PARAM.0001":   {"Device information is incomplete", "设备信息不完整"},
	"IDAAS.SDK.PARAM.0002":   {"clientId cannot be empty", "clientId不能为空"},
	"IDAAS.SDK.PARAM.0003":   {"The app is not registered, please register the app first", "应用未注册,请先注册应用"},
	"IDAAS.SDK.PARAM.0015":   {"IdToken cannot be empty", "IdToken不能为空"},
	"IDAAS.SDK.PARAM.0016":   {"IdToken is invalid or expired", "IdToken无效或已过期"},
	"IDAAS.SDK.PARAM.0009":   {"Verification code cannot be empty", "验证码不能为空"},
	"IDAAS.SDK.CAPTCHA.0007": {"Incorrect verification code", "验证码不正确"},
	"IDAAS.SDK.USER.0021":    {"The e-mail does not meet the verification rules", "邮箱不符合校验规则"},
	"IDAAS.SDK.USER.0036":    {"E-mail already exists", "邮箱已存在"},
	"IDAAS.SDK.USER.0001":    {"User not found", "用户未找到"},
	"IDAAS.SDK.CAPTCHA.0006": {"Failed to send the verification code, please try again later", "验证码发送失败,请稍后重试"},
	"IDAAS.SDK.SYS.9001":     {"System busy, please try again later", "系统繁忙,请稍后重试"},
	"IDAAS.SDK.REQ.9101":     {"Method not allowed, use POST", "请求方法不被允许,请使用POST"},
	"IDAAS.SDK.REQ.9102":     {"Content-Type must be application/json", "Content-Type必须为application/json"},
	"IDAAS.SDK.REQ.9103":     {"Request body is too large", "请求体过大"},
	"IDAAS.SDK.REQ.9104":     {"Request body is not a valid JSON object", "请求体不是有效的JSON对象"},
	"IDAAS.SDK.CAPTCHA.9201": {"Verification codes are requested too often, please try again later", "验证码发送过于频繁,请稍后重试"},
	"IDAAS.SDK.CAPTCHA.9202": {"Human verification failed", "人机验证失败"},
	"IDAAS.SDK.PARAM.9203":   {"Unsupported verification code type", "不支持的验证码类型"},
	"IDAAS.SDK.PARAM.9204":   {"Please sign in again to change your email", "请重新登录后再修改邮箱"},
	"IDAAS.SDK.CAPTCHA.9205": {"Too many incorrect verification codes, please try again later", "验证码错误次数过多,请稍后重试"},
	"IDAAS.SDK.REQ.9105":     {"A request header that may appear only once is repeated", "请求头重复,该请求头只能出现一次"},
	"IDAAS.SDK.USER.9206":    {"Too many email changes, please try again later", "邮箱修改过于频繁,请稍后重试"},
	"IDAAS.SDK.USER.9207":    {"Please sign in first", "请先登录"},
	"IDAAS.SDK.USER.9208":    {"Please sign in again to change your email", "请重新登录后再修改邮箱"},
	"IDAAS.SDK.REVERT.9301":  {"revert_token cannot be empty", "撤销令牌不能为空"},
	"IDAAS.SDK.REVERT.9302":  {"The undo link is invalid, expired or already used", "撤销链接无效、已过期或已被使用"},
	"IDAAS.SDK.REVERT.9303":  {"The previous email address now belongs to another account, please contact support", "原邮箱已被其他账号使用,请联系客服"},
	"IDAAS.SDK.REVERT.9304":  {"Too many undo attempts, please try again later", "撤销尝试次数过多,请稍后重试"},
	"IDAAS.SDK.REVERT.9305":  {"Email changes are paused after an undo, please try again later", "撤销后暂时不能修改邮箱,请稍后重试"},
}

// specCase is one request through the full chain and the answer expected.
type specCase struct {
	name   string
	method string // default POST
	path   string // default update-email
	// setup runs against the fixture before the request.
	setup  func(t *testing.T, f *fixture)
	header func(h http.Header)
	body   string
	// bodyFor, when set, makes the body from the fixture instead.
	bodyFor func(t *testing.T, f *fixture) string
	// config, when set, edits the fixture's Config.
	config func(*selfservice.Config)
	status int
	code   string // "" for success
}

func auth(tok string) func(http.Header) {
	return func(h http.Header) { h.Set("Authorization", "Bearer "+tok) }
}

func headers(mods ...func(http.Header)) func(http.Header) {
	return func(h http.Header) {
		for _, m := range mods {
			m(h)
		}
	}
}

func del(names ...string) func(http.Header) {
	return func(h http.Header) {
		for _, n := range names {
			h.Del(n)
		}
	}
}

func set(name, value string) func(http.Header) {
	return func(h http.Header) { h.Set(name, value) }
}

// ownSignIn makes the fixture an application that signs users in itself:
// no Verifier, and an Identify that says user signed in an hour ago (none
// when user is empty).
func ownSignIn(user string) func(*selfservice.Config) {
	return func(c *selfservice.Config) {
		c.Verifier = nil
		c.Identify = func(*http.Request) (selfservice.Identity, error) {
			if user == "" {
				return selfservice.Identity{}, selfservice.ErrNotSignedIn
			}
			return selfservice.Identity{Subject: user, AuthTime: time.Now().Add(-time.Hour)}, nil
		}
	}
}

// stepUp requires a sign-in of at most ten minutes for the change.
func stepUp(c *selfservice.Config) { c.MaxAuthAge = 10 * time.Minute }

// signedInAt returns alice's token with auth_time at.
func signedInAt(t testing.TB, at time.Time) string {
	now := time.Now()
	return testkit.Sign(t, idtoken.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: testkit.Issuer, Subject: "alice", Audience: jwt.ClaimStrings{testkit.Client},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		},
		AuthTime: jwt.NewNumericDate(at),
	})
}

// TestSpec drives every error code through the full middleware chain, in
// both languages, and checks status, code and exact message.
func TestSpec(t *testing.T) {
	t.Parallel()
	good := token(t, "alice", nil)
	ghost := token(t, "ghost", nil)
	expired := token(t, "alice", func(c *jwt.RegisteredClaims) {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	})
	update := func(email, code string) string {
		return `{"email":` + quote(email) + `,"verify_code":` + quote(code) + `}`
	}
	send := func(email, typ, captcha string) string {
		return `{"email":` + quote(email) + `,"type":` + quote(typ) + `,"captcha_token":` + quote(captcha) + `}`
	}
	// withCode mails a code to sendTo and submits it for submit.
	withCode := func(sendTo, submit string) func(*testing.T, *fixture) string {
		return func(t *testing.T, f *fixture) string { return update(submit, f.sendCode(t, sendTo)) }
	}
	sendFirst := func(email string) func(*testing.T, *fixture) {
		return func(t *testing.T, f *fixture) { f.sendCode(t, email) }
	}
	revert := func(tok string) string { return `{"revert_token":` + quote(tok) + `}` }
	// undoOf changes alice's address to a new one and returns the body
	// that undoes it.
	undoOf := func(t *testing.T, f *fixture) string {
		f.changeTo(t, good, "alice.new@example.com")
		return revert(f.revertToken(t, "alice@example.com"))
	}

	cases := []specCase{
		// update-email, in the contract's order of checks
		{name: "device headers missing", header: headers(del("X-agent"), auth(good)), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0001"},
		{name: "device ip malformed", header: headers(set("X-device-ip", "300.1.1.1"), auth(good)), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0001"},
		{name: "client id empty", header: headers(del("X-client-id"), auth(good)), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0002"},
		{name: "client not registered", header: headers(set("X-client-id", "nobody"), auth(good)), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0003"},
		{name: "token missing", body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0015"},
		{name: "token blank", header: set("Authorization", "Bearer   "), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0015"},
		{name: "token expired", header: auth(expired), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0016"},
		{name: "token garbage", header: auth("not.a.token"), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.PARAM.0016"},
		{name: "content type wrong", header: headers(auth(good), set("Content-Type", "text/plain")), body: update("new@example.com", "123456"), status: 415, code: "IDAAS.SDK.REQ.9102"},
		{name: "body not JSON", header: auth(good), body: `email=new@example.com`, status: 400, code: "IDAAS.SDK.REQ.9104"},
		{name: "body too large", header: auth(good), body: update(strings.Repeat("a", 5000)+"@example.com", "123456"), status: 413, code: "IDAAS.SDK.REQ.9103"},
		{name: "verify_code missing", header: auth(good), body: `{"email":"new@example.com"}`, status: 400, code: "IDAAS.SDK.PARAM.0009"},
		{name: "verify_code blank", header: auth(good), body: update("new@example.com", "  "), status: 400, code: "IDAAS.SDK.PARAM.0009"},
		{name: "email missing", header: auth(good), body: `{"verify_code":"123456"}`, status: 400, code: "IDAAS.SDK.USER.0021"},
		{name: "email malformed", header: auth(good), body: update("new@@example.com", "123456"), status: 400, code: "IDAAS.SDK.USER.0021"},
		{name: "user not found", header: auth(ghost), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.USER.0001"},
		{name: "code wrong", header: auth(good), body: update("new@example.com", "000000"), status: 400, code: "IDAAS.SDK.CAPTCHA.0007"},
		{name: "code not six digits", header: auth(good), body: update("new@example.com", "12345a"), status: 400, code: "IDAAS.SDK.CAPTCHA.0007"},
		{name: "email taken", bodyFor: withCode("bob@example.com", "BOB@example.com"), header: auth(good), status: 400, code: "IDAAS.SDK.USER.0036"},
		{name: "code for another address", bodyFor: withCode("carol@example.com", "new@example.com"), header: auth(good), status: 400, code: "IDAAS.SDK.CAPTCHA.0007"},
		{name: "email changed", bodyFor: withCode("Alice.New@Example.com", "alice.new@example.COM"), header: auth(good), status: 200},
		{name: "own email again", header: auth(good), body: update(" ALICE@example.com ", "999999"), status: 200},
		{name: "sign-in too old for the change", config: stepUp, header: auth(signedInAt(t, time.Now().Add(-time.Hour))), body: update("new@example.com", "123456"), status: 401, code: "IDAAS.SDK.PARAM.9204"},
		{name: "no auth_time where one is required", config: stepUp, header: auth(good), body: update("new@example.com", "123456"), status: 401, code: "IDAAS.SDK.PARAM.9204"},
		// An application that signs users in itself.
		{name: "own sign-in: nobody signed in", config: ownSignIn(""), body: update("new@example.com", "123456"), status: 403, code: "IDAAS.SDK.USER.9207"},
		{name: "own sign-in: a stray token", config: ownSignIn(""), header: auth(good), body: update("new@example.com", "123456"), status: 403, code: "IDAAS.SDK.USER.9207"},
		{name: "own sign-in: session too old", config: func(c *selfservice.Config) { ownSignIn("alice")(c); stepUp(c) }, body: update("new@example.com", "123456"), status: 403, code: "IDAAS.SDK.USER.9208"},
		{name: "own sign-in: signed in", config: ownSignIn("alice"), body: update(" ALICE@example.com ", "999999"), status: 200},
		{name: "recent sign-in", config: stepUp, header: auth(signedInAt(t, time.Now().Add(-time.Minute))), body: update(" ALICE@example.com ", "999999"), status: 200},
		{name: "wrong-code budget spent", setup: func(t *testing.T, f *fixture) {
			for range 10 {
				f.update(t, good, "en", "elsewhere@example.com", "000000")
			}
		}, header: auth(good), body: update("new@example.com", "123456"), status: 429, code: "IDAAS.SDK.CAPTCHA.9205"},
		{name: "client id repeated", header: headers(auth(good), func(h http.Header) { h.Add("X-client-id", "client-2") }), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.REQ.9105"},
		{name: "Authorization repeated", header: headers(auth(good), func(h http.Header) { h.Add("Authorization", "Bearer "+good) }), body: update("new@example.com", "123456"), status: 400, code: "IDAAS.SDK.REQ.9105"},
		{name: "method not POST", method: http.MethodGet, header: auth(good), status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "user store down", setup: func(t *testing.T, f *fixture) { f.fusers.fail(errors.New("dial tcp: connection refused")) }, header: auth(good), body: update("new@example.com", "123456"), status: 500, code: "IDAAS.SDK.SYS.9001"},
		{name: "change budget spent", setup: func(t *testing.T, f *fixture) {
			for i := range 5 {
				f.changeTo(t, good, fmt.Sprintf("alice%d@example.com", i))
			}
		}, bodyFor: withCode("new@example.com", "new@example.com"), header: auth(good), status: 429, code: "IDAAS.SDK.USER.9206"},
		{name: "changes locked after an undo", setup: func(t *testing.T, f *fixture) {
			if r := f.revert(t, strings.TrimSuffix(strings.TrimPrefix(undoOf(t, f), `{"revert_token":"`), `"}`)); r.Status != http.StatusOK {
				t.Fatalf("undo: %s", r.Raw)
			}
		}, bodyFor: withCode("new@example.com", "new@example.com"), header: auth(good), status: 403, code: "IDAAS.SDK.REVERT.9305"},

		// revert-email
		{name: "revert: device headers missing", path: selfservice.RevertEmailPath, header: del("X-agent"), body: revert("x"), status: 400, code: "IDAAS.SDK.PARAM.0001"},
		{name: "revert: client id empty", path: selfservice.RevertEmailPath, header: del("X-client-id"), body: revert("x"), status: 400, code: "IDAAS.SDK.PARAM.0002"},
		{name: "revert: client not registered", path: selfservice.RevertEmailPath, header: set("X-client-id", "nobody"), body: revert("x"), status: 400, code: "IDAAS.SDK.PARAM.0003"},
		{name: "revert: body not JSON", path: selfservice.RevertEmailPath, body: `revert_token=x`, status: 400, code: "IDAAS.SDK.REQ.9104"},
		{name: "revert: unknown field", path: selfservice.RevertEmailPath, body: `{"token":"x"}`, status: 400, code: "IDAAS.SDK.REQ.9104"},
		{name: "revert: token empty", path: selfservice.RevertEmailPath, body: revert(" "), status: 400, code: "IDAAS.SDK.REVERT.9301"},
		{name: "revert: token malformed", path: selfservice.RevertEmailPath, body: revert("not-a-token"), status: 400, code: "IDAAS.SDK.REVERT.9302"},
		{name: "revert: token unknown", path: selfservice.RevertEmailPath, body: revert(strings.Repeat("A", 43)), status: 400, code: "IDAAS.SDK.REVERT.9302"},
		{name: "revert: token used", path: selfservice.RevertEmailPath, bodyFor: func(t *testing.T, f *fixture) string {
			body := undoOf(t, f)
			if r := f.do(t, http.MethodPost, selfservice.RevertEmailPath, baseHeaders("en"), body); r.Status != http.StatusOK {
				t.Fatalf("first undo: %s", r.Raw)
			}
			return body
		}, status: 400, code: "IDAAS.SDK.REVERT.9302"},
		{name: "revert: old address taken", path: selfservice.RevertEmailPath, bodyFor: func(t *testing.T, f *fixture) string {
			body := undoOf(t, f)
			f.changeTo(t, token(t, "bob", nil), "alice@example.com")
			return body
		}, status: 409, code: "IDAAS.SDK.REVERT.9303"},
		{name: "revert: budget spent", path: selfservice.RevertEmailPath, setup: func(t *testing.T, f *fixture) {
			for range 20 {
				f.revert(t, "not-a-token")
			}
			// A well-formed token that is not live: a live one would
			// still work (TestRevertLiveTokenPastBudget).
		}, body: `{"revert_token":"` + strings.Repeat("A", 43) + `"}`, status: 429, code: "IDAAS.SDK.REVERT.9304"},
		{name: "revert: store down", path: selfservice.RevertEmailPath, bodyFor: func(t *testing.T, f *fixture) string {
			body := undoOf(t, f)
			f.fusers.fail(errors.New("dial tcp: connection refused"))
			return body
		}, status: 500, code: "IDAAS.SDK.SYS.9001"},
		{name: "revert: method not POST", path: selfservice.RevertEmailPath, method: http.MethodGet, status: 405, code: "IDAAS.SDK.REQ.9101"},
		{name: "revert: undone", path: selfservice.RevertEmailPath, bodyFor: undoOf, status: 200},

		// send-code
		{name: "send: device headers missing", path: selfservice.SendCodePath, header: del("X-device-fingerprint"), body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 400, code: "IDAAS.SDK.PARAM.0001"},
		{name: "send: client id empty", path: selfservice.SendCodePath, header: set("X-client-id", " "), body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 400, code: "IDAAS.SDK.PARAM.0002"},
		{name: "send: client not registered", path: selfservice.SendCodePath, header: set("X-client-id", "nobody"), body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 400, code: "IDAAS.SDK.PARAM.0003"},
		{name: "send: type unsupported", path: selfservice.SendCodePath, body: send("new@example.com", "REGISTER_EMS", "ok"), status: 400, code: "IDAAS.SDK.PARAM.9203"},
		{name: "send: email malformed", path: selfservice.SendCodePath, body: send("Alice <a@example.com>", "UPDATE_EMAIL_EMS", "ok"), status: 400, code: "IDAAS.SDK.USER.0021"},
		{name: "send: captcha empty", path: selfservice.SendCodePath, body: send("new@example.com", "UPDATE_EMAIL_EMS", ""), status: 400, code: "IDAAS.SDK.CAPTCHA.9202"},
		{name: "send: captcha rejected", path: selfservice.SendCodePath, setup: func(t *testing.T, f *fixture) {
			f.captcha.set(fmt.Errorf("score 0.1: %w", selfservice.ErrCaptchaRejected))
		}, body: send("new@example.com", "UPDATE_EMAIL_EMS", "bot"), status: 400, code: "IDAAS.SDK.CAPTCHA.9202"},
		{name: "send: captcha service down", path: selfservice.SendCodePath, setup: func(t *testing.T, f *fixture) { f.captcha.set(errors.New("captcha: timeout")) }, body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 500, code: "IDAAS.SDK.SYS.9001"},
		{name: "send: IP budget spent", path: selfservice.SendCodePath, setup: func(t *testing.T, f *fixture) {
			for i := range 30 {
				f.sendCode(t, fmt.Sprintf("n%d@example.com", i))
			}
		}, body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 429, code: "IDAAS.SDK.CAPTCHA.9201"},
		{name: "send: too often", path: selfservice.SendCodePath, setup: sendFirst("new@example.com"), body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 429, code: "IDAAS.SDK.CAPTCHA.9201"},
		{name: "send: mailer down", path: selfservice.SendCodePath, setup: func(t *testing.T, f *fixture) { f.mail.fail(errors.New("smtp: 451")) }, body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 500, code: "IDAAS.SDK.CAPTCHA.0006"},
		{name: "send: code store down", path: selfservice.SendCodePath, setup: func(t *testing.T, f *fixture) { f.codes.fail(errors.New("redis: i/o timeout")) }, body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 500, code: "IDAAS.SDK.SYS.9001"},
		{name: "send: sent", path: selfservice.SendCodePath, body: send("new@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 200},
		{name: "send: sent to a registered address", path: selfservice.SendCodePath, body: send("bob@example.com", "UPDATE_EMAIL_EMS", "ok"), status: 200},
	}
	seen := map[string]bool{}
	for _, lang := range []string{"en", "zh"} {
		for _, tc := range cases {
			t.Run(lang+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFixtureWith(t, tc.config, mustUser(t, "alice", "alice@example.com"), mustUser(t, "bob", "bob@example.com"))
				if tc.setup != nil {
					tc.setup(t, f)
				}
				body := tc.body
				if tc.bodyFor != nil {
					body = tc.bodyFor(t, f)
				}
				h := baseHeaders(lang)
				if tc.header != nil {
					tc.header(h)
				}
				method, path := tc.method, tc.path
				if method == "" {
					method = http.MethodPost
				}
				if path == "" {
					path = selfservice.UpdateEmailPath
				}
				got := f.do(t, method, path, h, body)
				if got.Status != tc.status || got.Code != tc.code {
					t.Fatalf("got %d %q, want %d %q (body %s)", got.Status, got.Code, tc.status, tc.code, got.Raw)
				}
				if got.Header.Get("Content-Language") != lang {
					t.Errorf("Content-Language = %q, want %q", got.Header.Get("Content-Language"), lang)
				}
				if ct := got.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				if tc.code == "" {
					if got.Raw != "" {
						t.Errorf("success body = %q, want none", got.Raw)
					}
					return
				}
				if tc.status == http.StatusTooManyRequests {
					if s, err := strconv.Atoi(got.Header.Get("Retry-After")); err != nil || s <= 0 {
						t.Errorf("Retry-After = %q, want whole positive seconds", got.Header.Get("Retry-After"))
					}
				}
				if tc.status == http.StatusUnauthorized && !strings.Contains(got.Header.Get("WWW-Authenticate"), `error="insufficient_user_authentication"`) {
					t.Errorf("WWW-Authenticate = %q", got.Header.Get("WWW-Authenticate"))
				}
				want := messages[tc.code][0]
				if lang == "zh" {
					want = messages[tc.code][1]
				}
				if got.Msg != want {
					t.Errorf("error_msg = %q, want %q", got.Msg, want)
				}
			})
		}
	}
	for _, tc := range cases {
		seen[tc.code] = true
	}
	for _, c := range i18n.Codes() {
		if _, ok := messages[string(c)]; !ok {
			t.Errorf("the catalog's %s has no expected messages here", c)
		}
	}
	for code := range messages {
		if !seen[code] {
			t.Errorf("no case answers %s", code)
		}
	}
}
