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
	// EventNoticeFailed: the notice to the old address could not be sent;
	// the change itself stands.
	EventNoticeFailed EventKind = "notice_failed"
)

// Event is one audit record. Addresses appear only masked (MaskEmail) and
// codes never.
type Event struct {
	Kind     EventKind
	Time     time.Time
	UserID   string // empty for EventCodeSent: sending involves no user
	ClientID string
	Device   middleware.Device
	// Email is the masked address the event is about: the new one, or
	// for EventNoticeFailed the old one.
	Email string
	// OldEmail is the masked previous address, for EventEmailChanged.
	OldEmail string
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
// previous address oldEmail when there is one: it fills in what every event
// of this request shares, logs it and hands it to Config.OnEvent. Nothing is
// built when neither would see it.
func (s *Service) event(ctx context.Context, kind EventKind, userID, email, oldEmail string) {
	level := slog.LevelInfo
	if kind == EventNoticeFailed || kind == EventCodeRejected {
		level = slog.LevelWarn
	}
	logged := s.cfg.Logger.Enabled(ctx, level)
	if !logged && s.cfg.OnEvent == nil {
		return
	}
	e := Event{Kind: kind, Time: s.cfg.Now(), UserID: userID, Email: MaskEmail(email)}
	if oldEmail != "" {
		e.OldEmail = MaskEmail(oldEmail)
	}
	if c, ok := middleware.ClientFromContext(ctx); ok {
		e.ClientID = c.ID
	}
	e.Device, _ = middleware.DeviceFromContext(ctx)
	if logged {
		attrs := []slog.Attr{
			slog.String("event", string(e.Kind)),
			slog.String("client", e.ClientID),
			slog.String("email", e.Email),
		}
		if e.UserID != "" {
			attrs = append(attrs, slog.String("user", e.UserID))
		}
		if e.OldEmail != "" {
			attrs = append(attrs, slog.String("old_email", e.OldEmail))
		}
		s.cfg.Logger.LogAttrs(ctx, level, "selfservice: "+string(e.Kind), attrs...)
	}
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(ctx, e)
	}
}
