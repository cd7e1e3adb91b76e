package selfservice_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice"
)

func ExampleRequestHeaders() {
	fmt.Println(strings.Join(selfservice.RequestHeaders(), ", "))
	// Output:
	// Content-Type, Authorization, X-operating-sys-version, X-device-fingerprint, X-device-ip, X-agent, X-L, X-client-id
}

// allowList is RequestHeaders in canonical form.
func allowList() []string {
	var hs []string
	for _, h := range selfservice.RequestHeaders() {
		hs = append(hs, http.CanonicalHeaderKey(h))
	}
	slices.Sort(hs)
	return hs
}

// TestRequestHeadersSuffice: a request carrying exactly the listed headers
// goes through both endpoints, so a browser allowed just these can run the
// whole flow.
func TestRequestHeadersSuffice(t *testing.T) {
	t.Parallel()
	f := newFixture(t, mustUser(t, "u1", "old@example.com"))
	h := baseHeaders("en")
	h.Set("Authorization", "Bearer "+token(t, "u1", nil))
	var sent []string
	for k := range h {
		sent = append(sent, k)
	}
	slices.Sort(sent)
	if want := allowList(); !slices.Equal(sent, want) {
		t.Fatalf("the test request sends %q, the allow-list is %q", sent, want)
	}
	code := f.sendCode(t, "new@example.com")
	if r := f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h, `{"email":"new@example.com","verify_code":`+quote(code)+`}`); r.Status != http.StatusOK {
		t.Fatalf("update with the listed headers only: %d %s", r.Status, r.Raw)
	}
}

// TestRequestHeadersAreRead: each listed header changes the answer, so none
// is in the list for nothing.
func TestRequestHeadersAreRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, mustUser(t, "u1", "old@example.com"))
	tok := token(t, "u1", nil)
	// No code was sent to this address: the baseline is a wrong code.
	const body = `{"email":"new@example.com","verify_code":"000000"}`
	full := func() http.Header {
		h := baseHeaders("en")
		h.Set("Authorization", "Bearer "+tok)
		return h
	}
	base := f.do(t, http.MethodPost, selfservice.UpdateEmailPath, full(), body)
	if base.Code != "IDAAS.SDK.CAPTCHA.0007" || base.Msg != "Incorrect verification code" {
		t.Fatalf("baseline: %d %s", base.Status, base.Raw)
	}
	cases := map[string]struct {
		edit     func(http.Header)
		wantCode string
		wantMsg  string
	}{
		"Content-Type":            {func(h http.Header) { h.Del("Content-Type") }, "IDAAS.SDK.REQ.9102", ""},
		"Authorization":           {func(h http.Header) { h.Del("Authorization") }, "IDAAS.SDK.PARAM.0015", ""},
		"X-operating-sys-version": {func(h http.Header) { h.Del("X-Operating-Sys-Version") }, "IDAAS.SDK.PARAM.0001", ""},
		"X-device-fingerprint":    {func(h http.Header) { h.Del("X-Device-Fingerprint") }, "IDAAS.SDK.PARAM.0001", ""},
		"X-device-ip":             {func(h http.Header) { h.Set("X-Device-Ip", "not-an-ip") }, "IDAAS.SDK.PARAM.0001", ""},
		"X-agent":                 {func(h http.Header) { h.Del("X-Agent") }, "IDAAS.SDK.PARAM.0001", ""},
		"X-L":                     {func(h http.Header) { h.Set("X-L", "zh") }, "IDAAS.SDK.CAPTCHA.0007", "验证码不正确"},
		"X-client-id":             {func(h http.Header) { h.Del("X-Client-Id") }, "IDAAS.SDK.PARAM.0002", ""},
	}
	for _, name := range selfservice.RequestHeaders() {
		c, ok := cases[name]
		if !ok {
			t.Errorf("%s is allowed but no case here shows the API reads it", name)
			continue
		}
		h := full()
		c.edit(h)
		r := f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h, body)
		if r.Code != c.wantCode || (c.wantMsg != "" && r.Msg != c.wantMsg) {
			t.Errorf("%s changed: got %d %s, want %s %s", name, r.Status, r.Raw, c.wantCode, c.wantMsg)
		}
	}
}

// TestRequestHeadersCoverSource reads the package's and the middlewares'
// sources: every X-... header name or Authorization they mention is either
// in RequestHeaders or deliberately not sent by browsers. A header added to
// the API without being added to the list fails here.
func TestRequestHeadersCoverSource(t *testing.T) {
	t.Parallel()
	notFromBrowsers := map[string]string{
		"X-Forwarded-For": "set by proxies; believed only through TrustProxies",
	}
	allowed := allowList()
	headerName := regexp.MustCompile(`^(X-[A-Za-z0-9-]+|Authorization)$`)
	var files []string
	for _, dir := range []string{".", "middleware", "i18n"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	seen := map[string]bool{}
	fset := gotoken.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != gotoken.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !headerName.MatchString(s) {
				return true
			}
			name := http.CanonicalHeaderKey(s)
			seen[name] = true
			if _, skip := notFromBrowsers[name]; !skip && !slices.Contains(allowed, name) {
				t.Errorf("%s: the API reads %s, which RequestHeaders does not list", fset.Position(lit.Pos()), s)
			}
			return true
		})
	}
	for _, name := range allowed {
		if name != "Content-Type" && !seen[name] {
			t.Errorf("RequestHeaders lists %s, which no source file names", name)
		}
	}
}
