package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

//go:embed web
var web embed.FS

// demoPage is the demo page at GET /: a person runs the whole flow in a
// browser as the demo user, in English or Chinese. It is for the built-in
// issuer only, since the page carries that user's id_token.
type demoPage struct {
	Users    store.UserStore
	UserID   string // the token's sub
	ClientID string
	Token    string
	// Hosts are the names the page and GET /demo/user answer to besides
	// loopback addresses and localhost: the listener's own host.
	Hosts  []string
	Logger *slog.Logger
}

// The paths the demo adds to the example's mux.
const (
	demoUserPath = "/demo/user"
	demoJSPath   = "/demo/demo.js"
	demoCSSPath  = "/demo/demo.css"
)

// pageText is the page in one language. The API's own messages come from
// the API, in the language the page sends as X-L.
type pageText struct {
	HTMLLang, Title, Heading, Intro     string
	UserHeading, UserID, CurrentEmail   string
	Step1, NewEmail, SendCode, MailHint string
	Step2, Code, CodeHint, Change       string
	Step3, UndoToken, UndoHint, Undo    string
	Sending, Sent, Changing, Changed    string // {email} is replaced
	Undoing, Undone                     string // {email} is replaced
	Network, Unexpected                 string // {status} is replaced
	OtherXL, OtherHTMLLang, OtherName   string // the link to the other language
}

// pageTexts is keyed by the X-L the page sends.
var pageTexts = map[string]pageText{
	"en": {
		HTMLLang:      "en",
		Title:         "Change my email · selfservice demo",
		Heading:       "Change my email",
		Intro:         "This page calls the example's API from your browser, signed in as the demo user.",
		UserHeading:   "Signed in as",
		UserID:        "User id",
		CurrentEmail:  "Current email",
		Step1:         "1. Get a code",
		NewEmail:      "New email",
		SendCode:      "Send code",
		MailHint:      `The development mailer does not send mail: it prints each code on the example's standard output, as a JSON line with "code".`,
		Step2:         "2. Confirm the change",
		Code:          "Verification code",
		CodeHint:      "The 6 digits printed for the new address.",
		Change:        "Change email",
		Sending:       "Sending the code…",
		Sent:          "A code was sent to {email}. Look for it on the example's standard output.",
		Changing:      "Changing your email…",
		Changed:       "Done: your email is now {email}.",
		Step3:         "3. Undo a change",
		UndoToken:     "Undo token",
		UndoHint:      `After a change, the old address is sent a notice with a link that undoes it; the development mailer prints the notice on the standard output, as a JSON line with "revert_token". Opening the link fills this in.`,
		Undo:          "Undo the change",
		Undoing:       "Undoing the change…",
		Undone:        "Undone: your email is {email} again. Changes are paused for a day.",
		Network:       "The server could not be reached.",
		Unexpected:    "Unexpected answer from the server ({status}).",
		OtherXL:       "zh",
		OtherHTMLLang: "zh-Hans",
		OtherName:     "中文",
	},
	"zh": {
		HTMLLang:      "zh-Hans",
		Title:         "修改邮箱 · selfservice 演示",
		Heading:       "修改邮箱",
		Intro:         "本页以演示用户的身份，在浏览器中调用示例程序的接口。",
		UserHeading:   "当前登录用户",
		UserID:        "用户 ID",
		CurrentEmail:  "当前邮箱",
		Step1:         "1. 获取验证码",
		NewEmail:      "新邮箱",
		SendCode:      "发送验证码",
		MailHint:      `开发用的邮件程序不会真的发信：它把每个验证码以一行 JSON（含 "code" 字段）打印在示例程序的标准输出上。`,
		Step2:         "2. 确认修改",
		Code:          "验证码",
		CodeHint:      "为新邮箱打印出的 6 位数字。",
		Change:        "修改邮箱",
		Sending:       "正在发送验证码…",
		Sent:          "验证码已发送至 {email}，请在示例程序的标准输出中查看。",
		Changing:      "正在修改邮箱…",
		Changed:       "修改成功：你的邮箱现在是 {email}。",
		Step3:         "3. 撤销修改",
		UndoToken:     "撤销令牌",
		UndoHint:      `修改后，旧邮箱会收到一封带撤销链接的通知；开发用的邮件程序把通知以一行 JSON（含 "revert_token" 字段）打印在标准输出上。打开该链接会自动填入此处。`,
		Undo:          "撤销修改",
		Undoing:       "正在撤销修改…",
		Undone:        "已撤销：你的邮箱已恢复为 {email}。一天内不能再修改邮箱。",
		Network:       "无法连接服务器。",
		Unexpected:    "服务器返回了意外的应答（{status}）。",
		OtherXL:       "en",
		OtherHTMLLang: "en",
		OtherName:     "English",
	},
}

var pageTemplate = template.Must(template.ParseFS(web, "web/index.html"))

// demoCSP lets the page load only its own script and styles and talk only
// to its own origin; nothing inline runs.
const demoCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// mountDemo registers the page, its script and styles, and GET /demo/user
// on mux.
func mountDemo(mux *http.ServeMux, d demoPage) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	mux.Handle("GET /{$}", d.onOwnHost(d.servePage))
	mux.Handle("GET "+demoUserPath, d.onOwnHost(d.serveUser))
	mux.Handle("GET "+demoJSPath, asset("web/demo.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET "+demoCSSPath, asset("web/demo.css", "text/css; charset=utf-8"))
}

// onOwnHost answers 421 Misdirected Request unless the request names this
// server in its Host: a loopback address, localhost or one of d.Hosts.
// A web page that rebinds its own name to 127.0.0.1 is same-origin with
// what it fetches under that name, so without this check it could read
// the demo user's id_token off the page; its requests carry its name.
func (d demoPage) onOwnHost(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.ownHost(r.Host) {
			http.Error(w, "misdirected request: the demo page answers on localhost or the address it listens on", http.StatusMisdirectedRequest)
			return
		}
		next(w, r)
	})
}

func (d demoPage) ownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else {
		// No port: only brackets to take off an IPv6 address.
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	for _, h := range d.Hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// listenHosts are the hosts a browser may name the example by besides
// loopback addresses and localhost: the host -addr names and the address
// it listens on, unless that is every address.
func listenHosts(flag string, addr net.Addr) []string {
	var hosts []string
	if h, _, err := net.SplitHostPort(flag); err == nil && h != "" {
		if ip, err := netip.ParseAddr(h); err != nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil && !ap.Addr().IsUnspecified() && !slices.Contains(hosts, ap.Addr().String()) {
		hosts = append(hosts, ap.Addr().String())
	}
	return hosts
}

// pageLanguage picks the page's language as the API picks an answer's:
// ?lang= first, as X-L would be, then Accept-Language, then English.
func pageLanguage(r *http.Request) string {
	loc := i18n.Default().Match(r.URL.Query().Get("lang"), r.Header.Get("Accept-Language"))
	base, _ := loc.Tag().Base()
	if _, ok := pageTexts[base.String()]; ok {
		return base.String()
	}
	return "en"
}

func (d demoPage) servePage(w http.ResponseWriter, r *http.Request) {
	xl := pageLanguage(r)
	var buf bytes.Buffer
	err := pageTemplate.Execute(&buf, struct {
		T                                                   pageText
		XL, Client, Token, SendPath, UpdatePath, RevertPath string
	}{pageTexts[xl], xl, d.ClientID, d.Token, selfservice.SendCodePath, selfservice.UpdateEmailPath, selfservice.RevertEmailPath})
	if err != nil {
		d.Logger.Error("demo page", "error", err)
		http.Error(w, "demo page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", pageTexts[xl].HTMLLang)
	h.Set("Vary", "Accept-Language")
	// The page holds a bearer token: no cache may keep it.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", demoCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(buf.Bytes())
}

// demoUser is the answer of GET /demo/user.
type demoUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	// ClientIP is the caller's address as the server sees it, which the
	// page sends as X-device-ip: a browser cannot know its own.
	ClientIP string `json:"client_ip,omitempty"`
}

// serveUser answers the demo user's id and current email, read from the
// user store at each call, so that the page shows what the API changed.
func (d demoPage) serveUser(w http.ResponseWriter, r *http.Request) {
	u, err := d.Users.User(r.Context(), d.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "the demo user is not in the user store", http.StatusNotFound)
		return
	case err != nil:
		d.Logger.Error("demo user", "error", err)
		http.Error(w, "user store failed", http.StatusInternalServerError)
		return
	}
	body := demoUser{ID: u.ID, Email: u.Email}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		body.ClientIP = host
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(body)
}

// asset serves one embedded file with its content type.
func asset(name, contentType string) http.Handler {
	b, err := web.ReadFile(name)
	if err != nil {
		panic(err) // the files are embedded: a missing one is a broken build
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(b)
	})
}
