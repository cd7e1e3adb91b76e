package selfservice

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ciamkit/selfservice/middleware"
)

// EventKind names what an audit Event records.
type EventKind string

// The audit events.
const (
	// EventCodeSent: a code was stored and handed to the Mailer.
	EventCodeSent EventKind = "code_sent"
	// EventCodeRejected: update-email was refused for a wrong, expired,
	// used or dead code.
	EventCodeRejected EventKind = "code_rejected"
	// EventEmailChanged: a user's email was changed and committed.
	EventEmailChanged EventKind = "email_changed"
	// EventNoticeFailed: the notice to the old address was given up: it
	// could not be delivered within Config.NoticeMaxAge (each failed
	// attempt before that is logged and counted, not reported here). The
	// change itself stands.
	EventNoticeFailed EventKind = "notice_failed"
	// EventEmailReverted: an undo token put a user's previous address
	// back (Event.Email; Event.OldEmail is the address it replaced) and
	// locked the user's email changes for Config.RevertCoolOff. The
	// change it undid was probably not the owner's: end the user's
	// sessions.
	EventEmailReverted EventKind = "email_reverted"
	// EventRevertRejected: an undo token was refused (malformed, unknown,
	// expired, used or voided).
	EventRevertRejected EventKind = "revert_rejected"
	// EventRateLimited: a budget refused a send or a code (Event.Budget
	// names it).
	EventRateLimited EventKind = "rate_limited"
)

// Event is one audit record. Addresses appear only masked (MaskEmail) and
// codes never.
type Event struct {
	Kind     EventKind
	Time     time.Time
	UserID   string // empty for EventCodeSent and EventRevertRejected: no user is known
	ClientID string
	Device   middleware.Device
	// Email is the masked address the event is about: the new one, for
	// EventNoticeFailed the old one, for EventEmailReverted the one
	// restored.
	Email string
	// OldEmail is the masked previous address, for EventEmailChanged, and
	// the address an undo replaced, for EventEmailReverted.
	OldEmail string
	// Budget names the budget that refused, for EventRateLimited: one of
	// BudgetSendsPerEmail, BudgetSendsPerIP, BudgetWrongCodesPerUser,
	// BudgetWrongCodesPerIP, BudgetChangesPerUser and BudgetRevertsPerIP.
	Budget string
}

// MaskEmail returns email with its local part hidden but for its first
// character, e.g. n***@example.com, for logs, audit events and notices.
// Anything without an @ is masked whole.
func MaskEmail(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return "***"
	}
	_, n := utf8.DecodeRuneInString(email)
	return email[:n] + "***" + email[at:]
}

// event records kind for the user (empty for sends) about email, and the
// previous address oldEmail when there is one.
func (s *Service) event(ctx context.Context, c caller, kind EventKind, userID, email, oldEmail string) {
	level := slog.LevelInfo
	if kind == EventNoticeFailed || kind == EventCodeRejected || kind == EventRevertRejected || kind == EventEmailReverted {
		level = slog.LevelWarn
	}
	s.emit(ctx, c, level, func(e *Event) {
		e.Kind, e.UserID, e.Email = kind, userID, MaskEmail(email)
		if oldEmail != "" {
			e.OldEmail = MaskEmail(oldEmail)
		}
	})
}

// rateLimited records that budget refused a request of the user (empty for
// sends).
func (s *Service) rateLimited(ctx context.Context, c caller, userID, budget string) {
	s.emit(ctx, c, slog.LevelWarn, func(e *Event) {
		e.Kind, e.UserID, e.Budget = EventRateLimited, userID, budget
	})
}

// emit fills in what every event of the caller c shares, lets fill add the
// rest, logs the event at level and hands it to Config.OnEvent. Nothing is
// built when neither would see it.
func (s *Service) emit(ctx context.Context, c caller, level slog.Level, fill func(*Event)) {
	if !s.cfg.Logger.Enabled(ctx, level) && s.cfg.OnEvent == nil {
		return
	}
	e := Event{Time: s.cfg.Now(), ClientID: c.clientID, Device: c.device}
	fill(&e)
	emitEvent(ctx, s.cfg.Logger, s.cfg.OnEvent, level, e)
}

// emitEvent logs e at level and hands it to onEvent, if set.
func emitEvent(ctx context.Context, logger *slog.Logger, onEvent func(context.Context, Event), level slog.Level, e Event) {
	if logger.Enabled(ctx, level) {
		attrs := []slog.Attr{
			slog.String("event", string(e.Kind)),
			slog.String("client", e.ClientID),
		}
		if e.Email != "" {
			attrs = append(attrs, slog.String("email", e.Email))
		}
		if e.UserID != "" {
			attrs = append(attrs, slog.String("user", e.UserID))
		}
		if e.OldEmail != "" {
			attrs = append(attrs, slog.String("old_email", e.OldEmail))
		}
		if e.Budget != "" {
			attrs = append(attrs, slog.String("budget", e.Budget))
		}
		logger.LogAttrs(ctx, level, "selfservice: "+string(e.Kind), attrs...)
	}
	if onEvent != nil {
		onEvent(ctx, e)
	}
}
