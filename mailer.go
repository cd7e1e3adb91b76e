package selfservice

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"golang.org/x/text/language"
)

// MailKind says what a Message is for.
type MailKind string

// The mails the package sends.
const (
	// MailCode carries a verification code (Message.Code) for the send
	// type Message.Purpose.
	MailCode MailKind = "code"
	// MailEmailChanged tells the old address that the account's email was
	// changed (Message.NewEmail, Message.ChangedAt) and how to undo it
	// (Message.RevertToken).
	MailEmailChanged MailKind = "email_changed"
)

// Message is one mail the package asks a Mailer to deliver.
type Message struct {
	// Kind is what the mail is for.
	Kind MailKind
	// Purpose is the send type a code is for, such as PurposeUpdateEmail
	// (MailCode only).
	Purpose string
	// To is the recipient as the user typed it (see CanonicalEmail).
	To string
	// Language is the language of the mail's text: for a code, the
	// request's; for a notice, the user's stored language (store.User's
	// Language), never the request's, so that whoever made the change does
	// not choose the language of the owner's alarm. language.Und, for a
	// notice to a user without one, asks for the text in every language of
	// the bundle.
	Language language.Tag

	// Code is the verification code to deliver (codes only).
	Code string
	// ExpiresIn is how long the code stays valid (codes only).
	ExpiresIn time.Duration

	// NewEmail is the new address, masked (notices only).
	NewEmail string
	// ChangedAt is when the change was committed (notices only).
	ChangedAt time.Time
	// RevertToken undoes the change (notices only; empty when the change
	// has no undo): POST it to the revert-email endpoint
	// (RevertEmailPath), which restores the old address. The SMTP mailer
	// turns it into a link to the application's undo page
	// (mail.Options.RevertURL). It is as sensitive as a code.
	RevertToken string
}

// Mailer delivers messages. Send must not keep msg.Code or msg.RevertToken
// after it returns, and must return when ctx is done. A notice is sent
// again after a failure, and possibly twice after a crash: delivery is at
// least once.
//
// An error tells the mail circuit (see Config.MailCoolDown) whether the
// mail server is failing, and send-code whether the send spent budget:
//
//   - An error wrapping ErrRecipientRejected is a refusal of this
//     recipient (an address the Mailer finds invalid, a permanent refusal
//     of RCPT TO, such as an unknown mailbox or a non-ASCII address a
//     server without SMTPUTF8 cannot take): the server works, and the
//     circuit counts it as a success. Since the client picks the address,
//     counting it as a failure would let anyone open the circuit.
//   - An error wrapping ErrNotSent says the Mailer gave up before it
//     tried the server (it waited for a connection of its own until ctx
//     ended, or it is closed): the circuit does not count it, and the
//     send costs no budget.
//   - Any other error counts as the server failing, except one wrapping
//     context.Canceled (the client went away).
//
// Whatever the error, send-code answers IDAAS.SDK.CAPTCHA.0006 and the code
// is withdrawn; a send refused for its recipient keeps its budget charge,
// which is what bounds a client that tries addresses the server refuses.
type Mailer interface {
	Send(ctx context.Context, msg Message) error
}

// The errors a Mailer wraps to say why a send failed (see Mailer).
const (
	// ErrRecipientRejected marks a failure specific to the recipient:
	// the mail server works, it refused this address.
	ErrRecipientRejected mailError = "selfservice: recipient rejected"
	// ErrNotSent marks a send the Mailer gave up before trying the mail
	// server, for a reason of its own: nothing reached the server.
	ErrNotSent mailError = "selfservice: mail not sent"
)

// mailError is the type of ErrRecipientRejected and ErrNotSent: constants,
// so that no importer can reassign them.
type mailError string

func (e mailError) Error() string { return string(e) }

// MailerFunc adapts a function to Mailer.
type MailerFunc func(ctx context.Context, msg Message) error

// Send calls f.
func (f MailerFunc) Send(ctx context.Context, msg Message) error { return f(ctx, msg) }

// LogMailer is the development Mailer: it writes every message to w as one
// JSON line and delivers nothing: {"kind":"code","purpose","to","code",
// "language","expires_in_seconds"} for a code, {"kind":"email_changed",
// "to","language","new_email","changed_at","revert_token"} for a notice
// (language "und" when the notice is in every language). It prints codes
// and undo tokens in clear, so it has no place in production.
type LogMailer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLogMailer returns a LogMailer writing to w.
func NewLogMailer(w io.Writer) *LogMailer { return &LogMailer{w: w} }

// Send implements Mailer.
func (m *LogMailer) Send(_ context.Context, msg Message) error {
	line := logLine{Kind: msg.Kind, Purpose: msg.Purpose, To: msg.To, Code: msg.Code, Language: msg.Language.String(),
		NewEmail: msg.NewEmail, RevertToken: msg.RevertToken}
	if msg.Code != "" {
		line.ExpiresIn = int64(msg.ExpiresIn / time.Second)
	}
	if !msg.ChangedAt.IsZero() {
		line.ChangedAt = msg.ChangedAt.UTC().Format(time.RFC3339)
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err = m.w.Write(append(b, '\n'))
	return err
}

type logLine struct {
	Kind        MailKind `json:"kind"`
	Purpose     string   `json:"purpose,omitempty"`
	To          string   `json:"to"`
	Code        string   `json:"code,omitempty"`
	Language    string   `json:"language"`
	ExpiresIn   int64    `json:"expires_in_seconds,omitempty"`
	NewEmail    string   `json:"new_email,omitempty"`
	ChangedAt   string   `json:"changed_at,omitempty"`
	RevertToken string   `json:"revert_token,omitempty"`
}

// CaptchaVerifier checks the captcha_token of a send request against the
// integrator's human-check service. VerifyCaptcha returns nil for a pass,
// an error wrapping ErrCaptchaRejected for a refused token, and any other
// error when the service could not answer (answered as an internal failure).
type CaptchaVerifier interface {
	VerifyCaptcha(ctx context.Context, token string) error
}

// CaptchaFunc adapts a function to CaptchaVerifier.
type CaptchaFunc func(ctx context.Context, token string) error

// VerifyCaptcha calls f.
func (f CaptchaFunc) VerifyCaptcha(ctx context.Context, token string) error { return f(ctx, token) }

// AllowAllCaptcha is the CaptchaVerifier that passes every non-empty token.
// It exists for development and tests and must be chosen explicitly
// (Captcha: selfservice.AllowAllCaptcha{}): Config has no default verifier.
type AllowAllCaptcha struct{}

// VerifyCaptcha returns nil.
func (AllowAllCaptcha) VerifyCaptcha(context.Context, string) error { return nil }

// ErrCaptchaRejected is what a CaptchaVerifier wraps when it refuses a
// token; it is answered with IDAAS.SDK.CAPTCHA.9202.
const ErrCaptchaRejected captchaRejected = "selfservice: captcha rejected"

// captchaRejected is the type of ErrCaptchaRejected: a constant, so that no
// importer can reassign it.
type captchaRejected string

func (e captchaRejected) Error() string { return string(e) }
