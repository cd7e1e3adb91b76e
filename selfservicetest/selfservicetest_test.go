package selfservicetest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/internal/openapitest"
	"github.com/ciamkit/selfservice/selfservicetest"
	"github.com/ciamkit/selfservice/store"
)

// checked is a client whose every exchange must be what the OpenAPI
// document says. (The package itself does not import openapitest: its
// validators would weigh on integrators' test builds.)
func checked(t *testing.T) *http.Client {
	return &http.Client{Transport: openapitest.Transport(t, nil)}
}

// TestChangeEmail is the README's integration test in ten lines.
func TestChangeEmail(t *testing.T) {
	iss, mail := selfservicetest.NewIssuer(t), &selfservicetest.Mailer{}
	svc, err := selfservice.New(selfservicetest.Config(t, iss, mail, store.User{ID: "alice", Email: "alice@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	c := selfservicetest.NewClient(srv.URL, iss.ClientID)
	c.SendCode(t, "new@example.com").Expect(t, http.StatusOK, "")
	c.UpdateEmail(t, iss.Token(t, "alice"), "new@example.com", mail.Code(t, "new@example.com")).Expect(t, http.StatusOK, "")
}

// The helpers make each failure the API knows reachable.
func TestHelpers(t *testing.T) {
	t.Parallel()
	iss, mail := selfservicetest.NewIssuer(t), &selfservicetest.Mailer{}
	cfg := selfservicetest.Config(t, iss, mail, store.User{ID: "alice", Email: "alice@example.com"})
	cfg.MaxAuthAge = time.Minute
	svc, err := selfservice.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	c := selfservicetest.NewClient(srv.URL, iss.ClientID)
	c.HTTP = checked(t)
	c.Lang = "zh"

	recent := selfservicetest.WithAuthTime(time.Now())
	c.SendCode(t, "New@Example.com").Expect(t, http.StatusOK, "")
	code := mail.Code(t, "new@example.com")
	c.UpdateEmail(t, iss.Token(t, "alice", recent), "new@example.com", "000000").Expect(t, http.StatusBadRequest, "IDAAS.SDK.CAPTCHA.0007")
	c.UpdateEmail(t, iss.Token(t, "alice"), "new@example.com", code).Expect(t, http.StatusUnauthorized, "IDAAS.SDK.PARAM.9204")
	expired := iss.Token(t, "alice", recent, selfservicetest.WithClaim("exp", time.Now().Add(-time.Hour).Unix()))
	r := c.UpdateEmail(t, expired, "new@example.com", code).Expect(t, http.StatusBadRequest, "IDAAS.SDK.PARAM.0016")
	if r.Message != "IdToken无效或已过期" {
		t.Errorf("message %q, want the Chinese one", r.Message)
	}
	other := iss.Token(t, "alice", recent, selfservicetest.WithClaim("aud", "another-app"))
	c.UpdateEmail(t, other, "new@example.com", code).Expect(t, http.StatusBadRequest, "IDAAS.SDK.PARAM.0016")
	c.UpdateEmail(t, iss.Token(t, "alice", recent), "new@example.com", code).Expect(t, http.StatusOK, "")

	r = c.Do(t, http.MethodGet, selfservice.UpdateEmailPath, "", "").Expect(t, http.StatusMethodNotAllowed, "IDAAS.SDK.REQ.9101")
	if r.Header.Get("Allow") != http.MethodPost {
		t.Errorf("Allow = %q", r.Header.Get("Allow"))
	}
	c.Do(t, http.MethodPost, "/nowhere", "", "").Expect(t, http.StatusNotFound, "")

	stranger := selfservicetest.NewClient(srv.URL, "not-registered")
	stranger.SendCode(t, "x@example.com").Expect(t, http.StatusBadRequest, "IDAAS.SDK.PARAM.0003")
	// The courier mails the notice to the old address shortly after the
	// answer; its token undoes the change, once.
	notice := mail.Notice(t, "alice@example.com")
	c.RevertEmail(t, notice.RevertToken).Expect(t, http.StatusOK, "")
	c.RevertEmail(t, notice.RevertToken).Expect(t, http.StatusBadRequest, "IDAAS.SDK.REVERT.9302")
	if err := svc.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(mail.Messages()); n != 2 {
		t.Errorf("%d mails kept, want 2: the code and the notice", n)
	}
}

// TestOwnSignIn: an application that signs users in itself mounts the
// Service in one line; the helpers serve it without an issuer.
func TestOwnSignIn(t *testing.T) {
	t.Parallel()
	mail := &selfservicetest.Mailer{}
	svc, err := selfservice.New(selfservicetest.Config(t, nil, mail, store.User{ID: "alice", Email: "alice@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(t.Context())
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	c := selfservicetest.NewClient(srv.URL, selfservicetest.DefaultClientID)
	c.HTTP = checked(t)
	c.UpdateEmail(t, "", "new@example.com", "123456").Expect(t, http.StatusForbidden, "IDAAS.SDK.USER.9207")
	c.SignedIn = "alice"
	c.SendCode(t, "new@example.com").Expect(t, http.StatusOK, "")
	c.UpdateEmail(t, "", "new@example.com", mail.Code(t, "new@example.com")).Expect(t, http.StatusOK, "")
}
