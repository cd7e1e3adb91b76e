package mail_test

import (
	"errors"
	"slices"
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
		"smtp://h?revert_url=https%3A%2F%2Fapp.example.com%2Fundo%3Fa%3D1",
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

// No value shown in a mail can add markup to its HTML, and the undo link
// carries any token intact: the href, read as the undo page reads it,
// gives back the token, and the text part holds the same link.
func FuzzRenderHTML(f *testing.F) {
	m := linkMailer(f, testRevertURL)
	tags := make(map[bool]map[bool]int) // every language, token -> '<' in the HTML
	for _, every := range []bool{false, true} {
		tags[every] = make(map[bool]int)
		for _, token := range []string{"", "t"} {
			msg := fuzzNotice(every, "n***@example.com", token)
			c, err := m.Render(msg)
			if err != nil {
				f.Fatal(err)
			}
			tags[every][token != ""] = strings.Count(c.HTML, "<")
		}
	}
	for _, s := range []struct {
		value, token string
		every        bool
	}{
		{"n***@example.com", "", false},
		{"<script>alert(1)</script>", "rKQ7XNW3M4YJZ6QHC2FVN5BDTG", false},
		{`"><img src=x onerror=alert(1)>`, `"><img src=x onerror=alert(1)>`, true},
		{"{{.Code}}", "{{.UndoURL}}", true},
		{"\x00\xff", "a+b/c==%41#?&", false},
		{"n***@example.com", "javascript:alert(1)", true},
	} {
		f.Add(s.value, s.token, s.every)
	}
	f.Fuzz(func(t *testing.T, value, token string, every bool) {
		if value == "" {
			return
		}
		c, err := m.Render(fuzzNotice(every, value, token))
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		if n, want := strings.Count(c.HTML, "<"), tags[every][token != ""]; n != want {
			t.Fatalf("value %q, token %q changed the HTML's markup: %d '<', want %d", value, token, n, want)
		}
		links, _ := anchors(t, c.HTML)
		sections := 1
		if every {
			sections = 2
		}
		if token == "" {
			sections = 0
		}
		if len(links) != sections {
			t.Fatalf("%d HTML links, want %d", len(links), sections)
		}
		for _, a := range links {
			if got := linkToken(t, a.href, testRevertURL); got != token {
				t.Fatalf("link %q carries %q, want %q", a.href, got, token)
			}
			if !slices.Contains(strings.Split(c.Text, "\n"), a.href) {
				t.Fatalf("the text part lacks the line %q:\n%s", a.href, c.Text)
			}
		}
	})
}

func fuzzNotice(every bool, value, token string) selfservice.Message {
	lang := language.English
	if every {
		lang = language.Und
	}
	msg := tokenNotice(lang, token)
	msg.NewEmail = value
	return msg
}
