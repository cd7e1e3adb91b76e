package mail_test

import (
	"encoding/json"
	"errors"
	"html"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
	"unicode"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/locales"
	"github.com/ciamkit/selfservice/mail"
)

var changedAt = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func codeMsg(lang language.Tag) selfservice.Message {
	return selfservice.Message{
		Kind: selfservice.MailCode, Purpose: selfservice.PurposeUpdateEmail, To: "new.address@example.com", Language: lang,
		Code: "042917", ExpiresIn: 10 * time.Minute,
	}
}

func noticeMsg(lang language.Tag) selfservice.Message {
	return selfservice.Message{
		Kind: selfservice.MailEmailChanged, To: "old.address@example.com", Language: lang,
		NewEmail: "n***@example.com", ChangedAt: changedAt,
	}
}

func hasHan(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.Is(unicode.Han, r) })
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		msg     selfservice.Message
		subject string
		want    []string // in both bodies
		lang    string   // <html lang>
	}{
		{"code in English", codeMsg(language.English), "Confirm your new email address",
			[]string{"042917", "The code expires in 10 min.", "Never share this code"}, "en"},
		{"code in Chinese", codeMsg(language.Chinese), "确认您的新邮箱地址",
			[]string{"042917", "验证码 10 分钟内有效。", "请勿将验证码告诉任何人"}, "zh"},
		{"code in zh-CN", codeMsg(language.SimplifiedChinese), "确认您的新邮箱地址", []string{"042917"}, "zh"},
		{"code in zh-TW gets the closest language", codeMsg(language.MustParse("zh-TW")), "确认您的新邮箱地址", []string{"042917"}, "zh"},
		{"code in French falls back to English", codeMsg(language.French), "Confirm your new email address", []string{"042917"}, "en"},
		{"code without a language is in English", codeMsg(language.Und), "Confirm your new email address", []string{"042917"}, "en"},
		{"notice in English", noticeMsg(language.English), "The email address of your account was changed",
			[]string{"changed to n***@example.com at 2031-05-06 07:08 (UTC+00:00).", "If this was not you, contact support"}, "en"},
		{"notice in Chinese", noticeMsg(language.Chinese), "您账号的邮箱地址已更改",
			[]string{"已于 2031-05-06 07:08 (UTC+00:00) 更改为 n***@example.com。", "请立即联系客服"}, "zh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := mail.Render(i18n.Default(), tt.msg)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if c.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", c.Subject, tt.subject)
			}
			for _, w := range tt.want {
				if !strings.Contains(c.Text, w) {
					t.Errorf("Text lacks %q:\n%s", w, c.Text)
				}
				// html/template escapes more than it must (+ is &#43;).
				if !strings.Contains(html.UnescapeString(c.HTML), w) {
					t.Errorf("HTML lacks %q:\n%s", w, c.HTML)
				}
			}
			if zh := tt.lang == "zh"; hasHan(c.Subject+c.Text+c.HTML) != zh {
				t.Errorf("Chinese characters present = %v, want %v", !zh, zh)
			}
			if !strings.Contains(c.HTML, `<html lang="`+tt.lang+`">`) {
				t.Errorf("HTML does not declare lang %q", tt.lang)
			}
			if !strings.HasPrefix(c.HTML, "<!DOCTYPE html>") || !strings.Contains(c.HTML, "<title>"+tt.subject+"</title>") {
				t.Errorf("HTML is not a titled document:\n%s", c.HTML)
			}
			for _, body := range []string{c.Text, c.HTML} {
				if strings.Contains(body, "<no value>") || strings.Contains(body, "MAIL.") {
					t.Errorf("body holds a missing value or a message id:\n%s", body)
				}
			}
			if tt.msg.Kind == selfservice.MailEmailChanged && strings.Contains(c.Text+c.HTML, tt.msg.To) {
				t.Error("notice quotes its own recipient")
			}
		})
	}
}

// Every language of the bundle renders every mail with every piece of
// data: a translation that drops {{.Code}} would send a code mail without
// its code.
func TestRenderEveryLanguageShowsTheData(t *testing.T) {
	t.Parallel()
	for _, loc := range i18n.Default().Locales() {
		code, err := mail.Render(nil, codeMsg(loc.Tag()))
		if err != nil {
			t.Fatalf("%v: %v", loc.Tag(), err)
		}
		notice, err := mail.Render(nil, noticeMsg(loc.Tag()))
		if err != nil {
			t.Fatalf("%v: %v", loc.Tag(), err)
		}
		for _, body := range []string{code.Text, code.HTML} {
			if !strings.Contains(body, "042917") || !strings.Contains(body, "10") {
				t.Errorf("%v: code mail lacks the code or its minutes", loc.Tag())
			}
		}
		for _, body := range []string{notice.Text, notice.HTML} {
			if !strings.Contains(body, "n***@example.com") || !strings.Contains(body, "2031-05-06 07:08") {
				t.Errorf("%v: notice lacks the new address or the time", loc.Tag())
			}
		}
	}
}

func TestRenderMinutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{time.Nanosecond, "expires in 1 min."},
		{time.Minute, "expires in 1 min."},
		{90 * time.Second, "expires in 2 min."},
		{15 * time.Minute, "expires in 15 min."},
		{24 * time.Hour, "expires in 1440 min."},
	}
	for _, tt := range tests {
		msg := codeMsg(language.English)
		msg.ExpiresIn = tt.in
		c, err := mail.Render(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.Text, tt.want) {
			t.Errorf("ExpiresIn %v: text lacks %q", tt.in, tt.want)
		}
	}
}

func TestRenderTimeInItsLocation(t *testing.T) {
	t.Parallel()
	msg := noticeMsg(language.English)
	msg.ChangedAt = changedAt.In(time.FixedZone("", -(3*3600 + 1800)))
	c, err := mail.Render(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "2031-05-06 03:38 (UTC-03:30)"; !strings.Contains(c.Text, want) {
		t.Errorf("text lacks %q:\n%s", want, c.Text)
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	t.Parallel()
	msg := noticeMsg(language.English)
	msg.NewEmail = `<script>alert("x")</script>&@example.com`
	c, err := mail.Render(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.HTML, "<script>") {
		t.Errorf("HTML holds the value unescaped:\n%s", c.HTML)
	}
	if !strings.Contains(c.HTML, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;@example.com") {
		t.Errorf("HTML lacks the escaped value:\n%s", c.HTML)
	}
	if !strings.Contains(c.Text, msg.NewEmail) {
		t.Errorf("text does not show the value as is:\n%s", c.Text)
	}
}

func TestRenderRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*selfservice.Message)
		want error
	}{
		{"unknown kind", func(m *selfservice.Message) { m.Kind = "sms" }, mail.ErrUnknownKind},
		{"empty kind", func(m *selfservice.Message) { m.Kind = "" }, mail.ErrUnknownKind},
		{"code without a code", func(m *selfservice.Message) { m.Code = "" }, mail.ErrIncompleteMessage},
		{"code without expiry", func(m *selfservice.Message) { m.ExpiresIn = 0 }, mail.ErrIncompleteMessage},
		{"code with negative expiry", func(m *selfservice.Message) { m.ExpiresIn = -time.Minute }, mail.ErrIncompleteMessage},
		{"notice without new address", func(m *selfservice.Message) { *m = noticeMsg(language.English); m.NewEmail = "" }, mail.ErrIncompleteMessage},
		{"notice without time", func(m *selfservice.Message) { *m = noticeMsg(language.English); m.ChangedAt = time.Time{} }, mail.ErrIncompleteMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := codeMsg(language.English)
			tt.edit(&msg)
			c, err := mail.Render(nil, msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Render error = %v, want %v", err, tt.want)
			}
			if c != (mail.Content{}) {
				t.Errorf("Render returned content %+v with its error", c)
			}
			if strings.Contains(err.Error(), "042917") || strings.Contains(err.Error(), msg.To) {
				t.Errorf("error %q quotes the code or the address", err)
			}
		})
	}
}

// bundleWith loads the embedded files with the Chinese message id replaced
// by text.
func bundleWith(t *testing.T, id, text string) (*i18n.Bundle, error) {
	t.Helper()
	files := fstest.MapFS{}
	for _, name := range []string{"active.en.json", "active.zh.json"} {
		raw, err := fs.ReadFile(locales.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "active.zh.json" {
			var m map[string]string
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m[id] = text
			if raw, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		files[name] = &fstest.MapFile{Data: raw}
	}
	return i18n.NewBundle(i18n.Options{Files: files})
}

func TestRenderSubjectIsOneLine(t *testing.T) {
	t.Parallel()
	b, err := bundleWith(t, "MAIL.CODE.SUBJECT", "确认\r\nBcc: x@example.com\t 邮箱")
	if err != nil {
		t.Fatal(err)
	}
	c, err := mail.Render(b, codeMsg(language.Chinese))
	if err != nil {
		t.Fatal(err)
	}
	if want := "确认 Bcc: x@example.com 邮箱"; c.Subject != want {
		t.Errorf("Subject = %q, want %q", c.Subject, want)
	}
}

func TestRenderUnknownField(t *testing.T) {
	t.Parallel()
	b, err := bundleWith(t, "MAIL.CODE.EXPIRY", "验证码 {{.Minute}} 分钟内有效。")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mail.Render(b, codeMsg(language.Chinese)); err == nil {
		t.Error("Render succeeded with a text using a field mails do not have")
	}
	if _, err := mail.New(mail.Options{Host: "127.0.0.1", From: "no-reply@example.com", Bundle: b}); !errors.Is(err, selfservice.ErrConfig) {
		t.Errorf("New with that bundle: error %v, want ErrConfig", err)
	}
}

// A mail message no layout uses is a dead text that translators still
// maintain.
func TestEveryMailMessageIsUsed(t *testing.T) {
	t.Parallel()
	var sources strings.Builder
	for _, pattern := range []string{"templates/*.tmpl", "render.go"} {
		names, err := filepath.Glob(pattern)
		if err != nil || len(names) == 0 {
			t.Fatalf("no %s: %v", pattern, err)
		}
		for _, name := range names {
			raw, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			sources.Write(raw)
		}
	}
	for _, m := range i18n.MailMessages() {
		if !strings.Contains(sources.String(), `"`+m.ID+`"`) {
			t.Errorf("no layout uses %s", m.ID)
		}
	}
}

// TestRenderNoticeInALanguageTheBundleLacks: a notice for a user whose
// stored language the bundle does not have is in every language, as one
// with no stored language, not in the default alone.
func TestRenderNoticeInALanguageTheBundleLacks(t *testing.T) {
	t.Parallel()
	every, err := mail.Render(nil, noticeMsg(language.Und))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []language.Tag{language.French, language.MustParse("pt-BR")} {
		c, err := mail.Render(nil, noticeMsg(tag))
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if c.ContentLanguage != every.ContentLanguage || c.Subject != every.Subject {
			t.Errorf("%s: Content-Language %q, subject %q; want every language: %q, %q",
				tag, c.ContentLanguage, c.Subject, every.ContentLanguage, every.Subject)
		}
	}
	if c, _ := mail.Render(nil, noticeMsg(language.MustParse("zh-TW"))); c.ContentLanguage != "zh" {
		t.Errorf("zh-TW: Content-Language %q, want the closest language the bundle has, zh", c.ContentLanguage)
	}
}
