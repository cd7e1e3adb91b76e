package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

const demoToken = "header.payload.signature"

// demoServer serves the demo alone, over a user store holding the demo user.
func demoServer(t *testing.T) (*httptest.Server, *memstore.UserStore) {
	t.Helper()
	users := memstore.NewUserStore(store.User{ID: "demo-user", Email: "15201657312@163.com"})
	mux := http.NewServeMux()
	mountDemo(mux, demoPage{Users: users, UserID: "demo-user", ClientID: "demo-client", Token: demoToken})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, users
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if header != nil {
		req.Header = header
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// parsePage parses the page and returns its nodes in document order.
func parsePage(t *testing.T, page string) []*html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*html.Node
	for n := range doc.Descendants() {
		nodes = append(nodes, n)
	}
	return nodes
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func byID(nodes []*html.Node, id string) *html.Node {
	for _, n := range nodes {
		if v, ok := attr(n, "id"); ok && v == id {
			return n
		}
	}
	return nil
}

func TestDemoPageLanguage(t *testing.T) {
	t.Parallel()
	srv, _ := demoServer(t)
	for _, c := range []struct {
		name, query, acceptLanguage string
		wantXL, wantHTMLLang        string
		wantTexts                   []string
	}{
		{"default", "", "", "en", "en", []string{"Change my email", "New email", "Send code", "Verification code", "standard output"}},
		{"Accept-Language zh-CN", "", "zh-CN,zh;q=0.9,en;q=0.8", "zh", "zh-Hans", []string{"修改邮箱", "新邮箱", "发送验证码", "验证码", "标准输出"}},
		{"Accept-Language en-GB", "", "en-GB,en;q=0.9", "en", "en", []string{"Change my email"}},
		{"Accept-Language unsupported", "", "fr-FR,fr;q=0.9", "en", "en", []string{"Change my email"}},
		{"lang=zh beats Accept-Language", "?lang=zh", "en-US", "zh", "zh-Hans", []string{"修改邮箱"}},
		{"lang=en beats Accept-Language", "?lang=en", "zh-CN", "en", "en", []string{"Change my email"}},
		{"lang=zh_CN", "?lang=zh_CN", "", "zh", "zh-Hans", []string{"修改邮箱"}},
		{"unknown lang falls back to Accept-Language", "?lang=xx", "zh", "zh", "zh-Hans", []string{"修改邮箱"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if c.acceptLanguage != "" {
				h.Set("Accept-Language", c.acceptLanguage)
			}
			resp, page := get(t, srv.URL+"/"+c.query, h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cl := resp.Header.Get("Content-Language"); cl != c.wantHTMLLang {
				t.Errorf("Content-Language %q, want %q", cl, c.wantHTMLLang)
			}
			if v := resp.Header.Get("Vary"); !strings.Contains(v, "Accept-Language") {
				t.Errorf("Vary %q lacks Accept-Language", v)
			}
			nodes := parsePage(t, page)
			var htmlLang string
			for _, n := range nodes {
				if n.Type == html.ElementNode && n.Data == "html" {
					htmlLang, _ = attr(n, "lang")
				}
			}
			if htmlLang != c.wantHTMLLang {
				t.Errorf("<html lang=%q>, want %q", htmlLang, c.wantHTMLLang)
			}
			main := byID(nodes, "demo")
			if main == nil {
				t.Fatal("no <main id=demo>")
			}
			if xl, _ := attr(main, "data-xl"); xl != c.wantXL {
				t.Errorf("the page would send X-L %q, want %q", xl, c.wantXL)
			}
			for _, s := range c.wantTexts {
				if !strings.Contains(page, s) {
					t.Errorf("page lacks %q", s)
				}
			}
		})
	}
}

// TestDemoPageTexts: both languages have every text, and the two differ.
func TestDemoPageTexts(t *testing.T) {
	t.Parallel()
	en, zh := pageTexts["en"], pageTexts["zh"]
	ev, zv := structStrings(en), structStrings(zh)
	for i := range ev {
		if ev[i] == "" || zv[i] == "" {
			t.Errorf("text %d is missing in a language: %q / %q", i, ev[i], zv[i])
		}
	}
	for _, p := range []struct{ text, placeholder string }{
		{en.Sent, "{email}"}, {zh.Sent, "{email}"}, {en.Changed, "{email}"}, {zh.Changed, "{email}"},
		{en.Unexpected, "{status}"}, {zh.Unexpected, "{status}"},
	} {
		if !strings.Contains(p.text, p.placeholder) {
			t.Errorf("%q lacks %s", p.text, p.placeholder)
		}
	}
}

func structStrings(p pageText) []string {
	return []string{p.HTMLLang, p.Title, p.Heading, p.Intro, p.UserHeading, p.UserID, p.CurrentEmail,
		p.Step1, p.NewEmail, p.SendCode, p.MailHint, p.Step2, p.Code, p.CodeHint, p.Change,
		p.Sending, p.Sent, p.Changing, p.Changed, p.Network, p.Unexpected, p.OtherXL, p.OtherHTMLLang, p.OtherName}
}

// TestDemoPageSelfContained: the page loads nothing from another origin,
// runs no inline script or style, and says so in a strict CSP.
func TestDemoPageSelfContained(t *testing.T) {
	t.Parallel()
	srv, _ := demoServer(t)
	resp, page := get(t, srv.URL+"/", nil)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the page holds a token but Cache-Control is %q", cc)
	}

	var assets []string
	for _, n := range parsePage(t, page) {
		if n.Type != html.ElementNode {
			continue
		}
		if n.Data == "style" || (n.Data == "script" && n.FirstChild != nil) {
			t.Errorf("inline <%s>", n.Data)
		}
		for _, a := range n.Attr {
			switch {
			case a.Key == "style" || strings.HasPrefix(a.Key, "on"):
				t.Errorf("<%s %s=...>: inline style or handler", n.Data, a.Key)
			case a.Key == "src" || a.Key == "href" || a.Key == "action":
				if !strings.HasPrefix(a.Val, "/") && !strings.HasPrefix(a.Val, "?") || strings.HasPrefix(a.Val, "//") {
					t.Errorf("<%s %s=%q> is not a same-origin path", n.Data, a.Key, a.Val)
				}
				if strings.HasPrefix(a.Val, "/") {
					assets = append(assets, a.Val)
				}
			}
		}
	}
	wantType := map[string]string{demoJSPath: "text/javascript; charset=utf-8", demoCSSPath: "text/css; charset=utf-8"}
	if len(assets) != len(wantType) {
		t.Errorf("the page loads %q, want the script and the styles", assets)
	}
	absoluteURL := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`)
	for _, path := range assets {
		resp, body := get(t, srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantType[path] {
			t.Errorf("%s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", path)
		}
		if m := absoluteURL.FindString(body); m != "" {
			t.Errorf("%s names another origin: %q", path, m)
		}
	}
}

// TestDemoPageAccessible: every field has a label, each form submits with
// Enter (it has a submit button), and results go to a live region.
func TestDemoPageAccessible(t *testing.T) {
	t.Parallel()
	srv, _ := demoServer(t)
	for _, lang := range []string{"en", "zh"} {
		_, page := get(t, srv.URL+"/?lang="+lang, nil)
		nodes := parsePage(t, page)
		labels := map[string]string{}
		for _, n := range nodes {
			if n.Type == html.ElementNode && n.Data == "label" {
				if f, ok := attr(n, "for"); ok && n.FirstChild != nil {
					labels[f] = strings.TrimSpace(n.FirstChild.Data)
				}
			}
		}
		forms := 0
		for _, n := range nodes {
			if n.Type != html.ElementNode {
				continue
			}
			switch n.Data {
			case "input", "select", "textarea":
				id, _ := attr(n, "id")
				if labels[id] == "" {
					t.Errorf("%s: <%s id=%q> has no <label for>", lang, n.Data, id)
				}
				if d, ok := attr(n, "aria-describedby"); ok {
					for _, ref := range strings.Fields(d) {
						if byID(nodes, ref) == nil {
							t.Errorf("%s: aria-describedby names a missing %q", lang, ref)
						}
					}
				}
			case "form":
				forms++
				submits := 0
				for c := range n.Descendants() {
					if typ, _ := attr(c, "type"); c.Type == html.ElementNode && c.Data == "button" && typ == "submit" {
						submits++
					}
				}
				if submits != 1 {
					t.Errorf("%s: a form has %d submit buttons; Enter in a field needs one", lang, submits)
				}
			}
		}
		if forms != 3 {
			t.Errorf("%s: %d forms, want the send, change and undo forms", lang, forms)
		}
		status := byID(nodes, "status")
		if status == nil {
			t.Fatalf("%s: no #status", lang)
		}
		if live, _ := attr(status, "aria-live"); live != "polite" {
			t.Errorf("%s: #status has aria-live %q", lang, live)
		}
		for _, n := range nodes {
			if n.Type == html.ElementNode && n.Data == "title" && (n.FirstChild == nil || strings.TrimSpace(n.FirstChild.Data) == "") {
				t.Errorf("%s: empty <title>", lang)
			}
		}
	}
}

// TestDemoPageSettings: the page carries what its script needs to call the
// API as the demo user.
func TestDemoPageSettings(t *testing.T) {
	t.Parallel()
	srv, _ := demoServer(t)
	_, page := get(t, srv.URL+"/", nil)
	main := byID(parsePage(t, page), "demo")
	for key, want := range map[string]string{
		"data-client":      "demo-client",
		"data-token":       demoToken,
		"data-send-path":   selfservice.SendCodePath,
		"data-update-path": selfservice.UpdateEmailPath,
		"data-revert-path": selfservice.RevertEmailPath,
	} {
		if got, _ := attr(main, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func TestDemoRoutes(t *testing.T) {
	t.Parallel()
	srv, _ := demoServer(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodPost, demoUserPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "/demo/", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// TestDemoUser: GET /demo/user reads the store at each call, so the page
// shows a change the API made.
func TestDemoUser(t *testing.T) {
	t.Parallel()
	srv, users := demoServer(t)
	read := func() demoUser {
		t.Helper()
		resp, body := get(t, srv.URL+demoUserPath, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
		}
		var u demoUser
		if err := json.Unmarshal([]byte(body), &u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := read(); u != (demoUser{ID: "demo-user", Email: "15201657312@163.com", ClientIP: "127.0.0.1"}) {
		t.Fatalf("before: %+v", u)
	}
	email, canonical, err := selfservice.CanonicalEmail("New.Address@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := users.UpdateEmail(context.Background(), "demo-user", email, canonical); err != nil {
		t.Fatal(err)
	}
	if u := read(); u.Email != "New.Address@example.com" {
		t.Fatalf("after: %+v", u)
	}
}

func TestDemoUserMissing(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mountDemo(mux, demoPage{Users: memstore.NewUserStore(), UserID: "gone"})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if resp, _ := get(t, srv.URL+demoUserPath, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a missing demo user: %d", resp.StatusCode)
	}
}

// TestDemoRebindingHost: the page and GET /demo/user, which hand out the
// demo user's token and address, answer only requests that name this
// server in their Host. A page whose name was rebound to 127.0.0.1 reaches
// the listener, but its requests carry its own name: 421.
func TestDemoRebindingHost(t *testing.T) {
	t.Parallel()
	users := memstore.NewUserStore(store.User{ID: "demo-user", Email: "15201657312@163.com"})
	mux := http.NewServeMux()
	mountDemo(mux, demoPage{Users: users, UserID: "demo-user", ClientID: "demo-client", Token: demoToken, Hosts: []string{"demo.internal"}})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	withPort := func(host string) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	for _, c := range []struct {
		host string
		want int
	}{
		{withPort("rebind.attacker.example"), http.StatusMisdirectedRequest},
		{"rebind.attacker.example", http.StatusMisdirectedRequest},
		{withPort("localhost.attacker.example"), http.StatusMisdirectedRequest},
		{withPort("127.0.0.1.nip.io"), http.StatusMisdirectedRequest},
		{withPort("localhost."), http.StatusMisdirectedRequest},
		{withPort("demo.internal.attacker.example"), http.StatusMisdirectedRequest},
		{withPort("192.0.2.1"), http.StatusMisdirectedRequest},
		{withPort("127.0.0.1"), http.StatusOK},
		{withPort("127.0.0.2"), http.StatusOK},
		{"127.0.0.1", http.StatusOK},
		{withPort("localhost"), http.StatusOK},
		{"LocalHost", http.StatusOK},
		{withPort("::1"), http.StatusOK},
		{"[::1]", http.StatusOK},
		{withPort("demo.internal"), http.StatusOK},
	} {
		for _, path := range []string{"/", demoUserPath} {
			t.Run("Host "+c.host+" GET "+path, func(t *testing.T) {
				req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = c.host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != c.want {
					t.Fatalf("Host %s: %d, want %d", c.host, resp.StatusCode, c.want)
				}
				if c.want != http.StatusMisdirectedRequest {
					return
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want plain text", ct)
				}
				if body := string(b); strings.Contains(body, demoToken) || strings.Contains(body, "15201657312") {
					t.Errorf("the refusal gives the demo user away: %s", body)
				}
			})
		}
	}
}

func TestListenHosts(t *testing.T) {
	t.Parallel()
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, c := range []struct {
		flag string
		addr net.Addr
		want []string
	}{
		{"127.0.0.1:0", tcp("127.0.0.1:41234"), []string{"127.0.0.1"}},
		{"192.0.2.1:8080", tcp("192.0.2.1:8080"), []string{"192.0.2.1"}},
		{"demo.internal:8080", tcp("192.0.2.1:8080"), []string{"demo.internal", "192.0.2.1"}},
		{"0.0.0.0:8080", tcp("0.0.0.0:8080"), nil},
		{":8080", tcp("[::]:8080"), nil},
	} {
		if got := listenHosts(c.flag, c.addr); !slices.Equal(got, c.want) {
			t.Errorf("listenHosts(%q, %v) = %q, want %q", c.flag, c.addr, got, c.want)
		}
	}
}
