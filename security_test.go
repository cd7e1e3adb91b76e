package selfservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
)

// updateFailer fails ChangeEmail only, after the code was accepted.
type updateFailer struct {
	store.ChangeStore
	err error
}

func (u updateFailer) ChangeEmail(context.Context, store.EmailChange) error { return u.err }

// TestFaultAfterCodeAccepted: the user store fails after the code was
// accepted. The client gets the internal-error code, the email is unchanged,
// and the code is spent, as the README documents: the user asks for a new
// one.
func TestFaultAfterCodeAccepted(t *testing.T) {
	t.Parallel()
	var users *updateFailer
	f := newFixtureWith(t, func(c *selfservice.Config) {
		users = &updateFailer{ChangeStore: c.Users, err: errors.New("pq: could not serialize access due to concurrent update")}
		c.Users = users
	}, mustUser(t, "alice", "alice@example.com"))
	good := token(t, "alice", nil)
	code := f.sendCode(t, "new@example.com")
	r := f.update(t, good, "en", "new@example.com", code)
	if r.Status != http.StatusInternalServerError || r.Code != "IDAAS.SDK.SYS.9001" {
		t.Fatalf("got %d %s", r.Status, r.Raw)
	}
	if strings.Contains(r.Raw, "serialize") {
		t.Fatalf("body leaks the cause: %s", r.Raw)
	}
	u, _ := f.users.User(t.Context(), "alice")
	if u.Email != "alice@example.com" {
		t.Fatalf("email is %q after a failed update", u.Email)
	}
	users.err = nil // the store is back; the spent code stays spent
	if r := f.update(t, good, "en", "new@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
		t.Fatalf("the accepted code was reusable: %s", r.Raw)
	}
}

// TestNoAddressOracle: a wrong code for an address someone holds answers
// byte for byte like a wrong code for a free one, and takes as long.
func TestNoAddressOracle(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(c *selfservice.Config) {
		// Every sample must reach the code store: no try limit, no budget.
		c.MaxTries = 1 << 20
		c.Budgets = testkit.LooseBudgets()
	}, mustUser(t, "alice", "alice@example.com"), mustUser(t, "bob", "bob@example.com"))
	good := token(t, "alice", nil)
	f.sendCode(t, "bob@example.com")  // a live code for the taken address
	f.sendCode(t, "free@example.com") // and for a free one
	wrong := func(email string) (testReply reply, took time.Duration) {
		start := time.Now()
		r := f.update(t, good, "en", email, "000001")
		return r, time.Since(start)
	}
	taken, _ := wrong("bob@example.com")
	free, _ := wrong("free@example.com")
	none, _ := wrong("nobody-sent-this@example.com")
	for _, r := range []reply{free, none} {
		if r.Status != taken.Status || r.Raw != taken.Raw {
			t.Fatalf("answers differ: %d %s vs %d %s", taken.Status, taken.Raw, r.Status, r.Raw)
		}
	}

	// Timing: interleaved samples, compared by median. Both answers come
	// from the same code path (the code is refused before uniqueness is
	// looked at), so the medians agree within noise.
	const samples = 150
	var dTaken, dFree []time.Duration
	for range samples {
		_, a := wrong("bob@example.com")
		_, b := wrong("free@example.com")
		dTaken, dFree = append(dTaken, a), append(dFree, b)
	}
	mt, mf := median(dTaken), median(dFree)
	if ratio := float64(max(mt, mf)) / float64(min(mt, mf)); ratio > 1.5 {
		t.Errorf("median time %v for a taken address vs %v for a free one (ratio %.2f)", mt, mf, ratio)
	}
	t.Logf("median wrong-code answer: taken %v, free %v", mt, mf)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestErrorBodiesLeakNothing: every error body is exactly the two fields,
// and none carries a token, key id, URL, address or Go error text.
func TestErrorBodiesLeakNothing(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	}, mustUser(t, "alice", "alice@example.com"))
	good := token(t, "alice", nil)
	tampered := good[:len(good)-4] + "AAAA"
	f.fusers.fail(errors.New(`dial tcp 10.0.0.5:5432: connect: connection refused; SELECT email FROM users WHERE id='alice'`))
	var bodies []string
	for _, h := range []func(http.Header){
		auth(tampered),
		auth(good),
		headers(auth(good), set("X-client-id", "https://evil.example/"+strings.Repeat("x", 300))),
	} {
		hdr := baseHeaders("en")
		h(hdr)
		r := f.do(t, http.MethodPost, selfservice.UpdateEmailPath, hdr, `{"email":"secret.new@example.com","verify_code":"654321"}`)
		bodies = append(bodies, r.Raw)
	}
	for _, b := range bodies {
		var m map[string]any
		if err := json.Unmarshal([]byte(b), &m); err != nil || len(m) != 2 {
			t.Errorf("body %s is not exactly {error_code, error_msg}", b)
		}
		for _, secret := range []string{good[:20], "key-1", "http", "secret.new", "654321", "dial", "SELECT", "10.0.0.5", "alice"} {
			if strings.Contains(b, secret) {
				t.Errorf("body %s holds %q", b, secret)
			}
		}
	}
	assertNoSecrets(t, "log", logs.String(), []string{good, tampered, "654321", "secret.new@example.com"})
}

// TestCodeBindsToItsAddress: a code mailed to one mailbox never verifies
// another, however alike they look.
func TestCodeBindsToItsAddress(t *testing.T) {
	t.Parallel()
	good := token(t, "alice", nil)
	for _, p := range [][2]string{
		{"strasse@example.de", "straße@example.de"},
		{"a.b@example.com", "ab@example.com"},
		{"user@example.com", "user@example.co"},
		{"user@xn--bcher-kva.example", "user@bucher.example"},
	} {
		t.Run(p[0]+"->"+p[1], func(t *testing.T) {
			f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
			code := f.sendCode(t, p[0])
			if r := f.update(t, good, "en", p[1], code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("a code for %s changed the email to %s: %s", p[0], p[1], r.Raw)
			}
		})
	}
	t.Run("İ, which lower-cases to ASCII i, is refused at send", func(t *testing.T) {
		f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
		r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
			`{"email":"İadmin@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
		if r.Code != "IDAAS.SDK.USER.0021" {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
	})
	t.Run("IDN and its ASCII form are one address", func(t *testing.T) {
		f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
		code := f.sendCode(t, "user@bücher.example")
		if r := f.update(t, good, "en", "USER@xn--bcher-kva.example", code); r.Status != http.StatusOK {
			t.Fatalf("%s", r.Raw)
		}
	})
}

// TestConcurrentWrongGuesses: 50 parallel wrong guesses evaluate at most
// the try limit, and the right code is dead afterwards.
func TestConcurrentWrongGuesses(t *testing.T) {
	t.Parallel()
	// Budgets large enough that only the code's own try limit counts.
	f := newFixtureWith(t, func(c *selfservice.Config) { c.Budgets = testkit.LooseBudgets() },
		mustUser(t, "alice", "alice@example.com"))
	good := token(t, "alice", nil)
	code := f.sendCode(t, "target@example.com")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			guess := []byte("000000")
			guess[5] = byte('0' + i%10)
			guess[4] = byte('0' + i/10)
			if string(guess) == code {
				guess[0] = '9'
			}
			f.update(t, good, "en", "target@example.com", string(guess))
		})
	}
	wg.Wait()
	if r := f.update(t, good, "en", "target@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
		t.Fatalf("the code survived 50 wrong guesses: %s", r.Raw)
	}
}

// leakyMailer delivers (records) the message and then fails with an error
// that echoes its payload, as HTTP mail APIs do.
type leakyMailer struct{ next *recordingMailer }

func (m leakyMailer) Send(ctx context.Context, msg selfservice.Message) error {
	_ = m.next.Send(ctx, msg)
	return errors.New(`mail API 422: payload={"to":"` + strings.ToUpper(msg.To) + `","text":"Your code is ` + msg.Code + `"}`)
}

// TestFailedSendLeaksNoCode: a mailer error quoting the code and the
// address (in another case) reaches the log redacted, and the code it may
// have delivered is dead.
func TestFailedSendLeaksNoCode(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	var mail *recordingMailer
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))
		mail = &recordingMailer{}
		c.Mailer = leakyMailer{next: mail}
	}, mustUser(t, "alice", "alice@example.com"))
	r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":"Victim@Example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Code != "IDAAS.SDK.CAPTCHA.0006" {
		t.Fatalf("send: %s", r.Raw)
	}
	mail.mu.Lock()
	code := mail.msgs[0].Code
	mail.mu.Unlock()
	assertNoSecrets(t, "log", logs.String(), []string{code, "victim@example.com"})
	if !strings.Contains(logs.String(), "V***@Example.com") && !strings.Contains(logs.String(), "V***@EXAMPLE.COM") {
		t.Errorf("the log does not show the masked address:\n%s", logs.String())
	}
	if r := f.update(t, token(t, "alice", nil), "en", "victim@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
		t.Fatalf("the code of a failed send still works: %s", r.Raw)
	}
}
