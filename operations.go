package selfservice

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
)

// Caller is who asks, as the HTTP API learns it from the request's headers
// and connection: the registered application, the device, the client's
// address and its language.
type Caller struct {
	// ClientID is the registered application (X-client-id).
	ClientID string
	// Device is what the client says about itself (the device headers);
	// OSVersion, Fingerprint and Agent are required (Device.Valid),
	// unless Backend is set.
	Device Device
	// Backend, when set, names a front the application trusts that acts
	// without a device to describe: a CLI, an admin tool, a service of the
	// application's own. Device may then be empty (it is still checked
	// when given). An explicit choice: calls made for a device's user
	// leave it empty and pass the device.
	Backend string
	// IP is the client's address, which the IP budgets count (see
	// Config.ClientIP). A call without one (the zero Addr) is counted
	// under Backend when set, else under one address shared by every
	// such call: give the real one when there is one.
	IP netip.Addr
	// Language is the language of the mails. Default: the bundle's.
	Language language.Tag
}

// SendCodeRequest is a request to mail a verification code: the body of
// POST /api/v2/sdk/email/send and its caller.
type SendCodeRequest struct {
	Caller
	// Email is the address to mail the code to, as the user typed it.
	Email string
	// Type is what the code is for; this package serves
	// PurposeUpdateEmail only.
	Type string
	// CaptchaToken is checked by Config.Captcha.
	CaptchaToken string
}

// UpdateEmailRequest is a request to change the signed-in user's email: the
// body of POST /api/v2/sdk/profile/update-email, its caller and the user.
type UpdateEmailRequest struct {
	Caller
	// Identity is the signed-in user, when the application authenticated
	// them itself; else IDToken is verified with Config.Verifier.
	Identity Identity
	// IDToken is the bearer id_token, used when Identity.Subject is empty
	// and Config.Verifier is set; without a Verifier it is not looked at,
	// as the HTTP endpoint does not look at a stray Authorization header.
	IDToken string
	// Email is the new address, as the user typed it.
	Email string
	// VerifyCode is the code mailed to Email.
	VerifyCode string
}

// SendCode mails a code for req.Email, running the checks of the HTTP
// endpoint in the same order: device, client id empty, client registered,
// type, email rules, captcha, budgets (per client IP, then per address);
// then the code is stored and mailed. The answer does not depend on whether
// the address belongs to anyone. An error is an i18n.Code or an *i18n.Error
// (see i18n.ErrorOf); a *i18n.Error of a 429 carries its RetryAfter.
func (s *Service) SendCode(ctx context.Context, req SendCodeRequest) (err error) {
	defer s.tel.endOperation(ctx, s.tel.sendCode, s.tel.startOperation(ctx), &err)
	c, err := s.checkCaller(ctx, req.Caller)
	if err != nil {
		return err
	}
	return s.sendCode(ctx, c, req)
}

// UpdateEmail changes the signed-in user's email to req.Email, running the
// checks of the HTTP endpoint in the same order: device, client id empty,
// client registered, user given (Identity, or an IDToken to verify), the
// sign-in's age (Config.MaxAuthAge), verify_code empty, email rules, user
// exists, [the user's own address: done], code well-formed, wrong-code
// budgets, code correct, email free, update. Errors are as for SendCode.
func (s *Service) UpdateEmail(ctx context.Context, req UpdateEmailRequest) (err error) {
	defer s.tel.endOperation(ctx, s.tel.updateEmail, s.tel.startOperation(ctx), &err)
	c, err := s.checkCaller(ctx, req.Caller)
	if err != nil {
		return err
	}
	id := req.Identity
	switch {
	case id.Subject != "":
	case s.cfg.Verifier == nil:
		return i18n.CodeNotSignedIn
	case strings.TrimSpace(req.IDToken) == "":
		return i18n.CodeTokenEmpty
	default:
		// The client the caller's check found: a Verifier that picks keys
		// by client needs no second lookup.
		vctx := middleware.WithClient(ctx, c.client)
		if id, err = s.cfg.Verifier.VerifyToken(vctx, strings.TrimSpace(req.IDToken), c.clientID); err != nil {
			return err
		}
	}
	if err := s.checkAuthAge(id); err != nil {
		return err
	}
	return s.updateEmail(ctx, c, id, req.Email, req.VerifyCode)
}

// caller is a Caller that passed checkCaller: the client is registered.
type caller struct {
	clientID string
	client   store.Client
	device   Device
	ip       netip.Addr
	backend  string
	language language.Tag
}

// checkCaller runs the checks the middlewares run on HTTP requests, on the
// device as the headers would give it: trimmed.
func (s *Service) checkCaller(ctx context.Context, c Caller) (caller, error) {
	d := &c.Device
	d.OSVersion, d.Fingerprint, d.Agent = strings.TrimSpace(d.OSVersion), strings.TrimSpace(d.Fingerprint), strings.TrimSpace(d.Agent)
	if c.Backend = strings.TrimSpace(c.Backend); !d.Valid() && (c.Backend == "" || *d != Device{}) {
		return caller{}, i18n.CodeDeviceIncomplete
	}
	client, err := middleware.LookupClient(ctx, s.cfg.Clients, c.ClientID)
	if err != nil {
		if errors.Is(err, i18n.CodeInternal) {
			s.cfg.Logger.ErrorContext(ctx, "selfservice: client registry failed", "error", err)
		}
		return caller{}, err
	}
	lang := c.Language
	if lang == language.Und {
		lang = s.cfg.Bundle.DefaultLocale().Tag()
	}
	return caller{clientID: client.ID, client: client, device: c.Device, ip: c.IP, backend: c.Backend, language: lang}, nil
}

// checkAuthAge applies Config.MaxAuthAge: the user must have signed in
// recently enough for this change.
func (s *Service) checkAuthAge(id middleware.Identity) error {
	if s.cfg.MaxAuthAge == 0 {
		return nil
	}
	if id.AuthTime.IsZero() || s.cfg.Now().Sub(id.AuthTime) > s.cfg.MaxAuthAge {
		if s.cfg.Verifier == nil {
			return i18n.CodeSignInAgain
		}
		return i18n.CodeReauthRequired
	}
	return nil
}

// withdraw spends the code stored as hash under key, if it is still the
// live one; otherwise it leaves the live code, charged one try. The try
// limit given is no limit, so that this try never ends another code.
func (s *Service) withdraw(ctx context.Context, key store.CodeKey, hash []byte) error {
	return s.cfg.Codes.Verify(context.WithoutCancel(ctx), key, [][]byte{hash}, math.MaxInt32, s.cfg.Now())
}

// sendCode runs SendCode's checks after the caller's. It serves
// PurposeUpdateEmail only: the family's other send types (REGISTER_EMS,
// LOGIN_EMS, ...) get IDAAS.SDK.PARAM.9203 like unknown ones.
func (s *Service) sendCode(ctx context.Context, c caller, req SendCodeRequest) error {
	if req.Type != PurposeUpdateEmail {
		return i18n.CodeTypeUnsupported
	}
	email, canonical, err := CanonicalEmail(req.Email)
	if err != nil {
		return err
	}
	if strings.TrimSpace(req.CaptchaToken) == "" {
		return i18n.CodeCaptchaFailed
	}
	if err := s.cfg.Captcha.VerifyCaptcha(ctx, req.CaptchaToken); err != nil {
		if errors.Is(err, ErrCaptchaRejected) {
			return i18n.Wrap(i18n.CodeCaptchaFailed, err)
		}
		return i18n.Wrap(i18n.CodeInternal, err)
	}
	// A mailer known to be down refuses at once, and one busy with as many
	// code mails as it may hold lets the send wait for a slot, before any
	// budget is charged.
	release, err := s.mail.acquire(ctx)
	if err != nil {
		return i18n.Wrap(i18n.CodeSendFailed, err)
	}
	defer release()
	// The client's budget first: a machine that mails many addresses is
	// stopped whatever the addresses. A refused send costs no budget.
	taken, err := s.reserve(ctx, c, "",
		budget{BudgetSendsPerIP, sendsPerIPKey(c), s.cfg.Budgets.SendsPerIP, i18n.CodeSendLimited},
		budget{BudgetSendsPerEmail, sendsPerEmailKey(req.Type, canonical), s.cfg.Budgets.SendsPerEmail, i18n.CodeSendLimited},
	)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	code := newCode()
	key := store.CodeKey{Purpose: req.Type, Email: canonical}
	hash := s.codes.hash(req.Type, canonical, code)
	if err := s.cfg.Codes.Put(ctx, key, hash, now.Add(s.cfg.CodeTTL)); err != nil {
		// Nothing was mailed: the send costs no budget, so that an
		// outage or a full store does not lock honest users out.
		s.cancel(ctx, taken)
		return i18n.Wrap(i18n.CodeInternal, err)
	}
	msg := Message{Kind: MailCode, Purpose: req.Type, To: email, Code: code, ExpiresIn: s.cfg.CodeTTL, Language: c.language}
	if err := s.mail.send(ctx, msg); err != nil {
		// The mail may have left or not: either way the code must not
		// stay usable, since it may now sit in a log or a bounce. It is
		// withdrawn by spending it, which removes this code only: a
		// newer code that a concurrent send stored and mailed meanwhile
		// stays (charged one try, never more than maxTries in all).
		if werr := s.withdraw(ctx, key, hash); werr != nil && !errors.Is(werr, store.ErrCodeInvalid) {
			s.cfg.Logger.ErrorContext(ctx, "selfservice: the code of a failed send could not be withdrawn; it stays valid until it expires",
				"to", MaskEmail(email), "expires_in", s.cfg.CodeTTL, "error", redact(werr, []string{email, canonical}, code))
		}
		if errors.Is(err, errMailUnavailable) || errors.Is(err, ErrNotSent) {
			// Refused before the mailer saw it, or given up by the
			// mailer before it tried the server: nothing left, nothing
			// spent. A refused recipient stays charged: the server was
			// asked. Given back after the withdrawal, so that the send
			// it lets through finds this code gone.
			s.cancel(ctx, taken)
		}
		return i18n.Wrap(i18n.CodeSendFailed, errors.New(redact(err, []string{email, canonical}, code)))
	}
	s.tel.codeSent(ctx)
	s.event(ctx, c, EventCodeSent, "", email, "")
	return nil
}

// updateEmail runs UpdateEmail's checks after the caller's and the user's.
func (s *Service) updateEmail(ctx context.Context, c caller, id middleware.Identity, rawEmail, code string) error {
	if strings.TrimSpace(code) == "" {
		return i18n.CodeVerifyCodeEmpty
	}
	email, canonical, err := CanonicalEmail(rawEmail)
	if err != nil {
		return err
	}
	user, err := s.cfg.Users.User(ctx, id.Subject)
	if err != nil {
		return storeError(err, i18n.CodeUserNotFound)
	}
	if user.CanonicalEmail == canonical {
		// Already done, perhaps by this very request retried: succeed
		// without spending anyone's code.
		return nil
	}
	if !wellFormedCode(code) {
		return i18n.CodeVerifyCodeIncorrect
	}
	// The budgets are charged before the code is evaluated, so that
	// concurrent guesses cannot overdraw them: a right code gives the
	// wrong-code slots back, a wrong one the change's. A spent budget
	// refuses even the right code, and no code is evaluated or spent.
	key := store.CodeKey{Purpose: PurposeUpdateEmail, Email: canonical}
	kept, err := s.checkCode(ctx, c, user.ID, key, s.codes.candidates(key.Purpose, key.Email, code), []budget{
		{BudgetWrongCodesPerUser, wrongPerUserKey(user.ID), s.cfg.Budgets.WrongCodesPerUser, i18n.CodeWrongCodesLimited},
		{BudgetWrongCodesPerIP, wrongPerIPKey(c), s.cfg.Budgets.WrongCodesPerIP, i18n.CodeWrongCodesLimited},
		{BudgetChangesPerUser, changesPerUserKey(user.ID), s.cfg.Budgets.ChangesPerUser, i18n.CodeChangesLimited},
	}, []store.Outcome{store.OnMismatch, store.OnMismatch, store.OnMatch})
	if errors.Is(err, store.ErrCodeInvalid) {
		s.tel.codeRejected(ctx)
		s.event(ctx, c, EventCodeRejected, user.ID, email, "")
		return i18n.CodeVerifyCodeIncorrect
	}
	if err != nil {
		return err
	}
	change := kept[2:]
	if err := s.change(ctx, user, email, canonical); err != nil {
		if !errors.Is(err, i18n.CodeInternal) {
			s.cancel(ctx, change)
		}
		return err
	}
	s.tel.changed(ctx)
	s.event(ctx, c, EventEmailChanged, user.ID, email, user.Email)
	return nil
}

// change commits the change of user's address with its alarm: the store
// records the notice to the old address and the change's undo in the same
// atomic step, and the courier is told. The undo token is made whether or
// not the user has an old address, since only the store knows for sure.
// A store failure keeps the change's budget slot: the change may have been
// committed before the answer was lost.
func (s *Service) change(ctx context.Context, user store.User, email, canonical string) error {
	now := s.cfg.Now()
	token, key := newRevertToken(), s.keys[0]
	err := s.cfg.Users.ChangeEmail(ctx, store.EmailChange{
		UserID: user.ID, Email: email, Canonical: canonical, Now: now,
		Notice:          store.Notice{UserID: user.ID, NewEmail: MaskEmail(email), ChangedAt: now, Sealed: key.seal(token, user.ID)},
		RevertHash:      key.revertHash(token),
		RevertExpiresAt: now.Add(s.cfg.RevertTTL),
	})
	switch {
	case errors.Is(err, store.ErrEmailExists):
		return i18n.CodeEmailExists
	case errors.Is(err, store.ErrChangeLocked):
		return i18n.Wrap(i18n.CodeChangeLocked, err)
	case err != nil:
		return storeError(err, i18n.CodeUserNotFound)
	}
	s.courier.notify()
	return nil
}

// storeError maps a store failure: not-found to notFound, anything else to
// the internal-error code with the cause kept for the log.
func storeError(err error, notFound i18n.Code) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	return i18n.Wrap(i18n.CodeInternal, err)
}

// redact returns err's text with the given secrets hidden: addresses
// masked, in any case, and anything else (a code) starred. A mail server's
// or mail API's error often quotes what it was sent.
func redact(err error, addrs []string, secrets ...string) string {
	text := err.Error()
	for _, a := range addrs {
		if a != "" {
			text = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(a)).ReplaceAllLiteralString(text, MaskEmail(a))
		}
	}
	for _, sec := range secrets {
		if sec != "" {
			text = strings.ReplaceAll(text, sec, strings.Repeat("*", len(sec)))
		}
	}
	return text
}

// reauthChallenge is the RFC 9470 WWW-Authenticate value of
// IDAAS.SDK.PARAM.9204.
func (s *Service) reauthChallenge() string {
	return fmt.Sprintf(`Bearer error="insufficient_user_authentication", max_age=%d`, int64(s.cfg.MaxAuthAge/time.Second))
}
