package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/loadgen"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// server is the API over memory stores on a loopback httptest server, with
// its mails going to a MailLog.
func server(t *testing.T, users []loadgen.User) (string, *loadgen.MailLog, *selfservice.Service) {
	t.Helper()
	mails := loadgen.NewMailLog()
	base, svc := serve(t, users, selfservice.NewLogMailer(mails))
	return base, mails, svc
}

// serve is the API over memory stores on a loopback httptest server, with
// mailer delivering its mails.
func serve(t *testing.T, users []loadgen.User, mailer selfservice.Mailer) (string, *selfservice.Service) {
	t.Helper()
	var seed []store.User
	for _, u := range users {
		email, canonical, err := selfservice.CanonicalEmail(u.Email)
		if err != nil {
			t.Fatal(err)
		}
		seed = append(seed, store.User{ID: u.ID, Email: email, CanonicalEmail: canonical})
	}
	svc, err := selfservice.New(selfservice.Config{
		Users:      memstore.NewUserStore(seed...),
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Budgets:    testkit.LooseBudgets(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testkit.Client}),
		Verifier:   testkit.Verifier(t),
		Mailer:     mailer,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(strings.Repeat("s", selfservice.MinCodeSecretLen)),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv.URL, svc
}

func users(t *testing.T, n int) []loadgen.User {
	t.Helper()
	return usersNamed(t, "user", n)
}

// usersNamed returns n users whose ids, and addresses, start with prefix.
func usersNamed(t *testing.T, prefix string, n int) []loadgen.User {
	t.Helper()
	var us []loadgen.User
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		us = append(us, loadgen.User{ID: id, Email: id + "@example.com", Token: testkit.Token(t, id, nil)})
	}
	return us
}

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		duration time.Duration
		requests int
		rate     float64
	}{
		{"bounded by count", time.Minute, 300, 0},
		{"bounded by time", 300 * time.Millisecond, 1 << 30, 0},
		{"paced", 500 * time.Millisecond, 1 << 30, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us := users(t, 6)
			base, mails, svc := server(t, us)
			opts := loadgen.Options{
				BaseURL: base, ClientID: testkit.Client, Users: us, Codes: mails,
				Concurrency: 3, Duration: tt.duration, Requests: tt.requests, Rate: tt.rate,
			}
			before := runtime.NumGoroutine()
			start := time.Now()
			rep, err := loadgen.Run(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Unexpected != 0 {
				t.Fatalf("%d unexpected answers: %q", rep.Unexpected, rep.Samples)
			}
			if rep.Requests == 0 || rep.Requests > tt.requests || rep.Changes == 0 {
				t.Fatalf("sent %d requests, %d changes; want 1..%d and some changes", rep.Requests, rep.Changes, tt.requests)
			}
			if took := time.Since(start); took > tt.duration+5*time.Second {
				t.Errorf("Run took %v for a %v run", took, tt.duration)
			}
			if tt.rate > 0 {
				if max := tt.rate * rep.Elapsed.Seconds() * 1.5; float64(rep.Requests) > max+float64(opts.Concurrency) {
					t.Errorf("sent %d requests in %v at rate %v", rep.Requests, rep.Elapsed, tt.rate)
				}
			}
			if rep.Status[http.StatusOK] == 0 || rep.Codes["IDAAS.SDK.PARAM.0016"] == 0 || rep.Codes["IDAAS.SDK.CAPTCHA.0007"] == 0 {
				t.Errorf("answers %v %v lack the flow's mix", rep.Status, rep.Codes)
			}
			if rep.Latency.Count != rep.Requests || rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 {
				t.Errorf("latency %+v for %d requests", rep.Latency, rep.Requests)
			}
			bad, err := loadgen.Check(t.Context(), opts, rep.Final)
			if err != nil || len(bad) != 0 {
				t.Errorf("Check: %v, %q", err, bad)
			}
			if len(rep.Final) == 0 {
				t.Error("no final addresses")
			}
			// Run's own goroutines are gone, once the server's notice
			// workers have stopped; idle connections close
			// asynchronously, so allow them a moment.
			if err := svc.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Errorf("%d goroutines after Run, %d before", n, before)
			}
		})
	}
}

// Check notices an address that is not the user's.
func TestCheckMismatch(t *testing.T) {
	us := users(t, 2)
	base, mails, _ := server(t, us)
	opts := loadgen.Options{BaseURL: base, ClientID: testkit.Client, Users: us, Codes: mails, Concurrency: 1, Duration: time.Second, Requests: 1}
	bad, err := loadgen.Check(t.Context(), opts, map[string]string{us[0].ID: us[0].Email, us[1].ID: "someone.else@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.HasPrefix(bad[0], us[1].ID+":") {
		t.Errorf("Check = %q, want one mismatch for %s", bad, us[1].ID)
	}
}

func TestRunRefusesOptions(t *testing.T) {
	t.Parallel()
	us := []loadgen.User{{ID: "u", Email: "u@example.com", Token: "t"}}
	good := loadgen.Options{
		BaseURL: "http://127.0.0.1:1", ClientID: "c", Users: us, Codes: loadgen.NewMailLog(),
		Concurrency: 1, Duration: time.Second, Requests: 1,
	}
	tests := []struct {
		name string
		edit func(*loadgen.Options)
	}{
		{"not loopback", func(o *loadgen.Options) { o.BaseURL = "http://192.0.2.1:8080" }},
		{"a name other than localhost", func(o *loadgen.Options) { o.BaseURL = "http://example.com" }},
		{"not http", func(o *loadgen.Options) { o.BaseURL = "ftp://127.0.0.1:21" }},
		{"no duration", func(o *loadgen.Options) { o.Duration = 0 }},
		{"no request bound", func(o *loadgen.Options) { o.Requests = 0 }},
		{"fewer users than workers", func(o *loadgen.Options) { o.Concurrency = 2 }},
		{"no code source", func(o *loadgen.Options) { o.Codes = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := good
			tt.edit(&opts)
			if _, err := loadgen.Run(t.Context(), opts); !errors.Is(err, loadgen.ErrOptions) {
				t.Errorf("Run: %v, want ErrOptions", err)
			}
		})
	}
}

// MailLog reads codes from JSON lines split anywhere, and Code waits for a
// line that has not arrived yet.
func TestMailLog(t *testing.T) {
	t.Parallel()
	m := loadgen.NewMailLog()
	out := `{"type":"UPDATE_EMAIL_EMS","to":"a@example.com","code":"111111"}` + "\n" +
		"not json\n" + `{"type":"EMAIL_CHANGED","to":"b@example.com"}` + "\n" +
		`{"type":"UPDATE_EMAIL_EMS","to":"a@example.com","code":"222222"}` + "\n"
	for i := 0; i < len(out); i += 7 {
		m.Write([]byte(out[i:min(i+7, len(out))]))
	}
	if code, err := m.Code(t.Context(), "a@example.com"); err != nil || code != "222222" {
		t.Errorf("Code(a) = %q, %v; want the last code 222222", code, err)
	}
	done := make(chan string, 1)
	go func() {
		code, _ := m.Code(t.Context(), "c@example.com")
		done <- code
	}()
	time.Sleep(10 * time.Millisecond)
	m.Write([]byte(`{"type":"UPDATE_EMAIL_EMS","to":"c@example.com","code":"333333"}` + "\n"))
	select {
	case code := <-done:
		if code != "333333" {
			t.Errorf("Code(c) = %q, want 333333", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Code did not see a code written after it started waiting")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Code(ctx, "b@example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Code(b) = %v, want the deadline: a notice has no code", err)
	}
}

// The same driver runs against Floor: every answer 200 but the broken
// signature's 401, no code asked for, and Check refused.
func TestRunFloor(t *testing.T) {
	t.Parallel()
	pub := &testkit.Key().PublicKey
	srv := httptest.NewServer(loadgen.Floor(func(*jwt.Token) (any, error) { return pub, nil }))
	t.Cleanup(srv.Close)
	us := users(t, 4)
	opts := loadgen.Options{
		BaseURL: srv.URL, ClientID: testkit.Client, Users: us, Floor: true,
		Concurrency: 2, Duration: time.Minute, Requests: 300,
	}
	rep, err := loadgen.Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unexpected != 0 || rep.Requests != 300 {
		t.Fatalf("%d requests, %d unexpected answers: %q", rep.Requests, rep.Unexpected, rep.Samples)
	}
	if rep.Status[http.StatusOK] == 0 || rep.Status[http.StatusUnauthorized] == 0 || len(rep.Codes) != 0 {
		t.Errorf("answers %v %v, want 200s and 401s without error codes", rep.Status, rep.Codes)
	}
	if _, err := loadgen.Check(t.Context(), opts, rep.Final); !errors.Is(err, loadgen.ErrOptions) {
		t.Errorf("Check on a floor: %v, want ErrOptions", err)
	}
}

// Successive runs against one server, each from the rounds the last one
// reached, send their codes to new addresses: no answer is unexpected, and
// the changes of the last run are in place.
func TestRunAgain(t *testing.T) {
	us := users(t, 4)
	base, mails, _ := server(t, us)
	opts := loadgen.Options{
		BaseURL: base, ClientID: testkit.Client, Users: us, Codes: mails,
		Concurrency: 2, Duration: time.Minute, Requests: 60,
	}
	final := map[string]string{}
	for run := range 3 {
		rep, err := loadgen.Run(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Unexpected != 0 || rep.Changes == 0 {
			t.Fatalf("run %d: %d changes, %d unexpected answers: %q", run, rep.Changes, rep.Unexpected, rep.Samples)
		}
		if rep.Rounds <= opts.FirstRound {
			t.Fatalf("run %d: Rounds %d, FirstRound %d", run, rep.Rounds, opts.FirstRound)
		}
		opts.FirstRound = rep.Rounds
		maps.Copy(final, rep.Final)
	}
	if bad, err := loadgen.Check(t.Context(), opts, final); err != nil || len(bad) != 0 {
		t.Errorf("Check: %v, %q", err, bad)
	}
}
