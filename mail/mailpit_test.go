package mail_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testenv"
	"github.com/ciamkit/selfservice/mail"
)

// mailpit is the Mailpit server of the integration tests: SMTP to send,
// the HTTP API to read what arrived.
type mailpit struct {
	smtp string // host:port
	host string
	port int
	api  string // base URL, no trailing slash
}

func newMailpit(t *testing.T) *mailpit {
	t.Helper()
	addr := testenv.Lookup(t, testenv.MailpitSMTP)
	api := strings.TrimRight(testenv.Lookup(t, testenv.MailpitAPI), "/")
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s=%q: %v", testenv.MailpitSMTP, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s=%q: %v", testenv.MailpitSMTP, addr, err)
	}
	return &mailpit{smtp: addr, host: host, port: port, api: api}
}

type mpAddress struct{ Name, Address string }

// mpMessage is Mailpit's view of one message (GET /api/v1/message/{ID}).
type mpMessage struct {
	ID       string
	From     mpAddress
	To       []mpAddress
	Subject  string
	Username string // the SMTP login, when there was one
	Text     string
	HTML     string
}

func (mp *mailpit) get(t *testing.T, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mp.api+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("Mailpit API: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Mailpit API GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("Mailpit API GET %s: %v", path, err)
	}
}

// await polls Mailpit for up to five seconds until the mail to `to` with
// the given subject has arrived, and returns it. Exactly one must arrive.
func (mp *mailpit) await(t *testing.T, to, subject string) mpMessage {
	t.Helper()
	path := "/api/v1/search?query=" + url.QueryEscape(`to:"`+to+`"`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found struct {
			Messages []struct{ ID, Subject string }
		}
		mp.get(t, path, &found)
		var ids []string
		for _, m := range found.Messages {
			if m.Subject == subject {
				ids = append(ids, m.ID)
			}
		}
		switch {
		case len(ids) > 1:
			t.Fatalf("%d mails %q to %s, want one", len(ids), subject, to)
		case len(ids) == 1:
			var m mpMessage
			mp.get(t, "/api/v1/message/"+ids[0], &m)
			return m
		case time.Now().After(deadline):
			t.Fatalf("no mail %q to %s after 5s (%d other mails)", subject, to, len(found.Messages))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// headers returns the headers of message id.
func (mp *mailpit) headers(t *testing.T, id string) http.Header {
	t.Helper()
	var h http.Header
	mp.get(t, "/api/v1/message/"+id+"/headers", &h)
	return h
}

// uniqueAddress returns a new address for one test run, starting with
// prefix so that its masked form is known.
func uniqueAddress(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:16]) + "@example.com"
}

// checkMail asserts what every delivered mail must be: to `to` alone from
// the configured sender, multipart/alternative with both parts, in the
// expected language.
func checkMail(t *testing.T, mp *mailpit, m mpMessage, to string, zh bool) {
	t.Helper()
	if len(m.To) != 1 || m.To[0].Address != to {
		t.Errorf("To %+v, want %s alone", m.To, to)
	}
	if m.From != (mpAddress{Name: "示例 Accounts", Address: "no-reply@example.com"}) {
		t.Errorf("From %+v", m.From)
	}
	if m.Text == "" || m.HTML == "" {
		t.Errorf("text part %d bytes, HTML part %d bytes: want both", len(m.Text), len(m.HTML))
	}
	h := mp.headers(t, m.ID)
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "multipart/alternative" {
		t.Errorf("Content-Type %q, want multipart/alternative", h.Get("Content-Type"))
	}
	lang := "en"
	if zh {
		lang = "zh"
	}
	if got := h.Get("Content-Language"); got != lang {
		t.Errorf("Content-Language %q, want %q", got, lang)
	}
	if !strings.Contains(m.HTML, `<html lang="`+lang+`">`) {
		t.Errorf("HTML part does not declare lang %q", lang)
	}
	for part, body := range map[string]string{"subject": m.Subject, "text": m.Text, "HTML": m.HTML} {
		if hasHan(body) != zh {
			t.Errorf("%s has Chinese characters: %v, want %v", part, !zh, zh)
		}
	}
}

// Every kind of mail in both languages, through go-mail to a real SMTP
// server, logged in; the parts arrive as Render made them.
func TestMailpitSend(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	m, err := mail.New(mail.Options{
		Host: mp.host, Port: mp.port, TLS: mail.TLSOpportunistic,
		Username: "mailer", Password: "s3cret",
		From: "no-reply@example.com", FromName: "示例 Accounts",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		msg  selfservice.Message
	}{
		{"code en", codeMsg(language.English)},
		{"code zh", codeMsg(language.Chinese)},
		{"notice en", noticeMsg(language.English)},
		{"notice zh", noticeMsg(language.Chinese)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.msg.To = uniqueAddress("to-")
			want, err := mail.Render(nil, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Send(ctx, tt.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := mp.await(t, tt.msg.To, want.Subject)
			checkMail(t, mp, got, tt.msg.To, tt.msg.Language == language.Chinese)
			// Mail travels with CRLF line ends.
			if text := strings.ReplaceAll(got.Text, "\r\n", "\n"); strings.TrimSpace(text) != strings.TrimSpace(want.Text) {
				t.Errorf("text part:\n%s\nwant:\n%s", got.Text, want.Text)
			}
			if got.Username != "mailer" {
				t.Errorf("SMTP login %q, want mailer", got.Username)
			}
		})
	}
}

// The whole API against Mailpit: a code requested in Chinese and one in
// English, read from the mailbox, used to change the address; the notice
// reaches the old address with the new one masked.
func TestMailpitFullFlow(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	opts, err := mail.ParseURL("smtp://mailer:s3cret@" + mp.smtp +
		"?from=no-reply@example.com&from_name=" + url.QueryEscape("示例 Accounts") + "&timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := mail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	old, newZh, newEn := uniqueAddress("old-"), uniqueAddress("n"), uniqueAddress("e")
	api := newAPI(t, mailer, old)
	tok := api.token(t)

	steps := []struct {
		lang            string
		from, to        string // the user's address before and after
		codeSubject     string
		codeLine        string
		noticeSubject   string
		noticeLine      string // holds the masked new address
		noticeNotYouKey string
	}{
		{"zh", old, newZh, "确认您的新邮箱地址", "验证码 10 分钟内有效。",
			"您账号的邮箱地址已更改", "更改为 n***@example.com。", "请立即联系客服"},
		{"en", newZh, newEn, "Confirm your new email address", "The code expires in 10 min.",
			"The email address of your account was changed", "changed to e***@example.com at ", "contact support"},
	}
	// In order: the second step changes the address the first one set.
	for _, st := range steps {
		t.Run(st.lang, func(t *testing.T) {
			zh := st.lang == "zh"
			r := api.post(t, selfservice.SendCodePath, st.lang, "",
				`{"email":"`+st.to+`","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
			if r.status != http.StatusOK {
				t.Fatalf("send code: %d %s", r.status, r.body)
			}
			codeMail := mp.await(t, st.to, st.codeSubject)
			checkMail(t, mp, codeMail, st.to, zh)
			for part, body := range map[string]string{"text": codeMail.Text, "HTML": html.UnescapeString(codeMail.HTML)} {
				if !strings.Contains(body, st.codeLine) {
					t.Errorf("code mail's %s part lacks %q", part, st.codeLine)
				}
			}
			code := sixDigits.FindString(codeMail.Text)
			if code == "" {
				t.Fatalf("no code in the mail:\n%s", codeMail.Text)
			}
			if !strings.Contains(codeMail.HTML, ">"+code+"<") {
				t.Errorf("HTML part lacks the code %s", code)
			}

			r = api.post(t, selfservice.UpdateEmailPath, st.lang, tok,
				`{"email":"`+st.to+`","verify_code":"`+code+`"}`)
			if r.status != http.StatusOK {
				t.Fatalf("update email: %d %s", r.status, r.body)
			}
			if u, err := api.users.User(context.Background(), testUser); err != nil || u.Email != st.to {
				t.Fatalf("user's email = %q (%v), want %s", u.Email, err, st.to)
			}

			// The notice is mailed after the response: await polls.
			notice := mp.await(t, st.from, st.noticeSubject)
			checkMail(t, mp, notice, st.from, zh)
			for part, body := range map[string]string{"text": notice.Text, "HTML": html.UnescapeString(notice.HTML)} {
				if !strings.Contains(body, st.noticeLine) || !strings.Contains(body, st.noticeNotYouKey) {
					t.Errorf("notice's %s part lacks %q or %q:\n%s", part, st.noticeLine, st.noticeNotYouKey, body)
				}
				if strings.Contains(strings.ToLower(body), st.to) {
					t.Errorf("notice's %s part shows the new address in clear", part)
				}
				if strings.Contains(body, code) {
					t.Errorf("notice's %s part shows the code", part)
				}
			}
		})
	}
}
