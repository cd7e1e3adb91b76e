package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/internal/configerr"
)

// TLSPolicy says how the connection to the SMTP server is secured.
type TLSPolicy int

// The TLS policies.
const (
	// TLSMandatory upgrades the connection with STARTTLS and fails when
	// the server does not offer it. It is the zero value.
	TLSMandatory TLSPolicy = iota
	// TLSOpportunistic upgrades with STARTTLS when the server offers it
	// and goes on in clear text otherwise; someone on the path can strip
	// the offer.
	TLSOpportunistic
	// TLSImplicit speaks TLS from the first byte ("smtps", RFC 8314),
	// usually on port 465.
	TLSImplicit
	// TLSNone never encrypts: for a relay on the same host or a test
	// server.
	TLSNone
)

// String returns the policy's name.
func (p TLSPolicy) String() string {
	switch p {
	case TLSMandatory:
		return "mandatory STARTTLS"
	case TLSOpportunistic:
		return "opportunistic STARTTLS"
	case TLSImplicit:
		return "implicit TLS"
	case TLSNone:
		return "no TLS"
	}
	return "TLSPolicy(" + strconv.Itoa(int(p)) + ")"
}

// The defaults of Options.
const (
	DefaultTimeout            = 10 * time.Second
	DefaultMaxConns           = 4
	DefaultIdleTimeout        = 30 * time.Second
	DefaultMaxMessagesPerConn = 100
)

// Options configures New. The zero value of every field but Host and From
// is its documented default.
type Options struct {
	// Host is the SMTP server's name or IP address, without a port.
	// Required.
	Host string
	// Port is the SMTP server's port. Default: 465 with TLSImplicit, 587
	// (submission) otherwise.
	Port int

	// Username and Password log in to the server; set both or neither.
	// Without them the mailer does not authenticate. With them it uses
	// the first of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN and LOGIN that the
	// server offers (else what go-mail's auto-discovery accepts), fails
	// when the server offers no AUTH, and never sends PLAIN or LOGIN
	// credentials over an unencrypted connection to anything but
	// localhost.
	Username string
	Password string

	// TLS is how the connection is secured. Default: TLSMandatory.
	TLS TLSPolicy
	// TLSConfig is used for STARTTLS and implicit TLS; a copy is taken.
	// Default: the server's certificate is verified for Host, TLS 1.2 at
	// least. An empty ServerName is set to Host.
	TLSConfig *tls.Config

	// From is the sender's bare address, such as no-reply@example.com.
	// Required.
	From string
	// FromName is the sender's display name, such as "Example Accounts".
	// Default: none.
	FromName string

	// Timeout bounds connecting and each exchange with the server. The
	// context given to Send bounds the whole send. Default: DefaultTimeout.
	Timeout time.Duration

	// MaxConns bounds the SMTP sessions open at once, idle or busy. A
	// session carries one mail at a time; a send that finds every session
	// busy waits for one, until its context ends. Notices use at most
	// MaxConns-1 of them (when MaxConns > 1), so that a code mail, which
	// someone is waiting for, never queues behind notices alone. Default:
	// DefaultMaxConns (4), which carries hundreds of mails a second to a
	// nearby server.
	MaxConns int
	// IdleTimeout closes a session that carried no mail for that long,
	// with a QUIT. Servers drop idle clients of their own accord (RFC
	// 5321 lets them after 5 minutes, many do sooner); a mailer that
	// finds its session dropped opens a new one, at the cost of a
	// reconnect, not of a failed send. Default: DefaultIdleTimeout (30s).
	IdleTimeout time.Duration
	// MaxMessagesPerConn closes a session after that many mails and opens
	// a new one: servers cap the mails of one session (some at 100) and
	// answer the next with an error. 1 opens a session for every mail.
	// Default: DefaultMaxMessagesPerConn (100).
	MaxMessagesPerConn int
	// Location is the time zone of the time shown in notices.
	// Default: UTC.
	Location *time.Location
	// Bundle holds the mail texts (i18n.MailMessages()). Default:
	// i18n.Default().
	Bundle *i18n.Bundle

	// RevertURL is the application's undo page, such as
	// https://app.example.com/account/undo-email: an absolute https URL
	// (http only to a loopback host, for development), without user
	// information or a fragment. A notice whose Message has a RevertToken
	// links to RevertURL + "#revert_token=" + the token, URL-encoded. The
	// token rides in the fragment, which browsers never send to a server,
	// so it reaches no access log and no Referer; the page reads it from
	// location.hash and POSTs {"revert_token": ...} to the revert-email
	// endpoint. Default: none, and notices carry no link, only the advice
	// to contact support. Production should set it: the link is what lets
	// the owner take the address back at once.
	RevertURL string
}

// SMTPMailer is a selfservice.Mailer that delivers through an SMTP server.
// It keeps up to MaxConns sessions open, each connected, secured and
// logged in once, and sends each mail on an idle one: a mail costs one
// transaction (MAIL, RCPT, DATA), not a session. It is safe for concurrent
// use. The application should Close it at shutdown, after the
// selfservice.Service (whose Shutdown sends the last notices), so that
// the server sees each session end with a QUIT.
type SMTPMailer struct {
	opts      Options
	addr      string // host:port
	from      *netmail.Address
	msgDomain string          // right side of Message-IDs: From's domain
	client    []gomail.Option // go-mail options shared by every session
	pool      *pool
}

var _ selfservice.Mailer = (*SMTPMailer)(nil)

// New validates opts, fills in their defaults and returns the mailer. It
// refuses a missing Host, a From that is not a bare valid address, a From
// or FromName with a control character (ErrHeaderInjection), a RevertURL
// that is not as its doc says, and a Bundle that cannot render every mail.
// Errors wrap selfservice.ErrConfig.
func New(opts Options) (*SMTPMailer, error) {
	if opts.Host == "" || strings.ContainsFunc(opts.Host, isUnsafe) || strings.ContainsAny(opts.Host, " /") {
		return nil, fmt.Errorf("%w: Host is required and must be a host name or IP address", configerr.Err)
	}
	if strings.Contains(opts.Host, ":") && net.ParseIP(opts.Host) == nil {
		return nil, fmt.Errorf("%w: Host must not hold a port, set Port", configerr.Err)
	}
	switch opts.TLS {
	case TLSMandatory, TLSOpportunistic, TLSNone, TLSImplicit:
	default:
		return nil, fmt.Errorf("%w: unknown TLS policy %d", configerr.Err, int(opts.TLS))
	}
	if opts.Port == 0 {
		opts.Port = 587
		if opts.TLS == TLSImplicit {
			opts.Port = 465
		}
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("%w: Port %d is out of range", configerr.Err, opts.Port)
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, fmt.Errorf("%w: set both Username and Password, or neither", configerr.Err)
	}
	from, err := bareAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("%w: From: %w", configerr.Err, err)
	}
	if strings.ContainsFunc(opts.FromName, isUnsafe) {
		return nil, fmt.Errorf("%w: FromName: %w", configerr.Err, ErrHeaderInjection)
	}
	if !utf8.ValidString(opts.FromName) {
		return nil, fmt.Errorf("%w: FromName is not valid UTF-8", configerr.Err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative Timeout", configerr.Err)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxMessagesPerConn == 0 {
		opts.MaxMessagesPerConn = DefaultMaxMessagesPerConn
	}
	if opts.MaxConns < 0 || opts.IdleTimeout < 0 || opts.MaxMessagesPerConn < 0 {
		return nil, fmt.Errorf("%w: negative MaxConns, IdleTimeout or MaxMessagesPerConn", configerr.Err)
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Bundle == nil {
		opts.Bundle = i18n.Default()
	}
	if opts.RevertURL != "" {
		u, err := checkRevertURL(opts.RevertURL)
		if err != nil {
			return nil, err
		}
		opts.RevertURL = u
	}
	if err := canRender(opts.Bundle, opts.RevertURL); err != nil {
		return nil, fmt.Errorf("%w: Bundle: %w", configerr.Err, err)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLSConfig != nil {
		tlsConfig = opts.TLSConfig.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = opts.Host
	}
	opts.TLSConfig = tlsConfig

	m := &SMTPMailer{
		opts:      opts,
		addr:      net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		from:      &netmail.Address{Name: opts.FromName, Address: from},
		msgDomain: from[strings.LastIndexByte(from, '@')+1:],
	}
	policy := gomail.TLSMandatory
	switch opts.TLS {
	case TLSOpportunistic:
		policy = gomail.TLSOpportunistic
	case TLSNone, TLSImplicit:
		// Implicit TLS is set up by dial, before go-mail sees the
		// connection.
		policy = gomail.NoTLS
	}
	m.client = []gomail.Option{
		gomail.WithPort(opts.Port),
		gomail.WithTimeout(opts.Timeout),
		gomail.WithTLSPolicy(policy),
		gomail.WithTLSConfig(tlsConfig),
		// The pool checks a session that rested (see checkAfter), not
		// every one; and a transaction that ended with 250 leaves
		// nothing to RSET (RFC 5321, 4.1.1.4).
		gomail.WithoutNoop(),
		gomail.WithoutRset(),
	}
	if opts.Username != "" {
		// PLAIN and LOGIN are go-mail's checked variants: they refuse a
		// clear-text connection to anything but localhost.
		m.client = append(m.client,
			gomail.WithUsername(opts.Username),
			gomail.WithPassword(opts.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	m.pool = newPool(m)
	return m, nil
}

// checkRevertURL returns the undo page's URL in its normal form, or why it
// cannot be linked from a mail. Errors do not quote the URL, which may
// hold a password.
func checkRevertURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !utf8.ValidString(raw) || strings.ContainsFunc(raw, func(r rune) bool { return isUnsafe(r) || unicode.IsSpace(r) }) {
		return "", fmt.Errorf("%w: RevertURL does not parse", configerr.Err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return "", fmt.Errorf("%w: RevertURL must be https (or http to a loopback host)", configerr.Err)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("%w: RevertURL must be absolute, with a host", configerr.Err)
	}
	if u.User != nil {
		// https://example.com@evil.example/ is a phishing classic.
		return "", fmt.Errorf("%w: RevertURL must not hold user information", configerr.Err)
	}
	if strings.Contains(raw, "#") {
		return "", fmt.Errorf("%w: RevertURL must not have a fragment: the token goes there", configerr.Err)
	}
	return u.String(), nil
}

func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return (err == nil && ip.IsLoopback()) || host == "localhost"
}

// canRender renders every kind of mail in every language of b, a notice
// with and without an undo token, and the notice in every language at once,
// so that a bundle whose texts use data the mails do not have fails at
// start-up rather than at the first send.
func canRender(b *i18n.Bundle, revertURL string) error {
	notice := selfservice.Message{Kind: selfservice.MailEmailChanged, NewEmail: "n***@example.com", ChangedAt: time.Unix(0, 0)}
	msgs := []selfservice.Message{withToken(notice, language.Und)}
	for _, loc := range b.Locales() {
		notice.Language = loc.Tag()
		msgs = append(msgs,
			selfservice.Message{Kind: selfservice.MailCode, Purpose: selfservice.PurposeUpdateEmail, Language: loc.Tag(), Code: "000000", ExpiresIn: time.Minute},
			notice, withToken(notice, loc.Tag()))
	}
	for _, msg := range msgs {
		if _, err := render(b, msg, revertURL); err != nil {
			return err
		}
	}
	return nil
}

func withToken(msg selfservice.Message, lang language.Tag) selfservice.Message {
	msg.Language = lang
	msg.RevertToken = "start-up-check"
	return msg
}

// Render returns the mail that Send delivers for msg: what the package's
// Render returns with the mailer's Bundle, the time of a notice in its
// Location, and the undo link to its RevertURL.
func (m *SMTPMailer) Render(msg selfservice.Message) (Content, error) {
	if !msg.ChangedAt.IsZero() {
		msg.ChangedAt = msg.ChangedAt.In(m.opts.Location)
	}
	return render(m.opts.Bundle, msg, m.opts.RevertURL)
}

// Send renders msg (see SMTPMailer.Render) and delivers it to msg.To. It
// refuses a recipient with a control character (ErrHeaderInjection) or one
// that is not a bare valid address (ErrInvalidAddress) before connecting,
// and sends nothing once the mailer is closed (ErrClosed). As the
// selfservice.Mailer contract asks, those recipient errors and a permanent
// (5xx) refusal of RCPT TO wrap selfservice.ErrRecipientRejected, and a
// send that ends before it tried the server, closed or still waiting for
// one of the MaxConns sessions when ctx ends, wraps
// selfservice.ErrNotSent. It returns when
// the mail is accepted by the server, when the server fails, or when ctx
// is done, whichever comes first: then the session is closed, never used
// again, and nothing of msg is kept. A session that the server dropped
// while it was idle is replaced by a new one, and the mail sent again on
// it, only if it failed before the server accepted DATA: after that the
// server may hold the mail, and a second attempt could deliver a code
// twice. Error texts show the recipient masked and never the code or the
// undo token.
func (m *SMTPMailer) Send(ctx context.Context, msg selfservice.Message) error {
	to, err := bareAddress(msg.To)
	if err != nil {
		return mark(fmt.Errorf("%w (recipient)", err), selfservice.ErrRecipientRejected)
	}
	content, err := m.Render(msg)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return mark(fmt.Errorf("mail: send: %w", err), selfservice.ErrNotSent)
	}

	out := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	out.SetAddrHeaderFromMailAddress(gomail.HeaderFrom, m.from)
	out.ToMailAddress(&netmail.Address{Address: to})
	out.Subject(content.Subject)
	out.SetMessageIDWithValue(rand.Text() + "@" + m.msgDomain)
	out.SetDate()
	out.SetGenHeader(gomail.HeaderContentLang, content.ContentLanguage)
	// Automatic replies (out of office...) have no one to reach here.
	out.SetGenHeader("Auto-Submitted", "auto-generated")
	out.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	out.SetBodyString(gomail.TypeTextPlain, content.Text)
	out.AddAlternativeString(gomail.TypeTextHTML, content.HTML)

	if err := m.pool.send(ctx, out, msg.Kind == selfservice.MailCode); err != nil {
		if errors.Is(err, ErrClosed) {
			return mark(err, selfservice.ErrNotSent)
		}
		return newSendError(ctx.Err(), err, msg)
	}
	return nil
}

// ErrClosed reports a Send after Close.
const ErrClosed sentinel = "mail: mailer closed"

// Close closes the idle sessions, each with a QUIT, and the busy ones as
// their sends end; a Send after Close fails with ErrClosed. It returns
// once every session is closed, or when ctx is done: then it closes the
// connections still open, which fails the sends on them, and returns an
// error wrapping ctx.Err(). Calling it again waits the same way.
func (m *SMTPMailer) Close(ctx context.Context) error {
	return m.pool.close(ctx)
}

// sendError is a failed delivery. Its text has the recipient masked and the
// code and the undo token hidden, since a server's reply often quotes the
// recipient and may quote more; the causes stay reachable with errors.Is
// and errors.As.
type sendError struct {
	text string
	errs []error
}

func (e *sendError) Error() string   { return e.text }
func (e *sendError) Unwrap() []error { return e.errs }

func newSendError(ctxErr, err error, msg selfservice.Message) error {
	errs := []error{err}
	text := err.Error()
	if ctxErr != nil {
		// go-mail reports the closed connection; the reason is the context.
		errs = []error{ctxErr, err}
		text = ctxErr.Error() + ": " + text
	}
	if refusedRecipient(err) {
		errs = append(errs, selfservice.ErrRecipientRejected)
	}
	text = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(msg.To)).ReplaceAllLiteralString(text, selfservice.MaskEmail(msg.To))
	// The token as it stands in the link, too; the longer first, so that
	// no part of one survives the other's stars.
	for _, secret := range []string{url.QueryEscape(msg.RevertToken), msg.RevertToken, msg.Code} {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, strings.Repeat("*", len(secret)))
		}
	}
	return &sendError{text: "mail: send: " + text, errs: errs}
}

// refusedRecipient reports a permanent (5xx) reply to RCPT TO: the server
// works and refuses this address (unknown mailbox, bad domain, a non-ASCII
// address without SMTPUTF8...). A temporary (4xx) reply, or a connection
// lost at RCPT, says nothing of the address.
func refusedRecipient(err error) bool {
	var se *gomail.SendError
	return errors.As(err, &se) && se.Reason == gomail.ErrSMTPRcptTo && se.ErrorCode() >= 500
}

// marked is err, with a sentinel of the selfservice.Mailer contract that
// errors.Is finds and that leaves the text as it is.
type marked struct{ err, mark error }

func mark(err, sentinel error) error { return &marked{err: err, mark: sentinel} }

func (e *marked) Error() string   { return e.err.Error() }
func (e *marked) Unwrap() []error { return []error{e.err, e.mark} }

// bareAddress returns s if it is a bare, valid address (local@domain, no
// display name, no angle brackets, no white space around).
func bareAddress(s string) (string, error) {
	if strings.ContainsFunc(s, isUnsafe) {
		return "", ErrHeaderInjection
	}
	if !utf8.ValidString(s) {
		return "", ErrInvalidAddress
	}
	a, err := netmail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrInvalidAddress
	}
	return s, nil
}

// isUnsafe reports the runes that could end a header line or hide inside
// one: control characters (C0, DEL, C1 including NEL) and the Unicode line
// and paragraph separators.
func isUnsafe(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}
