package browser

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/cors"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// corsFor is the pattern the README shows: rs/cors in front of the API,
// allowing one origin, POST and exactly the headers the API reads.
func corsFor(origin string) *cors.Cors {
	return cors.New(cors.Options{
		AllowedOrigins: []string{origin},
		AllowedMethods: []string{http.MethodPost},
		AllowedHeaders: selfservice.RequestHeaders(),
		ExposedHeaders: []string{"Retry-After", "WWW-Authenticate"},
		MaxAge:         600,
	})
}

// mailbox keeps the codes the API mails.
type mailbox struct {
	mu    sync.Mutex
	codes map[string]string // to -> last code
}

func (m *mailbox) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.codes == nil {
		m.codes = map[string]string{}
	}
	m.codes[msg.To] = msg.Code
	return nil
}

func (m *mailbox) code(to string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.codes[to]
}

// request is one request as the API's server saw it, before rs/cors.
type request struct {
	method, path, origin string
}

// apiOrigin is the API on its own origin behind rs/cors, recording every
// request that reaches it.
type apiOrigin struct {
	srv   *httptest.Server
	users *memstore.UserStore
	mail  *mailbox
	token string

	mu   sync.Mutex
	seen []request
}

// newAPIOrigin serves the whole API over memory stores for user u1
// (old@example.com), letting only allowed call it from a browser.
func newAPIOrigin(t *testing.T, allowed string) *apiOrigin {
	t.Helper()
	email, canonical, err := selfservice.CanonicalEmail("old@example.com")
	if err != nil {
		t.Fatal(err)
	}
	a := &apiOrigin{
		users: memstore.NewUserStore(store.User{ID: "u1", Email: email, CanonicalEmail: canonical}),
		mail:  &mailbox{},
		token: testkit.Token(t, "u1", nil),
	}
	svc, err := selfservice.New(selfservice.Config{
		Users:      a.users,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testkit.Client}),
		Verifier:   testkit.Verifier(t),
		Mailer:     a.mail,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(strings.Repeat("k", selfservice.MinCodeSecretLen)),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	api := svc.Handler()
	withCORS := corsFor(allowed).Handler(api)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, request{r.Method, r.URL.Path, r.Header.Get("Origin")})
		a.mu.Unlock()
		withCORS.ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// count returns how many requests with method, path and origin arrived.
func (a *apiOrigin) count(method, path, origin string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.seen {
		if r == (request{method, path, origin}) {
			n++
		}
	}
	return n
}

// appOrigin serves an empty page: the origin a single-page app runs on.
func appOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><html lang=en><title>app</title><p>app</p></html>")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// apiHeaders is what a browser app sends: every header of the allow-list.
func apiHeaders(lang, token string) map[string]string {
	h := map[string]string{}
	for k, v := range testkit.Headers(lang) {
		h[k] = v[0]
	}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return h
}

// fetchResult is what the page's fetch saw.
type fetchResult struct {
	Status     int    `json:"status"`
	Body       string `json:"body"`
	RetryAfter string `json:"retryAfter"`
	Error      string `json:"error"` // set when the browser refused the call
}

// browserFetch runs fetch in the page open in ctx, so the request comes
// from that page's origin, and returns what the script could read.
func browserFetch(t *testing.T, ctx context.Context, url string, headers map[string]string, body string) fetchResult {
	t.Helper()
	h, _ := json.Marshal(headers)
	expr := `(async () => {
		try {
			const r = await fetch(` + jsString(url) + `, {method: "POST", headers: ` + string(h) + `, body: ` + jsString(body) + `});
			return {status: r.status, body: await r.text(), retryAfter: r.headers.get("Retry-After") || "", error: ""};
		} catch (e) {
			return {status: 0, body: "", retryAfter: "", error: String(e)};
		}
	})()`
	r, err := chromedp.Run(ctx, chromedp.Evaluate[fetchResult](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s: %v", url, err)
	}
	return r
}

// TestCrossOriginBrowser: a page on origin A calls the API on origin B
// through rs/cors in a real Chromium. The browser sends a preflight, then
// the call, and the script reads the answers, localised errors and
// Retry-After included; a header outside the list, and any page on a third
// origin, are refused by the browser before the API is called.
func TestCrossOriginBrowser(t *testing.T) {
	t.Parallel()
	app := appOrigin(t)
	other := appOrigin(t)
	api := newAPIOrigin(t, app.URL)
	ctx := newBrowser(t, 2*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(app.URL)); err != nil {
		t.Fatal(err)
	}
	sendURL, updateURL := api.srv.URL+selfservice.SendCodePath, api.srv.URL+selfservice.UpdateEmailPath
	const newEmail = "new@example.com"
	sendBody := `{"email":"` + newEmail + `","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`

	r := browserFetch(t, ctx, sendURL, apiHeaders("en", ""), sendBody)
	if r.Status != http.StatusOK {
		t.Fatalf("send from the allowed origin: %+v", r)
	}
	if n := api.count(http.MethodOptions, selfservice.SendCodePath, app.URL); n != 1 {
		t.Errorf("%d preflights for send, want 1", n)
	}
	code := api.mail.code(newEmail)
	if code == "" {
		t.Fatal("no code mailed")
	}

	// The script reads the API's error, in the language it asked for.
	r = browserFetch(t, ctx, updateURL, apiHeaders("zh", api.token), `{"email":"`+newEmail+`","verify_code":"`+wrongCode(code)+`"}`)
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "验证码不正确") {
		t.Fatalf("wrong code: %+v", r)
	}
	if n := api.count(http.MethodOptions, selfservice.UpdateEmailPath, app.URL); n != 1 {
		t.Errorf("%d preflights for update-email, want 1", n)
	}
	r = browserFetch(t, ctx, updateURL, apiHeaders("en", api.token), `{"email":"`+newEmail+`","verify_code":"`+code+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("update from the allowed origin: %+v", r)
	}
	if u, err := api.users.User(context.Background(), "u1"); err != nil || u.Email != newEmail {
		t.Fatalf("after the change the user is %+v (%v)", u, err)
	}

	// A second code within the minute is refused, and the script can read
	// how long to wait because Retry-After is exposed.
	r = browserFetch(t, ctx, sendURL, apiHeaders("en", ""), sendBody)
	if r.Status != http.StatusTooManyRequests || r.RetryAfter == "" {
		t.Fatalf("second send: %+v, want 429 with a readable Retry-After", r)
	}

	// A header outside the list fails the preflight: no POST is sent.
	posts := api.count(http.MethodPost, selfservice.SendCodePath, app.URL)
	h := apiHeaders("en", "")
	h["X-Extra"] = "1"
	r = browserFetch(t, ctx, sendURL, h, `{"email":"extra@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Error == "" {
		t.Errorf("a header outside the allow-list was let through: %+v", r)
	}
	if n := api.count(http.MethodPost, selfservice.SendCodePath, app.URL); n != posts {
		t.Errorf("the browser sent the POST with a refused header (%d POSTs, %d before)", n, posts)
	}

	// A page on another origin: the preflight is refused, the call never
	// leaves the browser, and the script learns nothing.
	if err := chromedp.Do(ctx, chromedp.Navigate(other.URL)); err != nil {
		t.Fatal(err)
	}
	r = browserFetch(t, ctx, sendURL, apiHeaders("en", ""), `{"email":"other@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Error == "" || r.Status != 0 {
		t.Errorf("a call from %s was not blocked: %+v", other.URL, r)
	}
	if n := api.count(http.MethodOptions, selfservice.SendCodePath, other.URL); n != 1 {
		t.Errorf("%d preflights from the other origin, want 1", n)
	}
	if n := api.count(http.MethodPost, selfservice.SendCodePath, other.URL); n != 0 {
		t.Errorf("%d POSTs from the other origin reached the API", n)
	}
	if c := api.mail.code("other@example.com"); c != "" {
		t.Error("a code was mailed for the other origin's call")
	}
}

func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// preflight sends what a browser sends before a cross-origin POST.
func preflight(t *testing.T, url, origin, method, headers string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// browserList is headers as a browser lists them in
// Access-Control-Request-Headers: lower case, sorted, comma-separated.
func browserList(headers ...string) string {
	var l []string
	for _, h := range headers {
		l = append(l, strings.ToLower(h))
	}
	slices.Sort(l)
	return strings.Join(l, ",")
}

// TestPreflight checks the pattern's answers with net/http alone, so it
// runs without Chromium: the allowed origin may send exactly the API's
// headers with POST, nothing more, and nobody else may.
func TestPreflight(t *testing.T) {
	t.Parallel()
	const app, stranger = "https://app.example.com", "https://evil.example.net"
	api := newAPIOrigin(t, app)
	all := browserList(selfservice.RequestHeaders()...)

	for _, c := range []struct {
		name, path, origin, method, headers string
		allowed                             bool
	}{
		{"all headers to send-code", selfservice.SendCodePath, app, http.MethodPost, all, true},
		{"all headers to update-email", selfservice.UpdateEmailPath, app, http.MethodPost, all, true},
		{"no header", selfservice.SendCodePath, app, http.MethodPost, "", true},
		{"one more header", selfservice.SendCodePath, app, http.MethodPost, browserList(append(selfservice.RequestHeaders(), "X-Extra")...), false},
		{"X-Forwarded-For", selfservice.SendCodePath, app, http.MethodPost, browserList("Content-Type", "X-Forwarded-For"), false},
		{"a header the API does not read", selfservice.SendCodePath, app, http.MethodPost, browserList("Content-Type", "X-CSRF-Token"), false},
		{"PUT", selfservice.SendCodePath, app, http.MethodPut, all, false},
		{"DELETE", selfservice.UpdateEmailPath, app, http.MethodDelete, all, false},
		{"other origin", selfservice.SendCodePath, stranger, http.MethodPost, all, false},
		{"origin with another port", selfservice.SendCodePath, app + ":8443", http.MethodPost, all, false},
		{"http instead of https", selfservice.SendCodePath, "http://app.example.com", http.MethodPost, all, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := preflight(t, api.srv.URL+c.path, c.origin, c.method, c.headers)
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("status %d: the CORS layer, not the API, answers a preflight", resp.StatusCode)
			}
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if !c.allowed {
				if acao != "" || resp.Header.Get("Access-Control-Allow-Headers") != "" {
					t.Errorf("refused preflight answered Allow-Origin %q, Allow-Headers %q", acao, resp.Header.Get("Access-Control-Allow-Headers"))
				}
				return
			}
			if acao != c.origin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", acao, c.origin)
			}
			if m := resp.Header.Get("Access-Control-Allow-Methods"); m != http.MethodPost {
				t.Errorf("Access-Control-Allow-Methods %q", m)
			}
			if got := resp.Header.Get("Access-Control-Allow-Headers"); got != c.headers {
				t.Errorf("Access-Control-Allow-Headers %q, want %q", got, c.headers)
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed: the token is a header, no cookie is needed")
			}
			if ma := resp.Header.Get("Access-Control-Max-Age"); ma != "600" {
				t.Errorf("Access-Control-Max-Age %q", ma)
			}
		})
	}

	// Each listed header is allowed on its own.
	for _, h := range selfservice.RequestHeaders() {
		resp := preflight(t, api.srv.URL+selfservice.SendCodePath, app, http.MethodPost, strings.ToLower(h))
		if got := resp.Header.Get("Access-Control-Allow-Headers"); got != strings.ToLower(h) {
			t.Errorf("%s alone: Access-Control-Allow-Headers %q", h, got)
		}
	}

	// No preflight reached the API.
	for _, path := range []string{selfservice.SendCodePath, selfservice.UpdateEmailPath} {
		if n := api.count(http.MethodOptions, path, app); n == 0 {
			t.Errorf("no preflight recorded for %s", path)
		}
	}
}

// TestActualRequestHeaders: the POST after the preflight carries the CORS
// answer headers on success and on error, so the script can read both.
func TestActualRequestHeaders(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	api := newAPIOrigin(t, app)
	post := func(origin, path, body string, h http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, api.srv.URL+path, strings.NewReader(body))
		req.Header = h
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	send := `{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`
	for _, c := range []struct {
		name       string
		want       int
		path, body string
	}{
		{"success", http.StatusOK, selfservice.SendCodePath, send},
		{"429", http.StatusTooManyRequests, selfservice.SendCodePath, send},
		{"400", http.StatusBadRequest, selfservice.UpdateEmailPath, `{"email":"new@example.com","verify_code":""}`},
	} {
		h := testkit.Headers("en")
		h.Set("Authorization", "Bearer "+api.token)
		resp := post(app, c.path, c.body, h)
		if resp.StatusCode != c.want {
			t.Fatalf("%s: status %d", c.name, resp.StatusCode)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != app {
			t.Errorf("%s: Access-Control-Allow-Origin %q", c.name, got)
		}
		if got := resp.Header.Get("Access-Control-Expose-Headers"); got != "Retry-After, Www-Authenticate" {
			t.Errorf("%s: Access-Control-Expose-Headers %q", c.name, got)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", c.name, resp.Header.Get("Vary"))
		}
	}
	// CORS does not authorise: a non-browser client from anywhere still
	// reaches the API; only browsers enforce the answer's absence of
	// Access-Control-Allow-Origin.
	resp := post("https://evil.example.net", selfservice.SendCodePath, `{"email":"x@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`, testkit.Headers("en"))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a POST from another origin without a browser: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
