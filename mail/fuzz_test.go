package mail_test

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/mail"
)

// ParseURL reads flags and environment variables: it never panics, and
// what it accepts names a host and a port in range.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"smtp://127.0.0.1:1025",
		"smtps://u:p%40ss@smtp.example.com:465?from=a@example.com&from_name=A+B&timeout=5s",
		"smtp://[::1]:25?tls=required",
		"smtp://h?from=a%0D%0ABcc:%20x@example.com",
		"smtp://user:pass@host:99999",
		"smtp:opaque",
		"smtps://h?tls=none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opts, err := mail.ParseURL(raw)
		if err != nil {
			if !errors.Is(err, selfservice.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if opts.Host == "" || opts.Port < 0 || opts.Port > 65535 || opts.From == "" {
			t.Fatalf("ParseURL(%q) accepted %+v", raw, opts)
		}
	})
}

// No value shown in a mail can add markup to its HTML.
func FuzzRenderHTML(f *testing.F) {
	base, err := mail.Render(nil, noticeMsg(language.English))
	if err != nil {
		f.Fatal(err)
	}
	tags := strings.Count(base.HTML, "<")
	for _, s := range []string{"n***@example.com", "<script>alert(1)</script>", `"><img src=x onerror=alert(1)>`, "{{.Code}}", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		msg := noticeMsg(language.English)
		msg.NewEmail = value
		if value == "" {
			return
		}
		c, err := mail.Render(nil, msg)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		if n := strings.Count(c.HTML, "<"); n != tags {
			t.Fatalf("value %q changed the HTML's markup: %d '<', want %d", value, n, tags)
		}
	})
}
