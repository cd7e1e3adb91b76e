package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/redistest"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/redisstore"
)

// clock is a Config.Now the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// limiters are the Limiter implementations the budget tests run on; Redis
// only when SELFSERVICE_TEST_REDIS is set.
var limiters = []struct {
	name string
	new  func(t *testing.T) store.Limiter
}{
	{"memory", func(*testing.T) store.Limiter { return memstore.NewLimiter() }},
	{"redis", func(t *testing.T) store.Limiter {
		rdb, prefix := redistest.Open(t)
		return redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
	}},
}

// forEachLimiter runs test once per Limiter implementation.
func forEachLimiter(t *testing.T, test func(t *testing.T, newLimiter func(t *testing.T) store.Limiter)) {
	t.Helper()
	for _, l := range limiters {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			test(t, l.new)
		})
	}
}

// fromIP makes every request come from ip, as a trusted proxy in front of
// the test server reports it.
func fromIP(ip string) func(http.Header) {
	return set("X-Forwarded-For", ip)
}

func trustLoopback(c *selfservice.Config) {
	c.ClientIP = selfservice.TrustProxies(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
}

// send asks for a code for email with extra headers.
func (f *fixture) send(t testing.TB, email string, mods ...func(http.Header)) reply {
	t.Helper()
	h := baseHeaders("en")
	for _, m := range mods {
		m(h)
	}
	return f.do(t, http.MethodPost, selfservice.SendCodePath, h,
		`{"email":`+quote(email)+`,"type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
}

// guess submits code for email with tok and extra headers.
func (f *fixture) guess(t testing.TB, tok, email, code string, mods ...func(http.Header)) reply {
	t.Helper()
	h := baseHeaders("en")
	h.Set("Authorization", "Bearer "+tok)
	for _, m := range mods {
		m(h)
	}
	return f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h,
		`{"email":`+quote(email)+`,"verify_code":`+quote(code)+`}`)
}

// lastCode returns the code last mailed to email.
func (f *fixture) lastCode(t testing.TB, email string) string {
	t.Helper()
	f.mail.mu.Lock()
	defer f.mail.mu.Unlock()
	for i := len(f.mail.msgs) - 1; i >= 0; i-- {
		if m := f.mail.msgs[i]; m.To == email && m.Code != "" {
			return m.Code
		}
	}
	t.Fatalf("no code mailed to %s", email)
	return ""
}

// wrongFor returns a well-formed code that is not code.
func wrongFor(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

// assertLimited checks a 429 with the code and a Retry-After of want
// seconds (0: any positive value).
func assertLimited(t *testing.T, what string, r reply, code string, want int) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests || r.Code != code {
		t.Fatalf("%s: %d %s, want 429 %s", what, r.Status, r.Raw, code)
	}
	got, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || got <= 0 {
		t.Fatalf("%s: Retry-After %q, want whole positive seconds", what, r.Header.Get("Retry-After"))
	}
	if want > 0 && got != want {
		t.Errorf("%s: Retry-After %d, want %d", what, got, want)
	}
}

// TestBudgetsStopTheReplayedAttack replays the attack of issue 9: one
// signed-in account, one client id, one device, one IP mails codes to as
// many addresses as it can and guesses five times each. The defaults stop
// it after 30 sends an hour and 10 wrong codes an hour (20 a day); then
// even the right code is refused, and it is not spent.
func TestBudgetsStopTheReplayedAttack(t *testing.T) {
	forEachLimiter(t, func(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
		clk := newClock()
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Now = clk.Now
			c.Limiter = newLimiter(t)
		}, mustUser(t, "mallory", "mallory@example.com"), mustUser(t, "bob", "bob@example.com"))
		tok := token(t, "mallory", nil)

		sends, evaluations, refusedGuesses := 0, 0, 0
		for i := range 1000 {
			addr := fmt.Sprintf("victim%d@example.com", i)
			r := f.send(t, addr)
			if r.Status == http.StatusTooManyRequests {
				assertLimited(t, "send past the IP budget", r, "IDAAS.SDK.CAPTCHA.9201", 0)
				break
			}
			if r.Status != http.StatusOK {
				t.Fatalf("send %d: %s", i, r.Raw)
			}
			sends++
			for range 5 {
				before := f.codes.calls()
				r := f.guess(t, tok, addr, wrongFor(f.lastCode(t, addr)))
				switch {
				case r.Status == http.StatusTooManyRequests:
					assertLimited(t, "guess past the user budget", r, "IDAAS.SDK.CAPTCHA.9205", 0)
					refusedGuesses++
					if f.codes.calls() != before {
						t.Fatal("a refused guess reached the code store")
					}
				case r.Code == "IDAAS.SDK.CAPTCHA.0007":
					evaluations++
				default:
					t.Fatalf("guess: %s", r.Raw)
				}
			}
		}
		if sends != 30 || evaluations != 10 {
			t.Fatalf("in the first hour: %d sends and %d code evaluations, want 30 and 10", sends, evaluations)
		}

		// The right code is refused too, and stays alive: another user,
		// whose budget is untouched, still has it accepted.
		clk.advance(time.Hour) // the IP's hourly send budget is back
		if r := f.send(t, "prize@example.com"); r.Status != http.StatusOK {
			t.Fatalf("send after an hour: %s", r.Raw)
		}
		code := f.lastCode(t, "prize@example.com")
		for range 10 {
			if r := f.guess(t, tok, "elsewhere@example.com", "123456"); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("second hour, guess: %s", r.Raw)
			}
		}
		before := f.codes.calls()
		r := f.guess(t, tok, "prize@example.com", code)
		// The daily budget (20) is spent: the oldest failure leaves it
		// 24 hours after it was made, 23 hours from now.
		assertLimited(t, "the right code with the budget spent", r, "IDAAS.SDK.CAPTCHA.9205", 23*3600)
		if f.codes.calls() != before {
			t.Fatal("the right code was evaluated although the budget was spent")
		}
		if r := f.guess(t, token(t, "bob", nil), "prize@example.com", code); r.Status != http.StatusOK {
			t.Fatalf("the code did not survive the refusal: %s", r.Raw)
		}
	})
}

// TestBudgetsIgnoreWhatClientsRotate: with the default ClientIP, nothing a
// client sends resets a budget: X-device-ip, X-Forwarded-For, X-client-id,
// the device headers, X-L and the case of the address all change on every
// guess, and the user's budget still ends after 10 wrong codes, the IP's
// sends after 30.
func TestBudgetsIgnoreWhatClientsRotate(t *testing.T) {
	forEachLimiter(t, func(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Limiter = newLimiter(t)
			c.Clients = memstore.NewClientRegistry(store.Client{ID: testClient}, store.Client{ID: "client-2"})
		}, mustUser(t, "mallory", "mallory@example.com"))
		tokens := map[string]string{
			testClient: token(t, "mallory", nil),
			"client-2": token(t, "mallory", func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"client-2"} }),
		}
		rotate := func(i int) func(http.Header) {
			client := []string{testClient, "client-2"}[i%2]
			return func(h http.Header) {
				h.Set("X-device-ip", fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256))
				h.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%256))
				h.Set("X-client-id", client)
				h.Set("X-device-fingerprint", fmt.Sprintf("device-%d", i))
				h.Set("X-agent", fmt.Sprintf("agent-%d", i))
				h.Set("X-operating-sys-version", fmt.Sprintf("os-%d", i))
				h.Set("X-L", []string{"en", "zh", "zh-CN", "en-US"}[i%4])
			}
		}
		evaluations := 0
		for i := range 30 {
			client := []string{testClient, "client-2"}[i%2]
			addr := fmt.Sprintf("Target%d@Example.COM", i%3)
			r := f.guess(t, tokens[client], addr, "123456", rotate(i))
			if r.Status == http.StatusTooManyRequests {
				assertLimited(t, "rotated guess", r, "IDAAS.SDK.CAPTCHA.9205", 0)
				continue
			}
			if r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("guess %d: %s", i, r.Raw)
			}
			evaluations++
		}
		if evaluations != 10 {
			t.Errorf("%d code evaluations with rotated headers, want 10", evaluations)
		}
		sends := 0
		for i := range 40 {
			if r := f.send(t, fmt.Sprintf("v%d@example.com", i), rotate(i)); r.Status == http.StatusOK {
				sends++
			}
		}
		if sends != 30 {
			t.Errorf("%d sends with rotated headers, want 30", sends)
		}
	})
}

// TestIPBudgetsSpanAccounts: many accounts behind one IP share its budget of
// wrong codes (50 an hour), while another IP keeps its own.
func TestIPBudgetsSpanAccounts(t *testing.T) {
	forEachLimiter(t, func(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
		var users []store.User
		for i := range 24 {
			users = append(users, mustUser(t, fmt.Sprintf("u%d", i), ""))
		}
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Limiter = newLimiter(t)
			trustLoopback(c)
		}, users...)
		evaluations := 0
		for i := range 12 {
			tok := token(t, fmt.Sprintf("u%d", i), nil)
			for range 5 {
				if r := f.guess(t, tok, "target@example.com", "123456", fromIP("198.51.100.7")); r.Code == "IDAAS.SDK.CAPTCHA.0007" {
					evaluations++
				} else {
					assertLimited(t, "guess past the IP budget", r, "IDAAS.SDK.CAPTCHA.9205", 0)
				}
			}
		}
		if evaluations != 50 {
			t.Errorf("%d evaluations from one IP over 12 accounts, want 50", evaluations)
		}
		if r := f.guess(t, token(t, "u11", nil), "target@example.com", "123456", fromIP("198.51.100.8")); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Errorf("another IP is refused too: %s", r.Raw)
		}
		// An IPv6 subscriber cannot step out of its budget by moving
		// within its /64; the next /64 is another subscriber. Fresh users
		// (u12...u23, at most 5 guesses each) keep their own budgets out
		// of the way.
		for i := range 50 {
			r := f.guess(t, token(t, fmt.Sprintf("u%d", 12+i%12), nil), "target@example.com", "123456", fromIP(fmt.Sprintf("2001:db8:1:2::%x", i+1)))
			if r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("IPv6 guess %d: %s", i, r.Raw)
			}
		}
		r := f.guess(t, token(t, "u23", nil), "target@example.com", "123456", fromIP("2001:db8:1:2:ffff::1"))
		assertLimited(t, "guess from the same /64", r, "IDAAS.SDK.CAPTCHA.9205", 0)
		if r := f.guess(t, token(t, "u23", nil), "target@example.com", "123456", fromIP("2001:db8:1:3::1")); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Errorf("the next /64 is refused too: %s", r.Raw)
		}
	})
}

// TestRetryAfterIsExact: each budget's 429 carries the whole seconds until
// the oldest event that fills it leaves its window, rounded up.
func TestRetryAfterIsExact(t *testing.T) {
	forEachLimiter(t, func(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
		clk := newClock()
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Now = clk.Now
			c.Limiter = newLimiter(t)
			trustLoopback(c)
		}, mustUser(t, "alice", ""))
		tok := token(t, "alice", nil)

		// Sends per address: 1 a minute.
		if r := f.send(t, "a@example.com"); r.Status != http.StatusOK {
			t.Fatal(r.Raw)
		}
		clk.advance(10*time.Second + 500*time.Millisecond)
		assertLimited(t, "second send within the minute", f.send(t, "A@example.com"), "IDAAS.SDK.CAPTCHA.9201", 50)
		clk.advance(49*time.Second + 500*time.Millisecond)
		if r := f.send(t, "a@example.com"); r.Status != http.StatusOK {
			t.Fatalf("send once the minute is over: %s", r.Raw)
		}

		// Sends per IP: 30 an hour, the first at t0.
		t0 := clk.Now()
		for i := range 29 {
			if r := f.send(t, fmt.Sprintf("ip%d@example.com", i), fromIP("192.0.2.1")); r.Status != http.StatusOK {
				t.Fatalf("send %d: %s", i, r.Raw)
			}
			clk.advance(time.Second)
		}
		if r := f.send(t, "ip29@example.com", fromIP("192.0.2.1")); r.Status != http.StatusOK {
			t.Fatalf("send 30: %s", r.Raw)
		}
		clk.advance(100 * time.Second)
		// The first send of 192.0.2.1 was at t0; it leaves the window at
		// t0+1h.
		want := int(t0.Add(time.Hour).Sub(clk.Now()) / time.Second)
		assertLimited(t, "send past the IP's hourly budget", f.send(t, "ip30@example.com", fromIP("192.0.2.1")), "IDAAS.SDK.CAPTCHA.9201", want)

		// Wrong codes per user: 10 an hour.
		t1 := clk.Now()
		for range 10 {
			f.guess(t, tok, "b@example.com", "123456")
			clk.advance(time.Second)
		}
		clk.advance(90*time.Second + 250*time.Millisecond)
		wantSecs := int((t1.Add(time.Hour).Sub(clk.Now()) + time.Second - 1) / time.Second)
		assertLimited(t, "guess past the user's hourly budget", f.guess(t, tok, "b@example.com", "123456"), "IDAAS.SDK.CAPTCHA.9205", wantSecs)
		clk.advance(time.Duration(wantSecs) * time.Second)
		if r := f.guess(t, tok, "b@example.com", "123456"); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Fatalf("guess after Retry-After: %s", r.Raw)
		}
	})
}

// TestRateLimitTellsNothingAboutAddresses: once a budget is spent the
// answer for a registered address and for a free one is the same, headers
// included.
func TestRateLimitTellsNothingAboutAddresses(t *testing.T) {
	t.Parallel()
	clk := newClock()
	f := newFixtureWith(t, func(c *selfservice.Config) { c.Now = clk.Now },
		mustUser(t, "mallory", ""), mustUser(t, "bob", "bob@example.com"))
	tok := token(t, "mallory", nil)
	for range 10 {
		f.guess(t, tok, "free@example.com", "123456")
	}
	registered := f.guess(t, tok, "bob@example.com", "123456")
	free := f.guess(t, tok, "free@example.com", "123456")
	if registered.Raw != free.Raw || registered.Status != free.Status || registered.Header.Get("Retry-After") != free.Header.Get("Retry-After") {
		t.Errorf("registered: %d %s %q; free: %d %s %q", registered.Status, registered.Raw, registered.Header.Get("Retry-After"),
			free.Status, free.Raw, free.Header.Get("Retry-After"))
	}
	for _, addr := range []string{"bob@example.com", "free@example.com"} {
		f.send(t, addr)
	}
	regSend, freeSend := f.send(t, "bob@example.com"), f.send(t, "free@example.com")
	if regSend.Raw != freeSend.Raw || regSend.Header.Get("Retry-After") != freeSend.Header.Get("Retry-After") {
		t.Errorf("send, registered: %s %q; free: %s %q", regSend.Raw, regSend.Header.Get("Retry-After"), freeSend.Raw, freeSend.Header.Get("Retry-After"))
	}
}

// TestReplicasShareBudgets: two Services on one Redis count every budget
// together.
func TestReplicasShareBudgets(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Open(t)
	shared := func(c *selfservice.Config) {
		c.Limiter = redisstore.NewLimiter(rdb, redisstore.Options{Prefix: prefix})
		c.Codes = redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: prefix})
		trustLoopback(c)
	}
	a := newFixtureWith(t, shared, mustUser(t, "mallory", ""))
	b := newFixtureWith(t, shared, mustUser(t, "mallory", ""))
	tok := token(t, "mallory", nil)
	evaluations := 0
	for i := range 20 {
		f := []*fixture{a, b}[i%2]
		if r := f.guess(t, tok, "x@example.com", "123456"); r.Code == "IDAAS.SDK.CAPTCHA.0007" {
			evaluations++
		}
	}
	if evaluations != 10 {
		t.Errorf("two replicas evaluated %d wrong codes, want 10 in all", evaluations)
	}
	sends := 0
	for i := range 40 {
		f := []*fixture{a, b}[i%2]
		if r := f.send(t, fmt.Sprintf("r%d@example.com", i)); r.Status == http.StatusOK {
			sends++
		}
	}
	if sends != 30 {
		t.Errorf("two replicas mailed %d codes for one IP, want 30", sends)
	}
	// From an IP with its budget intact, only the address budget can
	// refuse: a@ was mailed by a, b refuses it.
	if r := b.send(t, "r0@example.com", fromIP("192.0.2.99")); r.Code != "IDAAS.SDK.CAPTCHA.9201" {
		t.Errorf("the address budget is not shared: %s", r.Raw)
	}
	if r := b.send(t, "fresh@example.com", fromIP("192.0.2.99")); r.Status != http.StatusOK {
		t.Errorf("send from a fresh IP to a fresh address: %s", r.Raw)
	}
}

// TestConcurrentGuessesCannotOverdraw: 40 parallel wrong guesses by one user
// get exactly 10 evaluations; the budget is charged before the code is
// checked, not after. The change budget, charged with it and given back on
// a wrong code, is loosened: five guesses in flight would hold it all and
// be refused early (USER.9206), evaluating fewer.
func TestConcurrentGuessesCannotOverdraw(t *testing.T) {
	forEachLimiter(t, func(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Limiter = newLimiter(t)
			c.Budgets.ChangesPerUser = []store.Limit{{N: 1000, Window: time.Hour}}
		}, mustUser(t, "mallory", ""))
		tok := token(t, "mallory", nil)
		f.sendCode(t, "target@example.com")
		var wg sync.WaitGroup
		for range 40 {
			wg.Go(func() { f.guess(t, tok, "target@example.com", "999999") })
		}
		wg.Wait()
		if got := f.codes.calls() - 1; got != 10 { // one call was the Put
			t.Errorf("%d evaluations, want 10", got)
		}
	})
}

func TestBudgetsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		budgets selfservice.Budgets
		ok      bool
	}{
		{"zero value takes the defaults", selfservice.Budgets{}, true},
		{"own limits", selfservice.Budgets{SendsPerIP: []store.Limit{{N: 5, Window: time.Hour}}}, true},
		{"empty list is not off", selfservice.Budgets{WrongCodesPerUser: []store.Limit{}}, false},
		{"zero N", selfservice.Budgets{WrongCodesPerIP: []store.Limit{{N: 0, Window: time.Hour}}}, false},
		{"negative window", selfservice.Budgets{SendsPerEmail: []store.Limit{{N: 1, Window: -time.Second}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			cfg.Budgets = tc.budgets
			_, err := selfservice.New(cfg)
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func validConfig(t *testing.T) selfservice.Config {
	return selfservice.Config{
		Users:      memstore.NewUserStore(),
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(),
		Verifier:   testkit.Verifier(t),
		Mailer:     &recordingMailer{},
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: make([]byte, selfservice.MinCodeSecretLen),
	}
}

// A send that mails nothing because the code store failed costs no budget:
// an outage, or a store an attacker filled, must not lock the user out for
// a day. A send whose mail failed does cost one: the mail may have left.
func TestFailedStoreCostsNoSendBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	send := func() reply {
		return f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
			`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	}
	f.codes.fail(store.ErrFull)
	for i := range 3 {
		if r := send(); r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeInternal) {
			t.Fatalf("send %d with the code store failing: %d %s, want 500 %s", i, r.Status, r.Raw, i18n.CodeInternal)
		}
	}
	f.codes.fail(nil)
	if r := send(); r.Status != http.StatusOK {
		t.Fatalf("send once the store is back: %d %s, want 200 (the failed sends cost no budget)", r.Status, r.Raw)
	}
	if r := send(); r.Status != http.StatusTooManyRequests || r.Code != string(i18n.CodeSendLimited) {
		t.Fatalf("second send within the minute: %d %s, want 429 %s", r.Status, r.Raw, i18n.CodeSendLimited)
	}

	g := newFixture(t)
	g.mail.fail(errors.New("smtp: 451"))
	if r := g.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`); r.Status != http.StatusInternalServerError {
		t.Fatalf("send with the mailer failing: %d %s, want 500", r.Status, r.Raw)
	}
	g.mail.fail(nil)
	if r := g.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`); r.Status != http.StatusTooManyRequests {
		t.Fatalf("send after a failed mail within the minute: %d %s, want 429", r.Status, r.Raw)
	}
}

// storeFailingMailer fails every send and, as it does, makes the code store
// fail too, so that withdrawing the code fails.
type storeFailingMailer struct{ codes *countingCodes }

func (m storeFailingMailer) Send(context.Context, selfservice.Message) error {
	m.codes.fail(errors.New("redis: i/o timeout"))
	return errors.New("smtp: 451")
}

// A code whose mail failed is withdrawn; when even that fails, the code
// stays valid until it expires, and the log says so.
func TestWithdrawingFailedCodeIsLogged(t *testing.T) {
	t.Parallel()
	var log testkit.SyncBuffer
	codes := &countingCodes{CodeStore: memstore.NewCodeStore()}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Codes = codes
		c.Mailer = storeFailingMailer{codes}
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	r := f.do(t, http.MethodPost, selfservice.SendCodePath, baseHeaders("en"),
		`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`)
	if r.Status != http.StatusInternalServerError || r.Code != string(i18n.CodeSendFailed) {
		t.Fatalf("send: %d %s, want 500 %s", r.Status, r.Raw, i18n.CodeSendFailed)
	}
	out := log.String()
	if !strings.Contains(out, "could not be withdrawn") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("log lacks the failed withdrawal:\n%s", out)
	}
	if strings.Contains(out, "new@example.com") {
		t.Errorf("log shows the address unmasked:\n%s", out)
	}
}

// gatedFailMailer holds its first send until gate closes, then fails it;
// every later send goes to next.
type gatedFailMailer struct {
	next    selfservice.Mailer
	entered chan struct{}
	gate    chan struct{}
	first   sync.Once
}

func (m *gatedFailMailer) Send(ctx context.Context, msg selfservice.Message) error {
	first := false
	m.first.Do(func() { first = true })
	if !first {
		return m.next.Send(ctx, msg)
	}
	close(m.entered)
	<-m.gate
	return errors.New("smtp: 451 try again later")
}

// TestFailedSendKeepsANewerCode: a send whose mail fails withdraws its own
// code only. A second send to the same address stored and mailed a newer
// code meanwhile; that code, the one the user received, still works.
func TestFailedSendKeepsANewerCode(t *testing.T) {
	t.Parallel()
	mailer := &gatedFailMailer{entered: make(chan struct{}), gate: make(chan struct{})}
	f := newFixtureWith(t, func(c *selfservice.Config) {
		c.Budgets = testkit.LooseBudgets()
		c.Mailer = mailer
	}, mustUser(t, "u", "old@example.com"))
	mailer.next = f.mail
	first := make(chan error, 1)
	go func() {
		first <- f.svc.SendCode(context.Background(), selfservice.SendCodeRequest{
			Caller: selfservice.Caller{ClientID: testClient, Backend: "test", IP: netip.MustParseAddr("192.0.2.10")},
			Email:  "new@example.com", Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
		})
	}()
	<-mailer.entered // the first code is stored, its mail under way
	code := f.sendCode(t, "new@example.com")
	close(mailer.gate)
	if err := <-first; !errors.Is(err, i18n.CodeSendFailed) {
		t.Fatalf("the first send: %v, want %s", err, i18n.CodeSendFailed)
	}
	if r := f.update(t, token(t, "u", nil), "en", "new@example.com", code); r.Status != http.StatusOK {
		t.Errorf("the code the user received, after the other send failed: %s, want 200", r.Raw)
	}
}
