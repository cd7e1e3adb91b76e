package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// TestRevertUndoesATakeover: a stolen session changes the owner's address
// twice; the token of the first notice, mailed to the owner, takes the
// account straight back, voids the token of the second change, locks
// further changes and tells the application.
func TestRevertUndoesATakeover(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	f := newFixtureWith(t, func(c *selfservice.Config) { c.OnEvent = events.add },
		mustUser(t, "victim", "Owner@example.com"))
	stolen := token(t, "victim", nil)
	f.changeTo(t, stolen, "thief@attacker.example")
	ownerToken := f.revertToken(t, "Owner@example.com")
	f.changeTo(t, stolen, "thief2@attacker.example")
	thiefToken := f.revertToken(t, "thief@attacker.example")

	if r := f.revert(t, ownerToken); r.Status != http.StatusOK {
		t.Fatalf("owner's undo: %d %s", r.Status, r.Raw)
	}
	if u, _ := f.users.User(t.Context(), "victim"); u.Email != "Owner@example.com" {
		t.Fatalf("after the undo the address is %q, want the owner's", u.Email)
	}
	for name, tok := range map[string]string{"the owner's token again": ownerToken, "the later change's token": thiefToken} {
		if r := f.revert(t, tok); r.Status != http.StatusBadRequest || r.Code != string(i18n.CodeRevertTokenInvalid) {
			t.Errorf("%s: %d %s, want 400 %s", name, r.Status, r.Raw, i18n.CodeRevertTokenInvalid)
		}
	}
	// The stolen session cannot change it again during the cool-off, in
	// either language.
	code := f.sendCode(t, "thief3@attacker.example")
	if r := f.update(t, stolen, "zh", "thief3@attacker.example", code); r.Status != http.StatusForbidden ||
		r.Code != string(i18n.CodeChangeLocked) || r.Msg != "撤销后暂时不能修改邮箱,请稍后重试" {
		t.Errorf("change during the cool-off: %d %s", r.Status, r.Raw)
	}

	events.mu.Lock()
	defer events.mu.Unlock()
	var reverted []selfservice.Event
	for _, e := range events.events {
		if e.Kind == selfservice.EventEmailReverted {
			reverted = append(reverted, e)
		}
	}
	if len(reverted) != 1 || reverted[0].UserID != "victim" || reverted[0].Email != "O***@example.com" ||
		reverted[0].OldEmail != "t***@attacker.example" || reverted[0].ClientID != testClient {
		t.Errorf("EventEmailReverted = %+v, want one for victim, O***@example.com from t***@attacker.example", reverted)
	}
}

// TestRevertGoAPI: the same undo through the Go API, with the checks of
// the endpoint.
func TestRevertGoAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
	f.changeTo(t, token(t, "alice", nil), "alice.new@example.com")
	tok := f.revertToken(t, "alice@example.com")
	caller := selfservice.Caller{ClientID: testClient, Device: middleware.Device{OSVersion: "ios17", Fingerprint: "fp", Agent: "app"}}
	for _, tt := range []struct {
		name string
		req  selfservice.RevertEmailRequest
		want error
	}{
		{"no device", selfservice.RevertEmailRequest{Caller: selfservice.Caller{ClientID: testClient}, RevertToken: tok}, i18n.CodeDeviceIncomplete},
		{"empty token", selfservice.RevertEmailRequest{Caller: caller}, i18n.CodeRevertTokenEmpty},
		{"malformed token", selfservice.RevertEmailRequest{Caller: caller, RevertToken: tok[:20]}, i18n.CodeRevertTokenInvalid},
		{"the token", selfservice.RevertEmailRequest{Caller: caller, RevertToken: " " + tok + " "}, nil},
		{"the token again", selfservice.RevertEmailRequest{Caller: caller, RevertToken: tok}, i18n.CodeRevertTokenInvalid},
	} {
		if err := f.svc.RevertEmail(t.Context(), tt.req); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%s: RevertEmail = %v, want %v", tt.name, err, tt.want)
		}
	}
	if u, _ := f.users.User(t.Context(), "alice"); u.Email != "alice@example.com" {
		t.Errorf("address %q after the undo", u.Email)
	}
}

// TestRevertRacesAChange: an undo and a new change of the same user at
// once end in one of the two serial orders, never in a change that
// survives the undo unnoticed.
func TestRevertRacesAChange(t *testing.T) {
	t.Parallel()
	for round := range 10 {
		f := newFixture(t, mustUser(t, "u", "owner@example.com"))
		tok := token(t, "u", nil)
		f.changeTo(t, tok, "first@example.com")
		undo := f.revertToken(t, "owner@example.com")
		code := f.sendCode(t, "second@example.com")
		var (
			wg             sync.WaitGroup
			change, revert reply
		)
		wg.Go(func() { change = f.update(t, tok, "en", "second@example.com", code) })
		wg.Go(func() { revert = f.revert(t, undo) })
		wg.Wait()
		if revert.Status != http.StatusOK {
			t.Fatalf("round %d: undo %d %s", round, revert.Status, revert.Raw)
		}
		u, _ := f.users.User(t.Context(), "u")
		switch {
		case change.Status == http.StatusOK:
			// The change came first: the undo took the account back past it
			// and voided its token.
			if u.Email != "owner@example.com" {
				t.Fatalf("round %d: change then undo left %q", round, u.Email)
			}
			if r := f.revert(t, f.revertToken(t, "first@example.com")); r.Code != string(i18n.CodeRevertTokenInvalid) {
				t.Fatalf("round %d: the raced change's token still works: %s", round, r.Raw)
			}
		case change.Code == string(i18n.CodeChangeLocked):
			if u.Email != "owner@example.com" {
				t.Fatalf("round %d: undo then refused change left %q", round, u.Email)
			}
		default:
			t.Fatalf("round %d: change %d %s", round, change.Status, change.Raw)
		}
	}
}

// TestRevertAfterSecretRotation: a notice recorded under a retired code
// secret is delivered with its token by a Service that lists the secret
// in PreviousCodeSecrets, and the token works there.
func TestRevertAfterSecretRotation(t *testing.T) {
	t.Parallel()
	hung := &noticeMailer{gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	defer close(hung.gate)
	f := newFixtureWith(t, func(c *selfservice.Config) { c.Mailer = hung }, mustUser(t, "u", "owner@example.com"))
	hung.next = f.mail
	f.changeTo(t, token(t, "u", nil), "new@example.com")
	<-hung.entered
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := f.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	old := f.cfg.CodeSecret
	cfg := f.cfg
	cfg.CodeSecret = []byte(strings.Repeat("n", selfservice.MinCodeSecretLen))
	cfg.PreviousCodeSecrets = [][]byte{old}
	mail := &noticeMailer{next: f.mail}
	cfg.Mailer = mail
	svc, err := selfservice.NewWithFastCourier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	waitFor(t, "the notice delivered after the rotation", func() bool { return len(mail.delivered()) == 1 })
	tok := mail.delivered()[0].RevertToken
	if tok == "" {
		t.Fatal("the notice recorded under the retired secret lost its token")
	}
	caller := selfservice.Caller{ClientID: testClient, Device: middleware.Device{OSVersion: "ios17", Fingerprint: "fp", Agent: "app"}}
	if err := svc.RevertEmail(t.Context(), selfservice.RevertEmailRequest{Caller: caller, RevertToken: tok}); err != nil {
		t.Fatalf("undo with a token of the retired secret: %v", err)
	}
}

// changedWithUndoBudget returns a fixture whose user "u" changed
// owner@example.com to new@example.com, with an undo budget of n failures
// an hour, and the undo token of the change.
func changedWithUndoBudget(t *testing.T, n int) (*fixture, string) {
	t.Helper()
	f := newFixtureWith(t, func(c *selfservice.Config) {
		b := testkit.LooseBudgets()
		b.RevertsPerIP = []store.Limit{{N: n, Window: time.Hour}}
		c.Budgets = b
	}, mustUser(t, "u", "owner@example.com"))
	f.changeTo(t, token(t, "u", nil), "new@example.com")
	return f, f.revertToken(t, "owner@example.com")
}

// TestRevertBudgetCountsFailures: failed undo attempts from one address
// are budgeted (429 with Retry-After once spent); a working token gives
// its slot back.
func TestRevertBudgetCountsFailures(t *testing.T) {
	t.Parallel()
	f, tok := changedWithUndoBudget(t, 3)
	if r := f.revert(t, tok); r.Status != http.StatusOK {
		t.Fatalf("undo: %s", r.Raw)
	}
	for i := range 3 {
		if r := f.revert(t, fmt.Sprintf("guess-%d", i)); r.Code != string(i18n.CodeRevertTokenInvalid) {
			t.Fatalf("guess %d: %s", i, r.Raw)
		}
	}
	r := f.revert(t, "guess-3")
	if r.Status != http.StatusTooManyRequests || r.Code != string(i18n.CodeRevertLimited) || r.Header.Get("Retry-After") == "" {
		t.Errorf("fourth failure: %d %s (Retry-After %q), want 429 %s", r.Status, r.Raw, r.Header.Get("Retry-After"), i18n.CodeRevertLimited)
	}
}

// TestRevertLiveTokenPastBudget: junk from the owner's address (a thief
// behind the same NAT) spends the undo budget, yet the owner's live token
// still works; a failing token past the budget is the refusal.
func TestRevertLiveTokenPastBudget(t *testing.T) {
	t.Parallel()
	f, tok := changedWithUndoBudget(t, 3)
	for i, junk := range []string{"x", "guess-1", strings.Repeat("A", 43), "x"} {
		want := i18n.CodeRevertTokenInvalid
		if i == 3 {
			want = i18n.CodeRevertLimited
		}
		if r := f.revert(t, junk); r.Code != string(want) {
			t.Fatalf("junk %d: %s, want %s", i, r.Raw, want)
		}
	}
	if r := f.revert(t, tok); r.Status != http.StatusOK {
		t.Fatalf("the owner's token past the budget: %s", r.Raw)
	}
	if r := f.revert(t, tok); r.Status != http.StatusTooManyRequests || r.Code != string(i18n.CodeRevertLimited) {
		t.Errorf("the spent token past the budget: %d %s, want 429 %s", r.Status, r.Raw, i18n.CodeRevertLimited)
	}
}

// TestCodeSecretRotation rotates the code secret across two replicas that
// share their stores, with codes in flight: first every replica accepts the
// new secret (CodeSecret old, PreviousCodeSecrets new), then each in turn
// stores under it (CodeSecret new, PreviousCodeSecrets old). While the
// replicas disagree, a code mailed by either verifies on the other, and so
// does the undo token of a change made by either: none is voided.
func TestCodeSecretRotation(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := []byte(strings.Repeat("o", selfservice.MinCodeSecretLen)), []byte(strings.Repeat("n", selfservice.MinCodeSecretLen))
	var users []store.User
	for i := range 4 {
		users = append(users, mustUser(t, fmt.Sprintf("u%d", i), fmt.Sprintf("old%d@example.com", i)))
	}
	// Replica a is still at the first step, replica b at the second.
	a := newFixtureWith(t, func(c *selfservice.Config) {
		c.CodeSecret, c.PreviousCodeSecrets = oldSecret, [][]byte{newSecret}
	}, users...)
	cfg := a.cfg
	cfg.CodeSecret, cfg.PreviousCodeSecrets = newSecret, [][]byte{oldSecret}
	bsvc, err := selfservice.NewWithFastCourier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bsvc.Shutdown(context.Background())
	b := &fixture{cfg: cfg, svc: bsvc, users: a.users, fusers: a.fusers, codes: a.codes, mail: a.mail, captcha: a.captcha}
	b.srv = httptest.NewServer(bsvc.Handler())
	defer b.srv.Close()

	for i, pair := range [][2]*fixture{{a, b}, {b, a}, {a, a}, {b, b}} {
		mailer, checker := pair[0], pair[1]
		to := fmt.Sprintf("new%d@example.com", i)
		code := mailer.sendCode(t, to)
		if r := checker.update(t, token(t, fmt.Sprintf("u%d", i), nil), "en", to, code); r.Status != http.StatusOK {
			t.Fatalf("pair %d: a code of one replica on the other: %d %s", i, r.Status, r.Raw)
		}
		undo := checker.revertToken(t, fmt.Sprintf("old%d@example.com", i))
		if r := mailer.revert(t, undo); r.Status != http.StatusOK {
			t.Fatalf("pair %d: an undo token of one replica on the other: %d %s", i, r.Status, r.Raw)
		}
	}
}
