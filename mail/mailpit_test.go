package mail_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// expected language: "en", "zh", or "en, zh" for a notice in every
// language.
func checkMail(t *testing.T, mp *mailpit, m mpMessage, to, lang string) {
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
	if got := h.Get("Content-Language"); got != lang {
		t.Errorf("Content-Language %q, want %q", got, lang)
	}
	_, langs := anchors(t, m.HTML)
	wantLangs := []string{"html:" + lang, "div:" + lang}
	if lang == "en, zh" {
		wantLangs = []string{"div:en", "div:zh"}
	}
	if !slices.Equal(langs, wantLangs) {
		t.Errorf("HTML part's lang attributes %v, want %v", langs, wantLangs)
	}
	zh := strings.Contains(lang, "zh")
	for part, body := range map[string]string{"subject": m.Subject, "text": m.Text, "HTML": m.HTML} {
		if hasHan(body) != zh {
			t.Errorf("%s has Chinese characters: %v, want %v", part, !zh, zh)
		}
	}
}

// Every kind of mail in both languages, and the notice with its undo link
// in every language, through go-mail to a real SMTP server, logged in; the
// parts arrive as Render made them.
func TestMailpitSend(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	m, err := mail.New(mail.Options{
		Host: mp.host, Port: mp.port, TLS: mail.TLSOpportunistic,
		Username: "mailer", Password: "s3cret",
		From: "no-reply@example.com", FromName: "示例 Accounts",
		RevertURL: testRevertURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	for _, tt := range []struct {
		name  string
		msg   selfservice.Message
		lang  string
		links int // undo links in each part
	}{
		{"code en", codeMsg(language.English), "en", 0},
		{"code zh", codeMsg(language.Chinese), "zh", 0},
		{"notice en", noticeMsg(language.English), "en", 0},
		{"notice zh", noticeMsg(language.Chinese), "zh", 0},
		{"notice zh with a token", tokenNotice(language.Chinese, testToken), "zh", 1},
		{"notice in every language with a token", tokenNotice(language.Und, testToken), "en, zh", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.msg.To = uniqueAddress("to-")
			want, err := m.Render(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Send(ctx, tt.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := mp.await(t, tt.msg.To, want.Subject)
			checkMail(t, mp, got, tt.msg.To, tt.lang)
			// Mail travels with CRLF line ends.
			text := strings.ReplaceAll(got.Text, "\r\n", "\n")
			if strings.TrimSpace(text) != strings.TrimSpace(want.Text) {
				t.Errorf("text part:\n%s\nwant:\n%s", got.Text, want.Text)
			}
			links, _ := anchors(t, got.HTML)
			lines := textLinks(text, testRevertURL)
			if len(links) != tt.links || len(lines) != tt.links {
				t.Fatalf("%d HTML links, %d text links, want %d of each", len(links), len(lines), tt.links)
			}
			for i := range links {
				if tok := linkToken(t, links[i].href, testRevertURL); tok != testToken {
					t.Errorf("HTML link %q carries %q, want %q", links[i].href, tok, testToken)
				}
				if lines[i] != links[i].href {
					t.Errorf("text link %q differs from the HTML link %q", lines[i], links[i].href)
				}
			}
			if got.Username != "mailer" {
				t.Errorf("SMTP login %q, want mailer", got.Username)
			}
		})
	}
}

// The whole API against Mailpit, for a user without a stored language: a
// code requested in Chinese and one in English, read from the mailbox,
// change the address twice (A->B->C). Each notice reaches the address it
// replaces in every language, whatever the request's X-L, with the new
// address masked and an undo link to the revert_url of the mail URL; A's
// link, read as the undo page reads it, takes the account straight back to
// A and voids B's.
func TestMailpitFullFlow(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	opts, err := mail.ParseURL("smtp://mailer:s3cret@" + mp.smtp +
		"?from=no-reply@example.com&from_name=" + url.QueryEscape("示例 Accounts") + "&timeout=5s" +
		"&revert_url=" + url.QueryEscape(testRevertURL))
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := mail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, mailer)
	every, err := mail.Render(nil, noticeMsg(language.Und))
	if err != nil {
		t.Fatal(err)
	}
	old, newZh, newEn := uniqueAddress("old-"), uniqueAddress("n"), uniqueAddress("e")
	api := newAPI(t, mailer, old, "")
	tok := api.token(t)

	steps := []struct {
		lang        string
		from, to    string // the user's address before and after
		codeSubject string
		codeLine    string
		noticeLines []string // hold the masked new address, in each language
	}{
		{"zh", old, newZh, "确认您的新邮箱地址", "验证码 10 分钟内有效。",
			[]string{"changed to n***@example.com at ", "更改为 n***@example.com。"}},
		{"en", newZh, newEn, "Confirm your new email address", "The code expires in 10 min.",
			[]string{"changed to e***@example.com at ", "更改为 e***@example.com。"}},
	}
	tokens := make([]string, len(steps))
	// In order: the second step changes the address the first one set.
	for i, st := range steps {
		t.Run(st.lang, func(t *testing.T) {
			code := changeEmail(t, mp, api, tok, st.lang, st.to, st.codeSubject, st.codeLine)

			// The notice is mailed after the response: await polls.
			notice := mp.await(t, st.from, every.Subject)
			checkMail(t, mp, notice, st.from, "en, zh")
			tokens[i] = checkNotice(t, notice, 2, st.to, code, append(st.noticeLines, "contact support", "请立即联系客服"))
		})
	}

	t.Run("undo", func(t *testing.T) {
		if r := api.post(t, selfservice.RevertEmailPath, "en", "", `{"revert_token":"`+tokens[0]+`"}`); r.status != http.StatusOK {
			t.Fatalf("revert with the first notice's token: %d %s", r.status, r.body)
		}
		if u, err := api.users.User(context.Background(), testUser); err != nil || u.Email != old {
			t.Fatalf("user's email = %q (%v), want the first address %s", u.Email, err, old)
		}
		r := api.post(t, selfservice.RevertEmailPath, "en", "", `{"revert_token":"`+tokens[1]+`"}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "IDAAS.SDK.REVERT.9302") {
			t.Errorf("revert with the voided second token: %d %s, want 400 IDAAS.SDK.REVERT.9302", r.status, r.body)
		}
	})
}

// The notice is in the user's stored language, not in the language of the
// request that made the change.
func TestMailpitNoticeInStoredLanguage(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	mailer, err := mail.New(mail.Options{Host: mp.host, Port: mp.port, TLS: mail.TLSNone,
		From: "no-reply@example.com", FromName: "示例 Accounts", RevertURL: testRevertURL})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, mailer)
	old, to := uniqueAddress("old-"), uniqueAddress("n")
	api := newAPI(t, mailer, old, "zh-CN")
	code := changeEmail(t, mp, api, api.token(t), "en", to, "Confirm your new email address", "The code expires in 10 min.")
	notice := mp.await(t, old, "您账号的邮箱地址已更改")
	checkMail(t, mp, notice, old, "zh")
	checkNotice(t, notice, 1, to, code, []string{"更改为 n***@example.com。", "请立即联系客服"})
}

// changeEmail asks for a code for the address to in language lang, reads
// it from the mailbox, changes the user's address with it and returns it.
func changeEmail(t *testing.T, mp *mailpit, api *apiServer, tok, lang, to, codeSubject, codeLine string) string {
	t.Helper()
	r := api.post(t, selfservice.SendCodePath, lang, "",
		`{"email":"`+to+`","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.status != http.StatusOK {
		t.Fatalf("send code: %d %s", r.status, r.body)
	}
	codeMail := mp.await(t, to, codeSubject)
	checkMail(t, mp, codeMail, to, lang)
	for part, body := range map[string]string{"text": codeMail.Text, "HTML": html.UnescapeString(codeMail.HTML)} {
		if !strings.Contains(body, codeLine) {
			t.Errorf("code mail's %s part lacks %q", part, codeLine)
		}
	}
	code := sixDigits.FindString(codeMail.Text)
	if code == "" {
		t.Fatalf("no code in the mail:\n%s", codeMail.Text)
	}
	if !strings.Contains(codeMail.HTML, ">"+code+"<") {
		t.Errorf("HTML part lacks the code %s", code)
	}

	r = api.post(t, selfservice.UpdateEmailPath, lang, tok, `{"email":"`+to+`","verify_code":"`+code+`"}`)
	if r.status != http.StatusOK {
		t.Fatalf("update email: %d %s", r.status, r.body)
	}
	if u, err := api.users.User(context.Background(), testUser); err != nil || u.Email != to {
		t.Fatalf("user's email = %q (%v), want %s", u.Email, err, to)
	}
	return code
}

// checkNotice asserts that a delivered notice holds every line of want,
// neither the new address in clear nor the code, and one undo link per
// language in each part, all carrying one token, which it returns.
func checkNotice(t *testing.T, notice mpMessage, languages int, newEmail, code string, want []string) string {
	t.Helper()
	text := strings.ReplaceAll(notice.Text, "\r\n", "\n")
	for part, body := range map[string]string{"text": text, "HTML": textOf(t, notice.HTML)} {
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("notice's %s part lacks %q:\n%s", part, w, body)
			}
		}
		if strings.Contains(strings.ToLower(body), newEmail) {
			t.Errorf("notice's %s part shows the new address in clear", part)
		}
		if strings.Contains(body, code) {
			t.Errorf("notice's %s part shows the code", part)
		}
	}
	links, _ := anchors(t, notice.HTML)
	lines := textLinks(text, testRevertURL)
	if len(links) != languages || len(lines) != languages {
		t.Fatalf("notice has %d HTML links, %d text links; want %d of each", len(links), len(lines), languages)
	}
	token := linkToken(t, links[0].href, testRevertURL)
	for i := range links {
		if got := linkToken(t, links[i].href, testRevertURL); got != token || token == "" {
			t.Errorf("HTML link %q carries %q, want %q", links[i].href, got, token)
		}
		if lines[i] != links[i].href {
			t.Errorf("text link %q differs from the HTML link %q", lines[i], links[i].href)
		}
	}
	return token
}

// Many mails side by side over the pool, logged in, sessions renewed
// every 25 mails: each arrives once, to its address, with its code.
func TestMailpitPool(t *testing.T) {
	t.Parallel()
	mp := newMailpit(t)
	m, err := mail.New(mail.Options{
		Host: mp.host, Port: mp.port, TLS: mail.TLSOpportunistic,
		Username: "mailer", Password: "s3cret",
		From: "no-reply@example.com", FromName: "示例 Accounts",
		MaxConns: 4, MaxMessagesPerConn: 25,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, m)
	prefix := "pool-" + strings.ToLower(rand.Text()[:12]) + "-"
	const n, workers = 120, 8
	codes := make(map[string]string, n) // address -> code
	for i := range n {
		codes[prefix+strconv.Itoa(i)+"@example.com"] = fmt.Sprintf("%06d", 100000+i)
	}
	jobs := make(chan string)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for to := range jobs {
				msg := codeMsg(language.English)
				msg.To, msg.Code = to, codes[to]
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				errs <- m.Send(ctx, msg)
				cancel()
			}
		})
	}
	for to := range codes {
		jobs <- to
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if open, idle := mail.Sessions(m); open > 4 || open != idle {
		t.Errorf("the mailer holds %d sessions, %d idle; want at most 4, all idle", open, idle)
	}

	path := "/api/v1/search?limit=500&query=" + url.QueryEscape(`to:"`+prefix+`"`)
	type summary struct {
		To      []mpAddress
		Snippet string
	}
	var found struct{ Messages []summary }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mp.get(t, path, &found)
		if len(found.Messages) >= n || time.Now().After(deadline) {
			break
		}
	}
	arrived := make(map[string]int)
	for _, msg := range found.Messages {
		if len(msg.To) != 1 {
			t.Errorf("a mail to %+v, want one recipient", msg.To)
			continue
		}
		to := msg.To[0].Address
		arrived[to]++
		if code, ok := codes[to]; !ok || !strings.Contains(msg.Snippet, code) {
			t.Errorf("the mail to %s reads %q, want its code %s", to, msg.Snippet, code)
		}
	}
	for to := range codes {
		if arrived[to] != 1 {
			t.Errorf("%d mails to %s, want 1", arrived[to], to)
		}
	}
}
