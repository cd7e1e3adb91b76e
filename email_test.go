package selfservice_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/emailaddr"
)

// The rules themselves are tested in internal/emailaddr; this checks what
// the root adds: the API error around each reason.
func TestCanonicalEmail(t *testing.T) {
	t.Parallel()
	email, canonical, err := selfservice.CanonicalEmail("  Jose.Smith@Bücher.Example ")
	if err != nil || email != "Jose.Smith@Bücher.Example" || canonical != "jose.smith@xn--bcher-kva.example" {
		t.Errorf("CanonicalEmail = %q, %q, %v", email, canonical, err)
	}
	tests := []struct {
		in     string
		reason error
	}{
		{"Alice <a@example.com>", emailaddr.ErrCharacter},
		{"a(comment)@example.com", emailaddr.ErrSyntax},
		{"admin\u034f@example.com", emailaddr.ErrCharacter},
		{"a@example\u3002com", emailaddr.ErrCharacter},
		{"a@example", emailaddr.ErrDomain},
		{"a@" + strings.Repeat("d", 4*selfservice.MaxEmailLen), emailaddr.ErrSyntax},
	}
	for _, tt := range tests {
		email, canonical, err := selfservice.CanonicalEmail(tt.in)
		if !errors.Is(err, i18n.CodeEmailInvalid) || !errors.Is(err, tt.reason) || email != "" || canonical != "" {
			t.Errorf("CanonicalEmail(%+q) = %q, %q, %v; want USER.0021 wrapping %v", tt.in, email, canonical, err, tt.reason)
		}
	}
}
