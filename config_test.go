package selfservice_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/store"
)

// TestNewRefusesConfig: New names what is wrong with a Config, every
// missing field at once, and wraps ErrConfig.
func TestNewRefusesConfig(t *testing.T) {
	t.Parallel()
	valid := func(t *testing.T) selfservice.Config { return newFixture(t).cfg }
	tests := []struct {
		name string
		edit func(*selfservice.Config)
		want []string // in the error's text
	}{
		{"empty", func(c *selfservice.Config) { *c = selfservice.Config{} },
			[]string{"Users", "Codes", "Limiter", "Clients", "Mailer", "Captcha", "CodeSecret"}},
		{"short secret", func(c *selfservice.Config) { c.CodeSecret = make([]byte, 31) }, []string{"CodeSecret", "32"}},
		{"short previous secret", func(c *selfservice.Config) { c.PreviousCodeSecrets = [][]byte{make([]byte, 8)} }, []string{"PreviousCodeSecrets[0]"}},
		{"negative limit", func(c *selfservice.Config) { c.MailTimeout = -time.Second }, []string{"negative"}},
		{"Verifier and Identify", func(c *selfservice.Config) {
			c.Identify = func(*http.Request) (selfservice.Identity, error) { return selfservice.Identity{}, nil }
		}, []string{"Verifier", "Identify"}},
		{"a cool-off shorter than a code's life", func(c *selfservice.Config) { c.RevertCoolOff = time.Minute }, []string{"RevertCoolOff", "CodeTTL"}},
		{"an empty budget", func(c *selfservice.Config) { c.Budgets.ChangesPerUser = []store.Limit{} }, []string{"ChangesPerUser"}},
		{"a limit of nothing", func(c *selfservice.Config) { c.Budgets.RevertsPerIP = []store.Limit{{N: 0, Window: time.Hour}} }, []string{"RevertsPerIP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid(t)
			tt.edit(&cfg)
			svc, err := selfservice.New(cfg)
			if err == nil {
				svc.Shutdown(t.Context())
				t.Fatal("New accepted the Config")
			}
			if !errors.Is(err, selfservice.ErrConfig) {
				t.Errorf("New: %v, which does not wrap ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New: %q does not name %s", err, w)
				}
			}
		})
	}
}
