package i18n_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/locales"
)

// seedMessages are the seed page's codes and texts, verbatim: they are the
// wire contract and must never drift.
var seedMessages = []struct {
	code, en, zh string
}{
	{"IDAAS.SDK.PARAM.0001", "Device information is incomplete", "设备信息不完整"},
	{"IDAAS.SDK.PARAM.0002", "clientId cannot be empty", "clientId不能为空"},
	{"IDAAS.SDK.PARAM.0003", "The app is not registered, please register the app first", "应用未注册,请先注册应用"},
	{"IDAAS.SDK.PARAM.0015", "IdToken cannot be empty", "IdToken不能为空"},
	{"IDAAS.SDK.PARAM.0016", "IdToken is invalid or expired", "IdToken无效或已过期"},
	{"IDAAS.SDK.PARAM.0009", "Verification code cannot be empty", "验证码不能为空"},
	{"IDAAS.SDK.CAPTCHA.0007", "Incorrect verification code", "验证码不正确"},
	{"IDAAS.SDK.USER.0021", "The e-mail does not meet the verification rules", "邮箱不符合校验规则"},
	{"IDAAS.SDK.USER.0036", "E-mail already exists", "邮箱已存在"},
	{"IDAAS.SDK.USER.0001", "User not found", "用户未找到"},
}

// readLocaleFile decodes one embedded go-i18n file in its flat form
// (message id -> text).
func readLocaleFile(t *testing.T, name string) map[string]string {
	t.Helper()
	raw, err := fs.ReadFile(locales.FS(), name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s is not a flat id -> text JSON object: %v", name, err)
	}
	return m
}

func catalogCodes() []string {
	codes := make([]string, len(i18n.Codes()))
	for i, c := range i18n.Codes() {
		codes[i] = string(c)
	}
	return codes
}

func mailIDs() []string {
	ids := make([]string, len(i18n.MailMessages()))
	for i, m := range i18n.MailMessages() {
		ids[i] = m.ID
	}
	return ids
}

// allIDs are the IDs every locale file must hold, and the only ones it may:
// the catalog codes and the mail messages.
func allIDs() []string { return append(catalogCodes(), mailIDs()...) }

func TestLocaleFilesCoverCatalog(t *testing.T) {
	t.Parallel()
	ids := allIDs()
	for _, name := range []string{"active.en.json", "active.zh.json"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msgs := readLocaleFile(t, name)
			for _, id := range ids {
				if strings.TrimSpace(msgs[id]) == "" {
					t.Errorf("%s: no message for %s", name, id)
				}
			}
			for id := range msgs {
				if !slices.Contains(ids, id) {
					t.Errorf("%s: message %s is neither a catalog code nor a mail message", name, id)
				}
			}
		})
	}
}

func TestLocaleFilesAreTheOnlyOnes(t *testing.T) {
	t.Parallel()
	names, err := fs.Glob(locales.FS(), "active.*.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"active.en.json", "active.zh.json"}; !slices.Equal(names, want) {
		t.Errorf("embedded message files = %v, want %v", names, want)
	}
}

func TestChineseMessagesAreTranslated(t *testing.T) {
	t.Parallel()
	en := readLocaleFile(t, "active.en.json")
	zh := readLocaleFile(t, "active.zh.json")
	for _, code := range allIDs() {
		if zh[code] == en[code] {
			t.Errorf("%s: Chinese message equals the English one %q", code, en[code])
		}
		if !strings.ContainsFunc(zh[code], func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
			t.Errorf("%s: Chinese message %q has no Chinese character", code, zh[code])
		}
	}
}

func TestEnglishFileMatchesGoLiterals(t *testing.T) {
	t.Parallel()
	file := readLocaleFile(t, "active.en.json")
	seen := make(map[string]bool)
	literals := append(i18n.Messages(), i18n.MailMessages()...)
	for _, m := range literals {
		t.Run(m.ID, func(t *testing.T) {
			if seen[m.ID] {
				t.Fatalf("message %s is declared twice", m.ID)
			}
			seen[m.ID] = true
			if got, ok := file[m.ID]; !ok {
				t.Errorf("active.en.json lacks %s", m.ID)
			} else if got != m.Other {
				t.Errorf("active.en.json %s = %q, Go literal = %q", m.ID, got, m.Other)
			}
			if m.Description == "" {
				t.Errorf("%s has no Description for translators", m.ID)
			}
		})
	}
	if len(file) != len(literals) {
		t.Errorf("active.en.json has %d messages, i18n.Messages() and i18n.MailMessages() %d", len(file), len(literals))
	}
}

// templateFields matches the data a message uses, such as {{.Code}}.
var templateFields = regexp.MustCompile(`{{\s*\.(\w+)\s*}}`)

func fieldsOf(text string) []string {
	var fields []string
	for _, m := range templateFields.FindAllStringSubmatch(text, -1) {
		fields = append(fields, m[1])
	}
	slices.Sort(fields)
	return slices.Compact(fields)
}

func TestMailMessages(t *testing.T) {
	t.Parallel()
	en := readLocaleFile(t, "active.en.json")
	zh := readLocaleFile(t, "active.zh.json")
	codes := catalogCodes()
	for _, m := range i18n.MailMessages() {
		if !strings.HasPrefix(m.ID, "MAIL.") {
			t.Errorf("mail message %s lacks the MAIL. prefix", m.ID)
		}
		if slices.Contains(codes, m.ID) {
			t.Errorf("mail message %s is also a catalog code", m.ID)
		}
		// A translation must use exactly the data of the source text: a
		// misspelt field would print "<no value>" in a real mail.
		if got, want := fieldsOf(zh[m.ID]), fieldsOf(en[m.ID]); !slices.Equal(got, want) {
			t.Errorf("%s: Chinese text uses %v, English %v", m.ID, got, want)
		}
		for _, f := range fieldsOf(m.Other) {
			if !strings.Contains(m.Description, "{{."+f+"}}") {
				t.Errorf("%s: Description does not explain {{.%s}}", m.ID, f)
			}
		}
	}
}

// The layouts of package mail own a mail's links (the undo link of a
// notice): a message holding a URL or markup could send its readers
// elsewhere, or drop the link, in one language only.
func TestMailMessagesHoldNoLinks(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"active.en.json", "active.zh.json"} {
		msgs := readLocaleFile(t, name)
		for _, id := range mailIDs() {
			text := strings.ToLower(msgs[id])
			for _, bad := range []string{"http", "www.", "<", ">", "{{.undourl"} {
				if strings.Contains(text, bad) {
					t.Errorf("%s: %s holds %q: %q", name, id, bad, msgs[id])
				}
			}
		}
	}
}

func TestMessagesFollowCatalog(t *testing.T) {
	t.Parallel()
	ids := make([]string, len(i18n.Messages()))
	for i, m := range i18n.Messages() {
		ids[i] = m.ID
	}
	if codes := catalogCodes(); !slices.Equal(ids, codes) {
		t.Errorf("Messages IDs = %v\nCatalog codes = %v", ids, codes)
	}
	seen := make(map[i18n.Code]bool)
	for _, c := range i18n.Codes() {
		if seen[c] {
			t.Errorf("code %s appears twice in Codes", c)
		}
		seen[c] = true
		if !strings.HasPrefix(string(c), "IDAAS.SDK.") {
			t.Errorf("code %s lacks the IDAAS.SDK. prefix", c)
		}
		if s := c.Status(); s < 400 || s > 599 {
			t.Errorf("code %s has status %d, want 4xx or 5xx", c, s)
		}
	}
}

func TestSeedMessages(t *testing.T) {
	t.Parallel()
	b := i18n.Default()
	en, zh := b.Match("en", ""), b.Match("zh", "")
	enFile := readLocaleFile(t, "active.en.json")
	zhFile := readLocaleFile(t, "active.zh.json")
	for _, s := range seedMessages {
		t.Run(s.code, func(t *testing.T) {
			t.Parallel()
			if got := enFile[s.code]; got != s.en {
				t.Errorf("active.en.json = %q, want %q", got, s.en)
			}
			if got := zhFile[s.code]; got != s.zh {
				t.Errorf("active.zh.json = %q, want %q", got, s.zh)
			}
			if got := en.Message(i18n.Code(s.code)); got != s.en {
				t.Errorf("English bundle message = %q, want %q", got, s.en)
			}
			if got := zh.Message(i18n.Code(s.code)); got != s.zh {
				t.Errorf("Chinese bundle message = %q, want %q", got, s.zh)
			}
		})
	}
}

// The seed page answers all its codes with HTTP 400.
func TestSeedCodesAreBadRequest(t *testing.T) {
	t.Parallel()
	for _, s := range seedMessages {
		c := i18n.Code(s.code)
		switch {
		case !slices.Contains(i18n.Codes(), c):
			t.Errorf("%s is not in Codes", s.code)
		case c.Status() != http.StatusBadRequest:
			t.Errorf("%s has status %d, want 400", s.code, c.Status())
		}
	}
	if s := i18n.CodeInternal.Status(); s != http.StatusInternalServerError {
		t.Errorf("CodeInternal status = %d, want 500", s)
	}
	if s := i18n.Code("ACME.0001").Status(); s != http.StatusInternalServerError {
		t.Errorf("a code outside the catalog has status %d, want 500", s)
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	cause := errors.New("db: connection refused")
	wrapped := i18n.Wrap(i18n.CodeUserNotFound, cause)

	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"wrapped is the code", errors.Is(wrapped, i18n.CodeUserNotFound), true},
		{"wrapped unwraps to the cause", errors.Is(wrapped, cause), true},
		{"wrapped twice is still the code", errors.Is(fmt.Errorf("update: %w", wrapped), i18n.CodeUserNotFound), true},
		{"a code wrapped in text is the code", errors.Is(fmt.Errorf("update: %w", i18n.CodeUserNotFound), i18n.CodeUserNotFound), true},
		{"another code is another error", errors.Is(wrapped, i18n.CodeEmailExists), false},
		{"an *Error matches an *Error of its code", errors.Is(wrapped, &i18n.Error{Code: i18n.CodeUserNotFound}), true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if got, want := wrapped.Error(), "IDAAS.SDK.USER.0001: db: connection refused"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := i18n.CodeUserNotFound.Error(), "IDAAS.SDK.USER.0001"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestErrorOf(t *testing.T) {
	t.Parallel()
	cause := errors.New("redis: i/o timeout")
	limited := &i18n.Error{Code: i18n.CodeSendLimited, RetryAfter: 30 * time.Second}
	tests := []struct {
		name      string
		err       error
		code      i18n.Code
		retry     time.Duration
		keepCause error
	}{
		{"a code", i18n.CodeEmailExists, i18n.CodeEmailExists, 0, nil},
		{"a code in text", fmt.Errorf("step: %w", i18n.CodeEmailExists), i18n.CodeEmailExists, 0, nil},
		{"an *Error keeps its Retry-After", fmt.Errorf("step: %w", limited), i18n.CodeSendLimited, 30 * time.Second, nil},
		{"the outer of two wins", i18n.Wrap(i18n.CodeInternal, i18n.CodeTokenInvalid), i18n.CodeInternal, 0, nil},
		{"a joined code", errors.Join(cause, i18n.CodeTokenInvalid), i18n.CodeTokenInvalid, 0, cause},
		{"any other error is internal", cause, i18n.CodeInternal, 0, cause},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := i18n.ErrorOf(tt.err)
			if e.Code != tt.code || e.RetryAfter != tt.retry {
				t.Errorf("ErrorOf(%v) = %+v, want code %s, retry %v", tt.err, e, tt.code, tt.retry)
			}
			if tt.keepCause != nil && !errors.Is(e, tt.keepCause) {
				t.Errorf("ErrorOf(%v) lost the cause: %v", tt.err, e)
			}
		})
	}
	if i18n.ErrorOf(nil) != nil {
		t.Error("ErrorOf(nil) is not nil")
	}
}
