package selfservice_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/store"
)

// TestOrderOfChecks sends requests that break two rules at once: the one
// earlier in the contract's order must answer.
func TestOrderOfChecks(t *testing.T) {
	t.Parallel()
	good := token(t, "alice", nil)
	ghost := token(t, "ghost", nil)
	cases := []struct {
		name   string
		header func(http.Header)
		body   string
		code   string
	}{
		{"device before client", headers(del("X-agent", "X-client-id"), auth(good)), `{"email":"n@example.com","verify_code":"123456"}`, "IDAAS.SDK.PARAM.0001"},
		{"client empty before token", headers(del("X-client-id")), `{"email":"n@example.com","verify_code":"123456"}`, "IDAAS.SDK.PARAM.0002"},
		{"client registered before token", set("X-client-id", "nobody"), `{"email":"n@example.com","verify_code":"123456"}`, "IDAAS.SDK.PARAM.0003"},
		{"token empty before body", nil, `not json`, "IDAAS.SDK.PARAM.0015"},
		{"token valid before body", auth("x.y.z"), `not json`, "IDAAS.SDK.PARAM.0016"},
		{"body before code", auth(good), `{"email":"bad","verify_code":"1","extra":1}`, "IDAAS.SDK.REQ.9104"},
		{"code empty before email rules", auth(good), `{"email":"bad","verify_code":""}`, "IDAAS.SDK.PARAM.0009"},
		{"email rules before user", auth(ghost), `{"email":"bad","verify_code":"123456"}`, "IDAAS.SDK.USER.0021"},
		{"user before code", auth(ghost), `{"email":"n@example.com","verify_code":"000000"}`, "IDAAS.SDK.USER.0001"},
		{"code before email free", auth(good), `{"email":"bob@example.com","verify_code":"000000"}`, "IDAAS.SDK.CAPTCHA.0007"},
	}
	f := newFixture(t, mustUser(t, "alice", "alice@example.com"), mustUser(t, "bob", "bob@example.com"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := baseHeaders("en")
			if tc.header != nil {
				tc.header(h)
			}
			got := f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h, tc.body)
			if got.Code != tc.code {
				t.Fatalf("got %q, want %q (%s)", got.Code, tc.code, got.Raw)
			}
		})
	}
}

// TestNoStoreCallBeforeCodeStep checks that a request refused before the
// code step never reaches the code store.
func TestNoStoreCallBeforeCodeStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
	good := token(t, "alice", nil)
	for _, body := range []string{
		`{"email":"n@example.com","verify_code":""}`,
		`{"email":"n@@example.com","verify_code":"123456"}`,
		`{"email":"n@example.com","verify_code":"12345"}`,
		`{"email":"n@example.com","verify_code":"１２３４５６"}`,
		`{"email":"n@example.com","verify_code":" 123456"}`,
		`{"email":"ALICE@example.com","verify_code":"123456"}`,
	} {
		h := baseHeaders("en")
		auth(good)(h)
		f.do(t, http.MethodPost, selfservice.UpdateEmailPath, h, body)
	}
	if n := f.codes.calls(); n != 0 {
		t.Fatalf("code store called %d times, want 0", n)
	}
}

// TestSameCodeConcurrently has 50 users submit one correct code for one
// address at once: exactly one gets it, the rest are told the code is wrong.
func TestSameCodeConcurrently(t *testing.T) {
	t.Parallel()
	const n = 50
	var users []store.User
	var tokens []string
	for i := range n {
		id := "user-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		users = append(users, mustUser(t, id, id+"@example.com"))
		tokens = append(tokens, token(t, id, nil))
	}
	f := newFixture(t, users...)
	code := f.sendCode(t, "prize@example.com")

	var wg sync.WaitGroup
	replies := make([]reply, n)
	for i := range n {
		wg.Go(func() {
			replies[i] = f.update(t, tokens[i], "en", "prize@example.com", code)
		})
	}
	wg.Wait()
	winners := 0
	for i, r := range replies {
		switch {
		case r.Status == http.StatusOK:
			winners++
			u, _ := f.users.User(t.Context(), users[i].ID)
			if u.Email != "prize@example.com" {
				t.Errorf("winner %s has email %q", u.ID, u.Email)
			}
		case r.Code != "IDAAS.SDK.CAPTCHA.0007":
			t.Errorf("loser got %d %s", r.Status, r.Raw)
		}
	}
	if winners != 1 {
		t.Fatalf("%d requests succeeded, want exactly 1", winners)
	}
}

// TestRaceForAddress has 20 users race for one address at the store the
// handlers use: exactly one holds it afterwards, nobody is half-updated.
func TestRaceForAddress(t *testing.T) {
	t.Parallel()
	const n = 20
	var users []store.User
	for i := range n {
		users = append(users, mustUser(t, "u"+string(rune('a'+i)), "u"+string(rune('a'+i))+"@example.com"))
	}
	f := newFixture(t, users...)
	forms := []string{"Race@Example.com", "race@example.com", "RACE@EXAMPLE.COM", "race@Example.Com"}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			email, canonical, err := selfservice.CanonicalEmail(forms[i%len(forms)])
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = f.users.UpdateEmail(t.Context(), users[i].ID, email, canonical)
		})
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		u, _ := f.users.User(t.Context(), users[i].ID)
		switch {
		case err == nil:
			winners++
			if u.CanonicalEmail != "race@example.com" {
				t.Errorf("winner %s holds %q", u.ID, u.CanonicalEmail)
			}
		case err == store.ErrEmailExists:
			if u.Email != users[i].Email || u.CanonicalEmail != users[i].CanonicalEmail {
				t.Errorf("loser %s changed to %q/%q", u.ID, u.Email, u.CanonicalEmail)
			}
		default:
			t.Errorf("user %s: %v", u.ID, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d users got the address, want exactly 1", winners)
	}
}

// TestCodeLifecycle follows one code: it is single use, dies after the
// try limit, and a resend replaces it.
func TestCodeLifecycle(t *testing.T) {
	t.Parallel()
	good := token(t, "alice", nil)

	t.Run("single use", func(t *testing.T) {
		f := newFixture(t, mustUser(t, "alice", "alice@example.com"), mustUser(t, "bob", "bob@example.com"))
		code := f.sendCode(t, "first@example.com")
		if r := f.update(t, good, "en", "first@example.com", code); r.Status != 200 {
			t.Fatalf("first use: %s", r.Raw)
		}
		bob := token(t, "bob", nil)
		if r := f.update(t, bob, "en", "first@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Fatalf("second use: %s", r.Raw)
		}
	})
	t.Run("dead after five wrong tries", func(t *testing.T) {
		f := newFixture(t, mustUser(t, "alice", "alice@example.com"))
		code := f.sendCode(t, "next@example.com")
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		for range 5 {
			if r := f.update(t, good, "en", "next@example.com", wrong); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("wrong try: %s", r.Raw)
			}
		}
		if r := f.update(t, good, "en", "next@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Fatalf("right code after the limit: %s", r.Raw)
		}
	})
	t.Run("resend replaces", func(t *testing.T) {
		f := newFixtureWith(t, func(c *selfservice.Config) {
			c.Budgets.SendsPerEmail = []store.Limit{{N: 10, Window: time.Hour}}
		},
			mustUser(t, "alice", "alice@example.com"))
		old := f.sendCode(t, "again@example.com")
		fresh := f.sendCode(t, "again@example.com")
		if old != fresh {
			if r := f.update(t, good, "en", "again@example.com", old); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
				t.Fatalf("replaced code: %s", r.Raw)
			}
		}
		if r := f.update(t, good, "en", "again@example.com", fresh); r.Status != 200 {
			t.Fatalf("new code: %s", r.Raw)
		}
	})
	t.Run("expired", func(t *testing.T) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}
		f := newFixtureWith(t, func(c *selfservice.Config) { c.Now = clock }, mustUser(t, "alice", "alice@example.com"))
		code := f.sendCode(t, "late@example.com")
		mu.Lock()
		now = now.Add(10*time.Minute + time.Second)
		mu.Unlock()
		if r := f.update(t, good, "en", "late@example.com", code); r.Code != "IDAAS.SDK.CAPTCHA.0007" {
			t.Fatalf("expired code: %s", r.Raw)
		}
	})
}
