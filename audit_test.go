package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
)

func TestMaskEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"new@example.com": "n***@example.com",
		"N@example.com":   "N***@example.com",
		"用户@例子.广告":        "用***@例子.广告",
		"":                "***",
		"no-at-sign":      "***",
		"@example.com":    "***",
	} {
		if got := selfservice.MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

type eventLog struct {
	mu     sync.Mutex
	events []selfservice.Event
}

func (e *eventLog) add(_ context.Context, ev selfservice.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *eventLog) count(kind selfservice.EventKind) int {
	n := 0
	for _, k := range e.kinds() {
		if k == kind {
			n++
		}
	}
	return n
}

func (e *eventLog) kinds() []selfservice.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []selfservice.EventKind
	for _, ev := range e.events {
		k = append(k, ev.Kind)
	}
	return k
}

// TestAuditAndNotice follows a change: the events and log records it leaves
// name the user, client and device but never an address in clear or a
// code, and the old address is told of the change with the new one masked.
func TestAuditAndNotice(t *testing.T) {
	t.Parallel()
	logs, events := &testkit.SyncBuffer{}, &eventLog{}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))
		c.OnEvent = events.add
	}, mustUser(t, "alice", "Alice.Old@example.com"))
	good := token(t, "alice", nil)

	code := f.sendCode(t, "Alice.New@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if r := f.update(t, good, "zh", "Alice.New@example.com", wrong); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
		t.Fatalf("wrong code: %s", r.Raw)
	}
	if r := f.update(t, good, "zh", "Alice.New@example.com", code); r.Status != http.StatusOK {
		t.Fatalf("change: %s", r.Raw)
	}

	notice := waitForMail(t, f, selfservice.MailEmailChanged)
	if notice.To != "Alice.Old@example.com" || notice.NewEmail != "A***@example.com" || notice.Code != "" {
		t.Errorf("notice = %+v", notice)
	}
	// In every language: alice has none stored, and the request's zh is
	// the choice of whoever made the change.
	if notice.Language != language.Und || notice.ChangedAt.IsZero() {
		t.Errorf("notice language %s, time %v", notice.Language, notice.ChangedAt)
	}

	want := []selfservice.EventKind{selfservice.EventCodeSent, selfservice.EventCodeRejected, selfservice.EventEmailChanged}
	if got := events.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	events.mu.Lock()
	changed := events.events[2]
	events.mu.Unlock()
	if changed.UserID != "alice" || changed.ClientID != testClient || changed.Device.Fingerprint == "" ||
		changed.Email != "A***@example.com" || changed.OldEmail != "A***@example.com" || changed.Time.IsZero() {
		t.Errorf("email_changed event = %+v", changed)
	}

	secrets := []string{code, "alice.new@example.com", "alice.old@example.com", "Alice.New@example.com", "Alice.Old@example.com"}
	assertNoSecrets(t, "log", logs.String(), secrets)
	events.mu.Lock()
	assertNoSecrets(t, "events", fmt.Sprintf("%+v", events.events), secrets)
	events.mu.Unlock()
	if !strings.Contains(logs.String(), `"event":"email_changed"`) {
		t.Errorf("no email_changed log record in:\n%s", logs.String())
	}
}

// TestNoticeFailureKeepsChange checks that a notice that cannot be sent
// neither fails nor undoes the change, and is reported when given up.
func TestNoticeFailureKeepsChange(t *testing.T) {
	t.Parallel()
	logs, events := &testkit.SyncBuffer{}, &eventLog{}
	mailer := &noticeFailer{}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
		c.OnEvent = events.add
		c.Mailer = mailer
		c.NoticeMaxAge = 100 * time.Millisecond
	}, mustUser(t, "alice", "alice@example.com"))
	mailer.next = f.mail
	good := token(t, "alice", nil)
	code := f.sendCode(t, "fresh@example.com")
	if r := f.update(t, good, "en", "fresh@example.com", code); r.Status != http.StatusOK {
		t.Fatalf("change: %s", r.Raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(fmt.Sprint(events.kinds()), string(selfservice.EventNoticeFailed)) {
		if time.Now().After(deadline) {
			t.Fatalf("no notice_failed event; events %v", events.kinds())
		}
		time.Sleep(10 * time.Millisecond)
	}
	u, _ := f.users.User(t.Context(), "alice")
	if u.Email != "fresh@example.com" {
		t.Fatalf("email is %q after a failed notice", u.Email)
	}
	assertNoSecrets(t, "log", logs.String(), []string{"alice@example.com", "fresh@example.com", code})
	if !strings.Contains(logs.String(), "a***@example.com") {
		t.Errorf("the failure log does not name the masked address:\n%s", logs.String())
	}
}

// noticeFailer passes codes on to next and fails every notice with an error
// that quotes the recipient, as mail servers do.
type noticeFailer struct{ next selfservice.Mailer }

func (m *noticeFailer) Send(ctx context.Context, msg selfservice.Message) error {
	if msg.Kind == selfservice.MailEmailChanged {
		return errors.New("550 5.1.1 <" + msg.To + ">: mailbox unavailable")
	}
	return m.next.Send(ctx, msg)
}

func waitForMail(t *testing.T, f *fixture, kind selfservice.MailKind) selfservice.Message {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mail.mu.Lock()
		for _, m := range f.mail.msgs {
			if m.Kind == kind {
				f.mail.mu.Unlock()
				return m
			}
		}
		f.mail.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s mail within 5s", kind)
	return selfservice.Message{}
}

func assertNoSecrets(t *testing.T, what, text string, secrets []string) {
	t.Helper()
	lower := strings.ToLower(text)
	for _, s := range secrets {
		if s != "" && strings.Contains(lower, strings.ToLower(s)) {
			t.Errorf("%s holds %q in clear:\n%s", what, s, text)
		}
	}
}

// dropTime removes the time from log records, whose digits could otherwise
// contain a six-digit code by chance.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
