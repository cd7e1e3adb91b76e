package selfservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/store"
)

// Budgets bound what one attacker gets, beyond the limits of one code (5
// tries, 10 minutes): how many codes are mailed to one address and at the
// request of one client IP, and how many wrong codes one user and one client
// IP may submit. Each budget is a list of store.Limit that must all hold, in
// every rolling window of their lengths (Config.Limiter keeps the counts).
// A nil list takes the default; there is no "off": to loosen a budget, give
// it larger limits. SECURITY.md explains the defaults.
//
// "Client IP" is the address Config.ClientIP returns, IPv6 addresses
// counted per /64 (one subscriber's usual allocation). Nothing the client
// sends in a header counts, unless the integrator's ClientIP trusts a proxy.
type Budgets struct {
	// SendsPerEmail bounds the codes mailed to one address (canonical
	// form, per send type). Default: 1 per minute and 10 per 24 hours.
	SendsPerEmail []store.Limit
	// SendsPerIP bounds the codes mailed at the request of one client IP,
	// to any addresses. Default: 30 per hour and 200 per 24 hours.
	SendsPerIP []store.Limit
	// WrongCodesPerUser bounds the wrong codes one user (the token's
	// subject) may submit to update-email, whatever the address. Once it
	// is spent even the right code is refused (IDAAS.SDK.CAPTCHA.9205)
	// until old failures leave the window. Default: 10 per hour and 20 per
	// 24 hours.
	WrongCodesPerUser []store.Limit
	// WrongCodesPerIP bounds the wrong codes submitted from one client
	// IP, over all users. Default: 50 per hour and 200 per 24 hours.
	WrongCodesPerIP []store.Limit
	// ChangesPerUser bounds the changes of email one user (the token's
	// subject) makes, so that nobody can bury the notices of a takeover
	// under thousands of changes of their own. Charged with the
	// wrong-code budgets, before the code is evaluated, and given back
	// when the change does not happen. Once spent, update-email answers
	// IDAAS.SDK.USER.9206 even for the right code, which is not spent.
	// Default: 5 per 24 hours.
	ChangesPerUser []store.Limit
	// RevertsPerIP bounds the undo attempts from one client IP that fail
	// (a malformed, unknown, expired, used or voided token).
	// Default: 20 per hour and 50 per 24 hours.
	RevertsPerIP []store.Limit
}

// DefaultBudgets returns the budgets a zero Budgets stands for.
func DefaultBudgets() Budgets {
	const day = 24 * time.Hour
	return Budgets{
		SendsPerEmail:     []store.Limit{{N: 1, Window: time.Minute}, {N: 10, Window: day}},
		SendsPerIP:        []store.Limit{{N: 30, Window: time.Hour}, {N: 200, Window: day}},
		WrongCodesPerUser: []store.Limit{{N: 10, Window: time.Hour}, {N: 20, Window: day}},
		WrongCodesPerIP:   []store.Limit{{N: 50, Window: time.Hour}, {N: 200, Window: day}},
		ChangesPerUser:    []store.Limit{{N: 5, Window: day}},
		RevertsPerIP:      []store.Limit{{N: 20, Window: time.Hour}, {N: 50, Window: day}},
	}
}

// withDefaults fills the nil lists and checks every limit.
func (b Budgets) withDefaults() (Budgets, error) {
	def := DefaultBudgets()
	for _, f := range []struct {
		name      string
		got, dflt *[]store.Limit
	}{
		{"SendsPerEmail", &b.SendsPerEmail, &def.SendsPerEmail},
		{"SendsPerIP", &b.SendsPerIP, &def.SendsPerIP},
		{"WrongCodesPerUser", &b.WrongCodesPerUser, &def.WrongCodesPerUser},
		{"WrongCodesPerIP", &b.WrongCodesPerIP, &def.WrongCodesPerIP},
		{"ChangesPerUser", &b.ChangesPerUser, &def.ChangesPerUser},
		{"RevertsPerIP", &b.RevertsPerIP, &def.RevertsPerIP},
	} {
		if *f.got == nil {
			*f.got = *f.dflt
			continue
		}
		if len(*f.got) == 0 {
			return b, fmt.Errorf("%w: Budgets.%s is empty: leave it nil for the default", ErrConfig, f.name)
		}
		*f.got = append([]store.Limit(nil), *f.got...)
		for _, l := range *f.got {
			if l.N <= 0 || l.Window <= 0 {
				return b, fmt.Errorf("%w: Budgets.%s: a limit needs a positive N and Window", ErrConfig, f.name)
			}
		}
	}
	return b, nil
}

// Budget names, as audit events report them.
const (
	BudgetSendsPerEmail     = "sends_per_email"
	BudgetSendsPerIP        = "sends_per_ip"
	BudgetWrongCodesPerUser = "wrong_codes_per_user"
	BudgetWrongCodesPerIP   = "wrong_codes_per_ip"
	BudgetChangesPerUser    = "changes_per_user"
	BudgetRevertsPerIP      = "reverts_per_ip"
)

// budget is one reservable budget: its name, its key in the Limiter, its
// limits and the code a refusal is answered with.
type budget struct {
	name    string
	key     string
	limits  []store.Limit
	refused i18n.Code
}

// reservation is a slot taken in a budget, which cancel gives back.
type reservation struct {
	key, id string
}

// reserve takes one slot in each budget, in order, or none: when one
// refuses, the slots already taken are given back and the refusal is
// returned as the budget's code (with its Retry-After) after an
// EventRateLimited for userID (empty for sends). A store failure is an
// internal error.
func (s *Service) reserve(ctx context.Context, c caller, userID string, bs ...budget) ([]reservation, error) {
	taken := make([]reservation, 0, len(bs))
	now := s.cfg.Now()
	for _, b := range bs {
		id, err := s.cfg.Limiter.Reserve(ctx, b.key, b.limits, now)
		if err == nil {
			taken = append(taken, reservation{b.key, id})
			continue
		}
		s.cancel(ctx, taken)
		var rl *store.RateLimitError
		if errors.As(err, &rl) {
			s.tel.refused(ctx, b.name)
			s.rateLimited(ctx, c, userID, b.name)
			return nil, &i18n.Error{Code: b.refused, RetryAfter: rl.RetryAfter, Err: fmt.Errorf("budget %s: %w", b.name, err)}
		}
		return nil, i18n.Wrap(i18n.CodeInternal, err)
	}
	return taken, nil
}

// cancel gives slots back. It runs even if the request was cancelled, and a
// failure only leaves a budget counting one event too many, the safe side,
// so it is logged and not answered.
func (s *Service) cancel(ctx context.Context, taken []reservation) {
	ctx = context.WithoutCancel(ctx)
	for _, r := range taken {
		if err := s.cfg.Limiter.Cancel(ctx, r.key, r.id); err != nil {
			s.cfg.Logger.WarnContext(ctx, "selfservice: giving back a budget slot failed", "error", err)
		}
	}
}

// Budget keys. Each kind has a prefix of its own, so that no user id, IP or
// address of one kind can name another kind's key.
func sendsPerEmailKey(purpose, canonical string) string {
	return "sends-email\x00" + purpose + "\x00" + canonical
}

func sendsPerIPKey(c caller) string           { return "sends-ip\x00" + c.unit() }
func wrongPerUserKey(subject string) string   { return "wrong-user\x00" + subject }
func wrongPerIPKey(c caller) string           { return "wrong-ip\x00" + c.unit() }
func changesPerUserKey(subject string) string { return "changes-user\x00" + subject }
func revertsPerIPKey(c caller) string         { return "reverts-ip\x00" + c.unit() }

// unit is what c's IP budgets count: its client address, or, for a
// Backend call without one, the Backend. The prefix keeps a backend's name
// from ever naming an address.
func (c caller) unit() string {
	if !c.ip.IsValid() && c.backend != "" {
		return "backend\x00" + c.backend
	}
	return ipKey(c.ip)
}
