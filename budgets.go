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
// counted per /64 (one subscriber's usual allocation) except those that
// embed an IPv4 address (NAT64, 6to4, Teredo), counted as that IPv4
// address; a call of a Backend without an address is counted under the
// Backend. Nothing the client sends in a header counts, unless the
// integrator's ClientIP trusts a proxy.
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

// reservation is a slot taken in a budget, which cancel gives back; an
// empty id is a slot already given back.
type reservation = store.Reservation

// requests returns the Limiter's requests for bs.
func requests(bs []budget) []store.LimitRequest {
	reqs := make([]store.LimitRequest, len(bs))
	for i, b := range bs {
		reqs[i] = store.LimitRequest{Key: b.key, Limits: b.limits}
	}
	return reqs
}

// reserve takes one slot in each budget, all or none: in one call when the
// Limiter is a store.BatchLimiter, else one by one, giving back the slots
// taken when one refuses. A refusal is returned as the refusing budget's
// code (with its Retry-After) after an EventRateLimited for userID (empty
// for sends). A store failure is an internal error.
func (s *Service) reserve(ctx context.Context, c caller, userID string, bs ...budget) ([]reservation, error) {
	now := s.cfg.Now()
	taken := make([]reservation, 0, len(bs))
	if s.batch != nil {
		ids, err := s.batch.ReserveAll(ctx, requests(bs), now)
		if err != nil {
			return nil, s.refusal(ctx, c, userID, bs, err)
		}
		if len(ids) != len(bs) {
			return nil, i18n.Wrap(i18n.CodeInternal, fmt.Errorf("the Limiter returned %d ids for %d budgets", len(ids), len(bs)))
		}
		for i, b := range bs {
			taken = append(taken, reservation{Key: b.key, ID: ids[i]})
		}
		return taken, nil
	}
	for _, b := range bs {
		id, err := s.cfg.Limiter.Reserve(ctx, b.key, b.limits, now)
		if err != nil {
			s.cancel(ctx, taken)
			var rl *store.RateLimitError
			if errors.As(err, &rl) && rl.Key == "" {
				rl.Key = b.key
			}
			return nil, s.refusal(ctx, c, userID, bs, err)
		}
		taken = append(taken, reservation{Key: b.key, ID: id})
	}
	return taken, nil
}

// refusal answers err, a Limiter's failure to reserve bs: a refusal as the
// refusing budget's code, reported; anything else as an internal error.
func (s *Service) refusal(ctx context.Context, c caller, userID string, bs []budget, err error) error {
	var rl *store.RateLimitError
	if !errors.As(err, &rl) {
		return i18n.Wrap(i18n.CodeInternal, err)
	}
	for _, b := range bs {
		if b.key == rl.Key {
			s.tel.refused(ctx, b.name)
			s.rateLimited(ctx, c, userID, b.name)
			return &i18n.Error{Code: b.refused, RetryAfter: rl.RetryAfter, Err: fmt.Errorf("budget %s: %w", b.name, err)}
		}
	}
	return i18n.Wrap(i18n.CodeInternal, fmt.Errorf("the Limiter refused a key it was not asked for: %w", err))
}

// cancel gives slots back. It runs even if the request was cancelled, and a
// failure only leaves a budget counting one event too many, the safe side,
// so it is logged and not answered.
func (s *Service) cancel(ctx context.Context, taken []reservation) {
	ctx = context.WithoutCancel(ctx)
	live := taken[:0:0]
	for _, r := range taken {
		if r.ID != "" {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	if s.batch != nil {
		if err := s.batch.CancelAll(ctx, live); err != nil {
			s.cfg.Logger.WarnContext(ctx, "selfservice: giving back budget slots failed", "error", err)
		}
		return
	}
	for _, r := range live {
		if err := s.cfg.Limiter.Cancel(ctx, r.Key, r.ID); err != nil {
			s.cfg.Logger.WarnContext(ctx, "selfservice: giving back a budget slot failed", "error", err)
		}
	}
}

// checkCode charges the update's budgets and verifies the code: in one
// step when the code store keeps the Limiter's budgets too (a
// store.CodeChecker), else as reserve, Verify and cancel. The slots kept
// come back in the order of bs, "" for those given back; keepOn says on
// which outcome each budget keeps its slot. Its error wraps
// store.ErrCodeInvalid for a wrong code, and is otherwise an i18n error: a
// budget's refusal, or an internal failure (which keeps every slot: the
// code may have been evaluated before the answer was lost).
func (s *Service) checkCode(ctx context.Context, c caller, userID string, key store.CodeKey, hashes [][]byte, bs []budget, keepOn []store.Outcome) ([]reservation, error) {
	if s.checker != nil {
		charges := make([]store.Charge, len(bs))
		for i, r := range requests(bs) {
			charges[i] = store.Charge{LimitRequest: r, KeepOn: keepOn[i]}
		}
		ids, err := s.checker.CheckCode(ctx, store.CodeCheck{Key: key, Hashes: hashes, MaxTries: s.cfg.MaxTries, Now: s.cfg.Now(), Charges: charges})
		switch {
		case errors.Is(err, store.ErrRateLimited):
			return nil, s.refusal(ctx, c, userID, bs, err)
		case err != nil && !errors.Is(err, store.ErrCodeInvalid):
			return nil, i18n.Wrap(i18n.CodeInternal, err)
		}
		kept := make([]reservation, len(bs))
		for i, b := range bs {
			if i < len(ids) {
				kept[i] = reservation{Key: b.key, ID: ids[i]}
			}
		}
		return kept, err
	}
	taken, err := s.reserve(ctx, c, userID, bs...)
	if err != nil {
		return nil, err
	}
	err = s.cfg.Codes.Verify(ctx, key, hashes, s.cfg.MaxTries, s.cfg.Now())
	if err != nil && !errors.Is(err, store.ErrCodeInvalid) {
		return nil, i18n.Wrap(i18n.CodeInternal, err)
	}
	outcome := store.OnMatch
	if err != nil {
		outcome = store.OnMismatch
	}
	var back []reservation
	for i := range taken {
		if keepOn[i] != outcome {
			back = append(back, taken[i])
			taken[i].ID = ""
		}
	}
	s.cancel(ctx, back)
	return taken, err
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
