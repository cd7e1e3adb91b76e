package middleware_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
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
		{"catalog error", i18n.ErrEmailExists, "", http.StatusBadRequest, "IDAAS.SDK.USER.0036", "E-mail already exists"},
		{"catalog error in Chinese", i18n.ErrEmailExists, "zh", http.StatusBadRequest, "IDAAS.SDK.USER.0036", "邮箱已存在"},
		{"catalog error with a cause", i18n.ErrUserNotFound.WithCause(errors.New(secret)), "", http.StatusBadRequest, "IDAAS.SDK.USER.0001", "User not found"},
		{"wrapped catalog error", fmt.Errorf("update email: %w", i18n.ErrCodeIncorrect), "", http.StatusBadRequest, "IDAAS.SDK.CAPTCHA.0007", "Incorrect verification code"},
		{"catalog error in a join", errors.Join(errors.New(secret), i18n.ErrCodeEmpty), "zh", http.StatusBadRequest, "IDAAS.SDK.PARAM.0009", "验证码不能为空"},
		{"catalog error of another status", i18n.ErrBodyTooLarge, "", http.StatusRequestEntityTooLarge, "IDAAS.SDK.REQ.9103", "Request body is too large"},
		{"plain Go error", errors.New(secret), "", http.StatusInternalServerError, codeInternal, msgInternal},
		{"plain Go error in Chinese", errors.New(secret), "zh", http.StatusInternalServerError, codeInternal, msgInternalZH},
		{"wrapped Go error", fmt.Errorf("store: %w", errors.New(secret)), "", http.StatusInternalServerError, codeInternal, msgInternal},
		{"nil error", nil, "", http.StatusInternalServerError, codeInternal, msgInternal},
		{"integrator's own code", &i18n.Error{Code: "ACME.0001", Status: http.StatusConflict}, "", http.StatusConflict, "ACME.0001", "ACME.0001"},
		{"integrator's code without a status", &i18n.Error{Code: "ACME.0002"}, "", http.StatusInternalServerError, "ACME.0002", "ACME.0002"},
		{"integrator's code with a success status", &i18n.Error{Code: "ACME.0003", Status: http.StatusOK}, "", http.StatusInternalServerError, "ACME.0003", "ACME.0003"},
		{"integrator's code with an impossible status", &i18n.Error{Code: "ACME.0004", Status: 1000}, "", http.StatusInternalServerError, "ACME.0004", "ACME.0004"},
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
			w := serve(h, newRequest(hdr))
			assertError(t, w, nil, tt.status, tt.code, tt.msg)
			for _, leak := range []string{"password", "pq:", "store:", "update email"} {
				if strings.Contains(w.Body.String(), leak) {
					t.Errorf("body %s leaks %q", w.Body, leak)
				}
			}
		})
	}
}
