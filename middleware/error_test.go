package middleware_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

func TestWriteError(t *testing.T) {
	t.Parallel()
	const secret = "pq: password authentication failed for user \"ciam\""
	tests := []struct {
		name   string
		err    error
		xl     string // "": Localize does not run
		status int
		code   string
		msg    string
	}{
		{"catalog error", i18n.CodeEmailExists, "", http.StatusBadRequest, "IDAAS.SDK.USER.0036", "E-mail already exists"},
		{"catalog error in Chinese", i18n.CodeEmailExists, "zh", http.StatusBadRequest, "IDAAS.SDK.USER.0036", "邮箱已存在"},
		{"catalog error with a cause", i18n.Wrap(i18n.CodeUserNotFound, errors.New(secret)), "", http.StatusBadRequest, "IDAAS.SDK.USER.0001", "User not found"},
		{"wrapped catalog error", fmt.Errorf("update email: %w", i18n.CodeVerifyCodeIncorrect), "", http.StatusBadRequest, "IDAAS.SDK.CAPTCHA.0007", "Incorrect verification code"},
		{"catalog error in a join", errors.Join(errors.New(secret), i18n.CodeVerifyCodeEmpty), "zh", http.StatusBadRequest, "IDAAS.SDK.PARAM.0009", "验证码不能为空"},
		{"catalog error of another status", i18n.CodeBodyTooLarge, "", http.StatusRequestEntityTooLarge, "IDAAS.SDK.REQ.9103", "Request body is too large"},
		{"plain Go error", errors.New(secret), "", http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal},
		{"plain Go error in Chinese", errors.New(secret), "zh", http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternalZH},
		{"wrapped Go error", fmt.Errorf("store: %w", errors.New(secret)), "", http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal},
		{"nil error", nil, "", http.StatusInternalServerError, handlertest.CodeInternal, handlertest.MsgInternal},
		{"integrator's own code", i18n.Code("ACME.0001"), "", http.StatusInternalServerError, "ACME.0001", "ACME.0001"},
		{"integrator's own code with a cause", &i18n.Error{Code: "ACME.0002", Err: errors.New(secret)}, "", http.StatusInternalServerError, "ACME.0002", "ACME.0002"},
		{"a 429 with its wait", &i18n.Error{Code: i18n.CodeSendLimited, RetryAfter: 1500 * time.Millisecond}, "", http.StatusTooManyRequests, "IDAAS.SDK.CAPTCHA.9201", "Verification codes are requested too often, please try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				middleware.WriteError(w, r, tt.err)
			})
			hdr := http.Header{}
			if tt.xl != "" {
				h = middleware.Localize(i18n.Default())(h)
				hdr.Set("X-L", tt.xl)
			}
			w := handlertest.Serve(h, handlertest.NewRequest(hdr))
			handlertest.AssertError(t, w, nil, tt.status, tt.code, tt.msg)
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			wantRetry := ""
			if tt.status == http.StatusTooManyRequests {
				wantRetry = "2" // 1.5 s, rounded up to whole seconds
			}
			if got := w.Header().Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, wantRetry)
			}
			for _, leak := range []string{"password", "pq:", "store:", "update email"} {
				if strings.Contains(w.Body.String(), leak) {
					t.Errorf("body %s leaks %q", w.Body, leak)
				}
			}
		})
	}
}
