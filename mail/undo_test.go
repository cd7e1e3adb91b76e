package mail_test

import (
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	xhtml "golang.org/x/net/html"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/locales"
	"github.com/ciamkit/selfservice/mail"
)

// testRevertURL is the undo page of the tests: a query of its own, which
// the link must keep.
const testRevertURL = "https://app.example.com/account/undo-email?from=mail&v=2"

// testToken is an undo token with the characters a link must escape.
const testToken = "Rv7+tok/en=_-~%41"

func tokenNotice(lang language.Tag, token string) selfservice.Message {
	msg := noticeMsg(lang)
	msg.RevertToken = token
	return msg
}

// linkMailer returns a mailer (never connected) whose undo page is
// revertURL.
func linkMailer(t testing.TB, revertURL string) *mail.SMTPMailer {
	t.Helper()
	m, err := mail.New(mail.Options{Host: "127.0.0.1", From: "no-reply@example.com", RevertURL: revertURL})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// anchor is an <a> of a mail's HTML as a client sees it: the href and the
// text, entities decoded.
type anchor struct{ href, text string }

// anchors parses body as a browser or a mail client does and returns its
// links and the lang of every element that has one, in document order.
func anchors(t testing.TB, body string) (links []anchor, langs []string) {
	t.Helper()
	doc, err := xhtml.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("HTML does not parse: %v", err)
	}
	var text func(*xhtml.Node) string
	text = func(n *xhtml.Node) string {
		if n.Type == xhtml.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	for n := range doc.Descendants() {
		if n.Type != xhtml.ElementNode {
			continue
		}
		for _, a := range n.Attr {
			switch {
			case a.Key == "lang":
				langs = append(langs, n.Data+":"+a.Val)
			case n.Data == "a" && a.Key == "href":
				links = append(links, anchor{href: a.Val, text: text(n)})
			}
		}
	}
	return links, langs
}

// linkToken returns the revert_token of an undo link, read as the undo
// page's script reads it (new URLSearchParams(location.hash.slice(1))),
// after checking that the link is the undo page with nothing else changed.
func linkToken(t testing.TB, link, revertURL string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("undo link %q does not parse: %v", link, err)
	}
	frag := u.EscapedFragment()
	u.Fragment, u.RawFragment = "", ""
	if u.String() != revertURL {
		t.Errorf("undo link %q is not on the undo page %q", link, revertURL)
	}
	q, err := url.ParseQuery(frag)
	if err != nil || len(q) != 1 || len(q["revert_token"]) != 1 {
		t.Fatalf("undo link %q: fragment %q is not revert_token=... (%v)", link, frag, err)
	}
	return q.Get("revert_token")
}

// textLinks returns the lines of a plain-text body that start with the
// undo page.
func textLinks(body, revertURL string) []string {
	var links []string
	for line := range strings.Lines(body) {
		if line = strings.TrimSuffix(line, "\n"); strings.HasPrefix(line, revertURL) {
			links = append(links, line)
		}
	}
	return links
}

func TestRenderUndoLink(t *testing.T) {
	t.Parallel()
	const (
		undoEn    = "If this was not you, undo the change now: this link restores your previous address"
		undoZh    = "请立即撤销此次更改"
		supportEn = "If this was not you, contact support immediately"
		supportZh = "请立即联系客服"
	)
	tests := []struct {
		name      string
		revertURL string // "": the package's Render, without a mailer
		msg       selfservice.Message
		links     int      // undo links in each body
		want      []string // in both bodies
		wantNot   []string // in neither
	}{
		{"English with a token and an undo page", testRevertURL, tokenNotice(language.English, testToken), 1,
			[]string{undoEn, supportEn}, []string{undoZh}},
		{"Chinese with a token and an undo page", testRevertURL, tokenNotice(language.Chinese, testToken), 1,
			[]string{undoZh, supportZh}, []string{undoEn}},
		{"every language with a token and an undo page", testRevertURL, tokenNotice(language.Und, testToken), 2,
			[]string{undoEn, supportEn, undoZh, supportZh}, nil},
		{"a loopback undo page over http", "http://127.0.0.1:8080/undo", tokenNotice(language.English, testToken), 1,
			[]string{undoEn}, nil},
		{"no token, an undo page", testRevertURL, noticeMsg(language.English), 0,
			[]string{supportEn}, []string{undoEn, "app.example.com"}},
		{"every language, no token", testRevertURL, noticeMsg(language.Und), 0,
			[]string{supportEn, supportZh}, []string{undoEn, undoZh}},
		{"a token, no undo page (mailer)", "-", tokenNotice(language.English, testToken), 0,
			[]string{supportEn}, []string{undoEn, "revert_token"}},
		{"a token, no undo page (Render)", "", tokenNotice(language.Chinese, testToken), 0,
			[]string{supportZh}, []string{undoZh, "revert_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c mail.Content
			var err error
			switch tt.revertURL {
			case "":
				c, err = mail.Render(nil, tt.msg)
			case "-":
				c, err = linkMailer(t, "").Render(tt.msg)
			default:
				c, err = linkMailer(t, tt.revertURL).Render(tt.msg)
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			links, _ := anchors(t, c.HTML)
			if len(links) != tt.links {
				t.Fatalf("HTML has %d links %v, want %d", len(links), links, tt.links)
			}
			for _, a := range links {
				if got := linkToken(t, a.href, tt.revertURL); got != tt.msg.RevertToken {
					t.Errorf("HTML link's token = %q, want %q", got, tt.msg.RevertToken)
				}
				// Clients that strip links still show the URL.
				if a.text != a.href {
					t.Errorf("link text %q, want the URL itself %q", a.text, a.href)
				}
			}
			lines := textLinks(c.Text, tt.revertURL)
			if tt.links == 0 {
				lines = textLinks(c.Text, "http")
			}
			if len(lines) != tt.links {
				t.Fatalf("text has %d undo lines %q, want %d:\n%s", len(lines), lines, tt.links, c.Text)
			}
			for _, line := range lines {
				if got := linkToken(t, line, tt.revertURL); got != tt.msg.RevertToken {
					t.Errorf("text link's token = %q, want %q", got, tt.msg.RevertToken)
				}
				if line != links[0].href {
					t.Errorf("text link %q differs from the HTML link %q", line, links[0].href)
				}
			}
			for _, body := range []string{c.Text, textOf(t, c.HTML)} {
				for _, w := range tt.want {
					if !strings.Contains(body, w) {
						t.Errorf("body lacks %q:\n%s", w, body)
					}
				}
				for _, w := range tt.wantNot {
					if strings.Contains(body, w) {
						t.Errorf("body holds %q:\n%s", w, body)
					}
				}
			}
		})
	}
}

// textOf returns what a reader sees of an HTML body: its text, entities
// decoded, and the targets of its links.
func textOf(t testing.TB, body string) string {
	t.Helper()
	doc, err := xhtml.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("HTML does not parse: %v", err)
	}
	var b strings.Builder
	for n := range doc.Descendants() {
		switch {
		case n.Type == xhtml.TextNode:
			b.WriteString(n.Data)
		case n.Type == xhtml.ElementNode && n.Data == "a":
			for _, a := range n.Attr {
				b.WriteString(" " + a.Val + " ")
			}
		}
	}
	return b.String()
}

// Whatever the token holds, the link carries it intact through
// html/template's escaping, and the text part carries the same link.
func TestRenderUndoLinkSurvivesEscaping(t *testing.T) {
	t.Parallel()
	m := linkMailer(t, testRevertURL)
	for _, token := range []string{
		"rKQ7XNW3M4YJZ6QHC2FVN5BDTG", // rand.Text
		"AbC-_9xyz",                  // base64url
		"a+b/c==",                    // base64
		"%41%2", "a&b=c;d", "#frag", "?x", `"><script>alert(1)</script>`, "' onmouseover='x",
		"javascript:alert(1)", "space and\ttab", "ü中文", "\x00\x7f\xff",
	} {
		t.Run(token, func(t *testing.T) {
			t.Parallel()
			c, err := m.Render(tokenNotice(language.Und, token))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			links, _ := anchors(t, c.HTML)
			lines := textLinks(c.Text, testRevertURL)
			if len(links) != 2 || len(lines) != 2 {
				t.Fatalf("%d HTML links, %d text links; want 2 of each (one per language)", len(links), len(lines))
			}
			for i := range links {
				// Mail clients cut links at a space and may mangle what is
				// not plain ASCII: the link must need no repair.
				if strings.ContainsFunc(lines[i], func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"<>\\^`{|}", r) }) {
					t.Errorf("text link %q holds characters a URL may not", lines[i])
				}
				if links[i].href != lines[i] {
					t.Errorf("HTML link %q differs from the text link %q", links[i].href, lines[i])
				}
				if got := linkToken(t, links[i].href, testRevertURL); got != token {
					t.Errorf("HTML link %q: token %q, want %q", links[i].href, got, token)
				}
				if got := linkToken(t, lines[i], testRevertURL); got != token {
					t.Errorf("text link %q: token %q, want %q", lines[i], got, token)
				}
			}
		})
	}
}

func TestRenderEveryLanguage(t *testing.T) {
	t.Parallel()
	zhFirst, err := i18n.NewBundle(i18n.Options{Default: language.Chinese})
	if err != nil {
		t.Fatal(err)
	}
	en, err := mail.Render(nil, noticeMsg(language.English))
	if err != nil {
		t.Fatal(err)
	}
	zh, err := mail.Render(nil, noticeMsg(language.Chinese))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bundle  *i18n.Bundle
		order   []mail.Content // the one-language mails, in the expected order
		subject string
		langs   string
	}{
		{"English default", i18n.Default(), []mail.Content{en, zh},
			"The email address of your account was changed / 您账号的邮箱地址已更改", "en, zh"},
		{"Chinese default", zhFirst, []mail.Content{zh, en},
			"您账号的邮箱地址已更改 / The email address of your account was changed", "zh, en"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := mail.Render(tt.bundle, noticeMsg(language.Und))
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != tt.subject || c.ContentLanguage != tt.langs {
				t.Errorf("Subject %q, Content-Language %q; want %q, %q", c.Subject, c.ContentLanguage, tt.subject, tt.langs)
			}
			// The text: each language's whole mail, the default first,
			// one line between them.
			var sections []string
			for _, one := range tt.order {
				sections = append(sections, strings.TrimSuffix(one.Text, "\n"))
			}
			if want := strings.Join(sections, "\n\n"+strings.Repeat("-", 40)+"\n\n") + "\n"; c.Text != want {
				t.Errorf("text:\n%s\nwant:\n%s", c.Text, want)
			}
			// The HTML: no language for the whole page, one <div lang>
			// per section, each holding what that language's mail shows.
			_, langs := anchors(t, c.HTML)
			wantLangs := []string{"div:" + strings.Split(tt.langs, ", ")[0], "div:" + strings.Split(tt.langs, ", ")[1]}
			if !slices.Equal(langs, wantLangs) {
				t.Errorf("lang attributes %v, want %v", langs, wantLangs)
			}
			all := textOf(t, c.HTML)
			at := 0
			for _, one := range tt.order {
				body := textOf(t, one.HTML)
				body = body[strings.Index(body, one.Subject)+len(one.Subject):] // past the <title>
				i := strings.Index(all[at:], strings.TrimSpace(body))
				if i < 0 {
					t.Fatalf("HTML lacks, after byte %d, the section:\n%s\nin:\n%s", at, body, all)
				}
				at += i + 1
			}
		})
	}
}

// Only a notice is written in every language: its reader is unknown. A
// code mail goes to whoever asked for it, in the language asked.
func TestRenderCodeWithoutLanguage(t *testing.T) {
	t.Parallel()
	c, err := linkMailer(t, testRevertURL).Render(codeMsg(language.Und))
	if err != nil {
		t.Fatal(err)
	}
	if c.ContentLanguage != "en" || hasHan(c.Subject+c.Text+c.HTML) || !strings.Contains(c.HTML, `<html lang="en">`) {
		t.Errorf("code mail without a language: Content-Language %q, Chinese %v; want English only", c.ContentLanguage, hasHan(c.Text))
	}
	msg := codeMsg(language.Chinese)
	msg.RevertToken = testToken // not a notice's: ignored
	if c, err = linkMailer(t, testRevertURL).Render(msg); err != nil {
		t.Fatal(err)
	}
	if c.ContentLanguage != "zh" || strings.Contains(c.Text+c.HTML, "revert_token") {
		t.Errorf("code mail in Chinese: Content-Language %q, link %v", c.ContentLanguage, strings.Contains(c.Text, "revert_token"))
	}
}

func TestNewRevertURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url string
		ok        bool
	}{
		{"https", "https://app.example.com/account/undo-email", true},
		{"https with a query", testRevertURL, true},
		{"https with a port", "https://app.example.com:8443/undo", true},
		{"https, the host only", "https://app.example.com", true},
		{"http to 127.0.0.1", "http://127.0.0.1:8080/undo", true},
		{"http to another loopback address", "http://127.0.0.2/undo", true},
		{"http to ::1", "http://[::1]:8080/undo", true},
		{"http to localhost", "http://localhost:8080/undo", true},
		{"none", "", true},

		{"http to a host", "http://app.example.com/undo", false},
		{"http to a private address", "http://10.0.0.1/undo", false},
		{"another scheme", "ftp://app.example.com/undo", false},
		{"javascript", "javascript:alert(1)", false},
		{"relative", "/account/undo-email", false},
		{"no scheme", "app.example.com/undo", false},
		{"no host", "https:///undo", false},
		{"a port only", "https://:443/undo", false},
		{"opaque", "https:app.example.com", false},
		{"user information", "https://admin:s3cret@app.example.com/undo", false},
		{"a host that looks like another", "https://app.example.com@evil.example/undo", false},
		{"a fragment", "https://app.example.com/undo#top", false},
		{"an empty fragment", "https://app.example.com/undo#", false},
		{"a space", "https://app.example.com/undo page", false},
		{"CRLF", "https://app.example.com/undo\r\nBcc: x@example.com", false},
		{"NEL", "https://app.example.com/undo\u0085", false},
		{"a line separator", "https://app.example.com/undo\u2028", false},
		{"not UTF-8", "https://app.example.com/undo\xff", false},
		{"bad escape", "https://app.example.com/undo%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := mail.New(mail.Options{Host: "smtp.example.com", From: "no-reply@example.com", RevertURL: tt.url})
			if tt.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if tt.url == "" {
					return
				}
				c, err := m.Render(tokenNotice(language.English, "t0ken"))
				if err != nil {
					t.Fatal(err)
				}
				if lines := textLinks(c.Text, tt.url+"#revert_token=t0ken"); len(lines) != 1 {
					t.Errorf("text does not link to %s:\n%s", tt.url, c.Text)
				}
				return
			}
			if !errors.Is(err, selfservice.ErrConfig) || m != nil {
				t.Fatalf("New = %v, %v; want an error wrapping ErrConfig", m, err)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "evil") {
				t.Errorf("error %q quotes the URL", err)
			}
		})
	}
}

// New renders every mail at start-up, the notice with its link and in
// every language too: a translation that breaks there breaks New.
func TestNewRendersTheUndoNotice(t *testing.T) {
	t.Parallel()
	raw, err := fs.ReadFile(locales.FS(), "active.en.json")
	if err != nil {
		t.Fatal(err)
	}
	zh, err := fs.ReadFile(locales.FS(), "active.zh.json")
	if err != nil {
		t.Fatal(err)
	}
	// A text with a field the mails lack fails only when executed: NewBundle
	// cannot tell.
	broken := strings.Replace(string(zh), `"MAIL.CHANGED.UNDO": "`, `"MAIL.CHANGED.UNDO": "{{.Token}}`, 1)
	b, err := i18n.NewBundle(i18n.Options{Files: fstest.MapFS{
		"active.en.json": {Data: raw},
		"active.zh.json": {Data: []byte(broken)},
	}})
	if err != nil {
		t.Fatalf("NewBundle: %v", err)
	}
	if _, err := mail.New(mail.Options{Host: "127.0.0.1", From: "no-reply@example.com", Bundle: b, RevertURL: testRevertURL}); !errors.Is(err, selfservice.ErrConfig) {
		t.Errorf("New with a broken undo text: %v, want ErrConfig", err)
	}
	if _, err := mail.New(mail.Options{Host: "127.0.0.1", From: "no-reply@example.com", Bundle: b}); err != nil {
		t.Errorf("New without an undo page, so without the undo text: %v", err)
	}
}
