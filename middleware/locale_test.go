package middleware_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/handlertest"
	"github.com/ciamkit/selfservice/middleware"
)

func TestLocalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		xl, acceptLang string
		want           language.Tag
	}{
		{"no language header", "", "", language.English},
		{"X-L zh", "zh", "", language.Chinese},
		{"X-L zh_CN", "zh_CN", "", language.Chinese},
		{"X-L en-US over Accept-Language zh", "en-US", "zh", language.English},
		{"Accept-Language zh-CN", "", "zh-CN,zh;q=0.9", language.Chinese},
		{"X-L unsupported, Accept-Language zh", "fr", "zh", language.Chinese},
		{"nothing supported", "fr", "de", language.English},
		// Several lines are one list (RFC 9110 section 5.3).
		{"Accept-Language on two lines", "", "fr\nzh", language.Chinese},
	}
	h := middleware.Localize(i18n.Default())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			hdr := http.Header{}
			if tt.xl != "" {
				hdr.Set("X-L", tt.xl)
			}
			if tt.acceptLang != "" {
				for line := range strings.SplitSeq(tt.acceptLang, "\n") {
					hdr.Add("Accept-Language", line)
				}
			}
			w := handlertest.Serve(h(next), handlertest.NewRequest(hdr))
			handlertest.AssertPassed(t, w, next)
			if got := w.Header().Get("Content-Language"); got != tt.want.String() {
				t.Errorf("Content-Language = %q, want %q", got, tt.want)
			}
			ctx := next.Context(t)
			loc := middleware.LocaleFromContext(ctx)
			if loc == nil || loc.Tag() != tt.want {
				t.Fatalf("LocaleFromContext = %v, want %v", loc, tt.want)
			}
			if loc.Localizer() == nil {
				t.Error("the chosen locale has no localizer")
			}
		})
	}
}

// Localize on its own: a handler behind it answers errors in the request's
// language through WriteError.
func TestLocalizeStandalone(t *testing.T) {
	t.Parallel()
	h := middleware.Localize(i18n.Default())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		middleware.WriteError(w, r, i18n.CodeTokenInvalid)
	}))
	tests := []struct {
		name, xl, msg string
	}{
		{"English", "en", handlertest.MsgTokenInvalid},
		{"Chinese", "zh-Hans", handlertest.MsgTokenInvalidZH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := handlertest.Serve(h, handlertest.NewRequest(http.Header{"X-L": {tt.xl}}))
			handlertest.AssertError(t, w, nil, http.StatusBadRequest, handlertest.CodeTokenInvalid, tt.msg)
		})
	}
}

func TestLocalizeWithOwnBundle(t *testing.T) {
	t.Parallel()
	b, err := i18n.NewBundle(i18n.Options{Default: language.Chinese})
	if err != nil {
		t.Fatal(err)
	}
	next := &handlertest.Recorder{}
	w := handlertest.Serve(middleware.Localize(b)(next), handlertest.NewRequest(http.Header{"X-L": {"fr"}}))
	handlertest.AssertPassed(t, w, next)
	if got := w.Header().Get("Content-Language"); got != "zh" {
		t.Errorf("Content-Language = %q, want the bundle's default zh", got)
	}
}

func TestLocalizePanicsOnNilBundle(t *testing.T) {
	t.Parallel()
	handlertest.AssertPanics(t, "Localize(nil)", func() { middleware.Localize(nil) })
}

func TestGettersOnEmptyContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if middleware.LocaleFromContext(ctx) != nil {
		t.Error("LocaleFromContext is not nil")
	}
	if d, ok := middleware.DeviceFromContext(ctx); ok || d != (middleware.Device{}) {
		t.Errorf("DeviceFromContext = %v, %v; want zero, false", d, ok)
	}
	if c, ok := middleware.ClientFromContext(ctx); ok || c.ID != "" {
		t.Errorf("ClientFromContext = %v, %v; want zero, false", c, ok)
	}
	if _, ok := middleware.IdentityFromContext(ctx); ok {
		t.Error("IdentityFromContext found an identity")
	}
}

// TestLocalizeRepeatedXL: two X-L values are refused, in the bundle's
// default language, never resolved to one of them (issue 10, 5).
func TestLocalizeRepeatedXL(t *testing.T) {
	t.Parallel()
	zhDefault, err := i18n.NewBundle(i18n.Options{Default: language.Chinese})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		bundle   *i18n.Bundle
		xl       []string
		wantLang string
		msg      string
	}{
		{"two languages", i18n.Default(), []string{"zh", "en"}, "en", handlertest.MsgHeaderRepeated},
		{"the same language twice", i18n.Default(), []string{"zh", "zh"}, "en", handlertest.MsgHeaderRepeated},
		{"one of them empty", i18n.Default(), []string{"", "zh"}, "en", handlertest.MsgHeaderRepeated},
		{"bundle with Chinese as its default", zhDefault, []string{"en", "en"}, "zh", handlertest.MsgHeaderRepeatedZH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &handlertest.Recorder{}
			w := handlertest.Serve(middleware.Localize(tt.bundle)(next), handlertest.NewRequest(http.Header{"X-L": tt.xl, "Accept-Language": {"zh"}}))
			handlertest.AssertError(t, w, next, http.StatusBadRequest, handlertest.CodeHeaderRepeated, tt.msg)
			if got := w.Header().Get("Content-Language"); got != tt.wantLang {
				t.Errorf("Content-Language = %q, want %q", got, tt.wantLang)
			}
		})
	}
}
