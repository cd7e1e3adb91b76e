package integration_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/testkit"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
	"github.com/ciamkit/selfservice/store/sqlstore"
)

// cancelledUpdate holds ChangeEmail until the request's context is done,
// then lets the real store run with that dead context, as happens when a
// client hangs up while the change is being written.
type cancelledUpdate struct {
	*sqlstore.UserStore
	entered chan struct{}
	result  chan error
}

func (c *cancelledUpdate) ChangeEmail(ctx context.Context, ch store.EmailChange) error {
	close(c.entered)
	<-ctx.Done()
	err := c.UserStore.ChangeEmail(ctx, ch)
	c.result <- err
	return err
}

// TestCancelledClientWritesNothing: a client that hangs up while its change
// is being written leaves no partial write in PostgreSQL: neither the
// address nor its notice.
func TestCancelledClientWritesNothing(t *testing.T) {
	db := postgresVia(t, pgAddr(t))
	if err := sqlstore.Migrate(t.Context(), db, sqlstore.Postgres); err != nil {
		t.Fatal(err)
	}
	users := sqlstore.NewUserStore(db, sqlstore.Postgres)
	if err := users.CreateUser(t.Context(), store.User{ID: "alice", Email: "alice@example.com", CanonicalEmail: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	held := &cancelledUpdate{UserStore: users, entered: make(chan struct{}), result: make(chan error, 1)}
	mail := &lastCode{}
	svc, err := selfservice.New(selfservice.Config{
		Users:      held,
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: testkit.Client}),
		Verifier:   testkit.Verifier(t),
		Mailer:     mail,
		Captcha:    selfservice.AllowAllCaptcha{},
		CodeSecret: []byte(strings.Repeat("c", selfservice.MinCodeSecretLen)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, svc) })
	h := svc.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if r := testkit.Do(t, srv.Client(), http.MethodPost, srv.URL+selfservice.SendCodePath, testkit.Headers("en"),
		`{"email":"new@example.com","type":"UPDATE_EMAIL_EMS","captcha_token":"ok"}`); r.Status != 200 {
		t.Fatalf("send: %s", r.Raw)
	}

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+selfservice.UpdateEmailPath,
		strings.NewReader(`{"email":"new@example.com","verify_code":"`+mail.get()+`"}`))
	req.Header = testkit.Headers("en")
	req.Header.Set("Authorization", "Bearer "+testkit.Token(t, "alice", nil))
	done := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-held.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached ChangeEmail")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	select {
	case err := <-held.result:
		if err == nil {
			t.Fatal("ChangeEmail succeeded with a cancelled context")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never noticed the hang-up")
	}
	if u, err := users.User(t.Context(), "alice"); err != nil || u.Email != "alice@example.com" || u.CanonicalEmail != "alice@example.com" {
		t.Fatalf("after the hang-up: %+v, %v", u, err)
	}
	if n, _, err := users.NoticeBacklog(t.Context()); err != nil || n != 0 {
		t.Fatalf("after the hang-up the outbox holds %d notices (%v), want none", n, err)
	}
}
