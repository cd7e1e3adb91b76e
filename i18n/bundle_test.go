package i18n_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/locales"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("zh-", 1000) + "CN"
	tests := []struct {
		name, xl, acceptLanguage string
		want                     language.Tag
	}{
		{"X-L zh", "zh", "", language.Chinese},
		{"X-L zh-CN", "zh-CN", "", language.Chinese},
		{"X-L zh-Hans", "zh-Hans", "", language.Chinese},
		{"X-L underscore zh_CN", "zh_CN", "", language.Chinese},
		{"X-L upper case ZH", "ZH", "", language.Chinese},
		{"X-L mixed case Zh-cn", "Zh-cn", "", language.Chinese},
		{"X-L padded", "  zh-CN ", "", language.Chinese},
		// Traditional Chinese readers get the (Simplified) Chinese messages
		// rather than English: the closest the bundle has.
		{"X-L zh-TW", "zh-TW", "", language.Chinese},
		{"X-L zh-Hant", "zh-Hant", "", language.Chinese},
		{"X-L en", "en", "", language.English},
		{"X-L en-US", "en-US", "", language.English},
		{"X-L en_GB", "en_GB", "", language.English},
		{"X-L EN", "EN", "", language.English},
		{"X-L wins over Accept-Language", "en", "zh-CN,zh;q=0.9", language.English},
		{"X-L zh wins over Accept-Language en", "zh", "en", language.Chinese},
		{"X-L garbage falls back to default", "!!garbage!!", "", language.English},
		{"X-L garbage falls back to Accept-Language", "!!garbage!!", "zh", language.Chinese},
		{"X-L empty falls back to default", "", "", language.English},
		{"X-L empty falls back to Accept-Language", "", "zh", language.Chinese},
		{"X-L very long falls back to default", long, "", language.English},
		{"X-L very long falls back to Accept-Language", long, "zh", language.Chinese},
		{"X-L fr falls back to default", "fr", "", language.English},
		{"X-L fr falls back to Accept-Language zh", "fr", "zh", language.Chinese},
		{"X-L fr falls back to Accept-Language fr, then default", "fr", "fr", language.English},
		{"X-L control characters", "zh\x00\n", "", language.English},
		{"Accept-Language zh-CN,zh;q=0.9", "", "zh-CN,zh;q=0.9", language.Chinese},
		{"Accept-Language fr, en;q=0.5", "", "fr, en;q=0.5", language.English},
		{"Accept-Language fr, zh;q=0.5", "", "fr, zh;q=0.5", language.Chinese},
		{"Accept-Language weights order", "", "en;q=0.1, zh;q=0.9", language.Chinese},
		{"Accept-Language fr only", "", "fr", language.English},
		{"Accept-Language refuses zh with q=0", "", "zh;q=0", language.English},
		{"Accept-Language refuses en with q=0", "", "en;q=0, zh;q=0.1", language.Chinese},
		{"Accept-Language wildcard", "", "*", language.English},
		{"Accept-Language malformed", "", "zh;q=abc,,;;", language.English},
		{"Accept-Language malformed weights", "", ";q=1", language.English},
		{"Accept-Language binary", "", "\xff\xfe\x00", language.English},
		{"Accept-Language very long is read to its first kilobyte", "", strings.Repeat("zh-CN,", 500) + "zh", language.Chinese},
		{"Accept-Language past its first kilobyte is not read", "", strings.Repeat("fr,", 400) + "zh", language.English},
		{"Accept-Language past 32 ranges is not read", "", strings.Repeat("fr,", 32) + "zh", language.English},
		{"Accept-Language lines joined", "", "fr,zh", language.Chinese},
		{"Accept-Language bad range skipped", "", "zh;q=0.9, en;q=abc", language.Chinese},
		{"Accept-Language weights order the ranges", "", "en;q=0.1, fr, zh;q=0.5", language.Chinese},
		{"Accept-Language weight 0 refuses", "", "zh;q=0, en;q=0.1", language.English},
		{"Accept-Language browser list", "", "zh-CN,zh;q=0.9,en-US;q=0.1," + strings.Repeat("de;q=0.05,", 30), language.Chinese},
	}
	b := i18n.Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loc := b.Match(tt.xl, tt.acceptLanguage)
			if loc == nil {
				t.Fatal("Match returned nil")
			}
			if loc.Tag() != tt.want {
				t.Errorf("Match(%.40q, %.40q) = %v, want %v", tt.xl, tt.acceptLanguage, loc.Tag(), tt.want)
			}
			if got := loc.ContentLanguage(); len(got) != 1 || got[0] != tt.want.String() {
				t.Errorf("ContentLanguage() = %q, want [%q]", got, tt.want.String())
			}
		})
	}
}

func TestLocales(t *testing.T) {
	t.Parallel()
	b := i18n.Default()
	var got []language.Tag
	for _, l := range b.Locales() {
		got = append(got, l.Tag())
	}
	if want := []language.Tag{language.English, language.Chinese}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Locales() = %v, want %v", got, want)
	}
	if b.DefaultLocale().Tag() != language.English {
		t.Errorf("DefaultLocale() = %v, want en", b.DefaultLocale().Tag())
	}
	// The slice is the caller's: reordering it changes no answer.
	mine := b.Locales()
	mine[0], mine[1] = mine[1], mine[0]
	if b.DefaultLocale().Tag() != language.English || b.Match("", "en").Tag() != language.English {
		t.Errorf("after reordering Locales(): default %v, Match(en) %v, want en", b.DefaultLocale().Tag(), b.Match("", "en").Tag())
	}
	if i18n.Default() != b {
		t.Error("Default() returns a new bundle on each call")
	}
}

// fullFiles returns a MapFS holding copies of the embedded message files.
func fullFiles(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	for _, name := range []string{"active.en.json", "active.zh.json"} {
		raw, err := fs.ReadFile(locales.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = &fstest.MapFile{Data: raw}
	}
	return m
}

// withoutMessage returns file with message id removed.
func withoutMessage(t *testing.T, file []byte, id string) []byte {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(file, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m[id]; !ok {
		t.Fatalf("file has no %s to remove", id)
	}
	delete(m, id)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withMessage returns file with message id set to text.
func withMessage(t *testing.T, file []byte, id, text string) []byte {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(file, &m); err != nil {
		t.Fatal(err)
	}
	m[id] = text
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNewBundle(t *testing.T) {
	t.Parallel()
	full := fullFiles(t)
	frMissing := fstest.MapFS{
		"active.en.json": full["active.en.json"],
		"active.fr.json": {Data: []byte(`{"IDAAS.SDK.PARAM.0001": "Informations sur l'appareil incomplètes"}`)},
	}
	zhMissing := fstest.MapFS{
		"active.en.json": full["active.en.json"],
		"active.zh.json": {Data: withoutMessage(t, full["active.zh.json"].Data, "IDAAS.SDK.USER.0036")},
	}
	zhMissingMail := fstest.MapFS{
		"active.en.json": full["active.en.json"],
		"active.zh.json": {Data: withoutMessage(t, full["active.zh.json"].Data, "MAIL.CODE.EXPIRY")},
	}
	zhBrokenMail := fstest.MapFS{
		"active.en.json": full["active.en.json"],
		"active.zh.json": {Data: withMessage(t, full["active.zh.json"].Data, "MAIL.CODE.EXPIRY", "验证码 {{.Minutes 分钟内有效")},
	}

	tests := []struct {
		name    string
		opts    i18n.Options
		wantErr bool
		want    language.Tag // DefaultLocale when there is no error
	}{
		{"embedded files by default", i18n.Options{}, false, language.English},
		{"same files from a MapFS", i18n.Options{Files: full}, false, language.English},
		{"Chinese as default", i18n.Options{Files: full, Default: language.Chinese}, false, language.Chinese},
		{"Chinese translation missing one code", i18n.Options{Files: zhMissing}, true, language.Und},
		{"Chinese translation missing one mail message", i18n.Options{Files: zhMissingMail}, true, language.Und},
		{"Chinese mail message not a template", i18n.Options{Files: zhBrokenMail}, true, language.Und},
		{"added language missing codes", i18n.Options{Files: frMissing}, true, language.Und},
		{"default language not loaded", i18n.Options{Files: full, Default: language.French}, true, language.Und},
		{"default region not loaded", i18n.Options{Files: full, Default: language.MustParse("zh-TW")}, true, language.Und},
		{"no message files", i18n.Options{Files: fstest.MapFS{"README": {Data: []byte("x")}}}, true, language.Und},
		{"message file not JSON", i18n.Options{Files: fstest.MapFS{
			"active.en.json": full["active.en.json"],
			"active.zh.json": {Data: []byte(`{"IDAAS.SDK.PARAM.0001": `)},
		}}, true, language.Und},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := i18n.NewBundle(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewBundle succeeded, want an error")
				}
				if !errors.Is(err, configerr.Err) {
					t.Errorf("error %v does not wrap ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewBundle: %v", err)
			}
			if got := b.DefaultLocale().Tag(); got != tt.want {
				t.Errorf("DefaultLocale() = %v, want %v", got, tt.want)
			}
			if got := b.Match("", "").Tag(); got != tt.want {
				t.Errorf("Match with no language = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewBundleErrorNamesTheGap(t *testing.T) {
	t.Parallel()
	full := fullFiles(t)
	files := fstest.MapFS{
		"active.en.json": full["active.en.json"],
		"active.zh.json": {Data: withoutMessage(t, full["active.zh.json"].Data, "IDAAS.SDK.PARAM.0016")},
	}
	_, err := i18n.NewBundle(i18n.Options{Files: files})
	if err == nil || !strings.Contains(err.Error(), "IDAAS.SDK.PARAM.0016") || !strings.Contains(err.Error(), "zh") {
		t.Errorf("NewBundle error = %v, want one naming zh and IDAAS.SDK.PARAM.0016", err)
	}
	files["active.zh.json"] = &fstest.MapFile{Data: withoutMessage(t, full["active.zh.json"].Data, "MAIL.CHANGED.BODY")}
	_, err = i18n.NewBundle(i18n.Options{Files: files})
	if err == nil || !strings.Contains(err.Error(), "MAIL.CHANGED.BODY") || !strings.Contains(err.Error(), "zh") {
		t.Errorf("NewBundle error = %v, want one naming zh and MAIL.CHANGED.BODY", err)
	}
}

func TestNewBundleWithThirdLanguage(t *testing.T) {
	t.Parallel()
	full := fullFiles(t)
	fr := make(map[string]string)
	for _, c := range i18n.Codes() {
		fr[string(c)] = "fr " + string(c)
	}
	for _, m := range i18n.MailMessages() {
		fr[m.ID] = "fr " + m.ID
	}
	raw, err := json.Marshal(fr)
	if err != nil {
		t.Fatal(err)
	}
	full["active.fr.json"] = &fstest.MapFile{Data: raw}
	b, err := i18n.NewBundle(i18n.Options{Files: full})
	if err != nil {
		t.Fatalf("NewBundle: %v", err)
	}
	loc := b.Match("fr-CA", "")
	if loc.Tag() != language.French {
		t.Fatalf("Match(fr-CA) = %v, want fr", loc.Tag())
	}
	assertBody(t, loc.ErrorBody(i18n.CodeUserNotFound), "IDAAS.SDK.USER.0001", "fr IDAAS.SDK.USER.0001")
}

// assertBody checks that body is exactly {"error_code": code, "error_msg": msg}.
func assertBody(t *testing.T, body []byte, code, msg string) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("body is not valid JSON: %q", body)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("body is not a JSON object: %q", body)
	}
	if len(fields) != 2 {
		t.Errorf("body has fields %v, want exactly error_code and error_msg", fields)
	}
	if got, _ := fields["error_code"].(string); got != code {
		t.Errorf("error_code = %q, want %q", fields["error_code"], code)
	}
	if got, _ := fields["error_msg"].(string); got != msg {
		t.Errorf("error_msg = %q, want %q", fields["error_msg"], msg)
	}
}

func TestErrorBody(t *testing.T) {
	t.Parallel()
	b := i18n.Default()
	en, zh := b.Match("en", ""), b.Match("zh", "")
	custom := i18n.Code("ACME.0001")
	quoted := i18n.Code(`ACME."<0002>"`)

	tests := []struct {
		name     string
		loc      *i18n.Locale
		err      i18n.Code
		code     string
		msg      string
		wantSame bool // the catalog's pre-rendered body, byte for byte
	}{
		{"seed code in English", en, i18n.CodeTokenInvalid, "IDAAS.SDK.PARAM.0016", "IdToken is invalid or expired", true},
		{"seed code in Chinese", zh, i18n.CodeTokenInvalid, "IDAAS.SDK.PARAM.0016", "IdToken无效或已过期", true},
		{"own code in English", en, i18n.CodeInternal, "IDAAS.SDK.SYS.9001", "System busy, please try again later", true},
		{"own code in Chinese", zh, i18n.CodeInternal, "IDAAS.SDK.SYS.9001", "系统繁忙,请稍后重试", true},
		{"integrator code falls back to the code", en, custom, "ACME.0001", "ACME.0001", false},
		{"integrator code with JSON specials", zh, quoted, `ACME."<0002>"`, `ACME."<0002>"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := tt.loc.ErrorBody(tt.err)
			assertBody(t, body, tt.code, tt.msg)
			if bytes.Contains(body, []byte("secret")) {
				t.Errorf("body %q leaks the cause", body)
			}
			if !bytes.HasSuffix(body, []byte("}\n")) {
				t.Errorf("body %q does not end with a newline", body)
			}
		})
	}
}

func TestErrorBodyEveryCode(t *testing.T) {
	t.Parallel()
	for _, loc := range i18n.Default().Locales() {
		for _, c := range i18n.Codes() {
			body := loc.ErrorBody(c)
			msg := loc.Message(c)
			if msg == "" || msg == string(c) {
				t.Errorf("%v %s: no message", loc.Tag(), c)
			}
			assertBody(t, body, string(c), msg)
		}
	}
}

func TestMessageUnknownID(t *testing.T) {
	t.Parallel()
	if got := i18n.Default().DefaultLocale().Message("NO.SUCH.ID"); got != "" {
		t.Errorf("Message(unknown) = %q, want empty", got)
	}
}
