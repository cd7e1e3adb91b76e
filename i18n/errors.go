package i18n

import (
	"time"

	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
)

// Error is an API failure: a stable code that clients branch on, the HTTP
// status it is answered with, and an optional cause kept for logs. The code is
// also the ID of the message that localises it. A cause never reaches the
// client: only the code and the localised message do.
type Error struct {
	Code       string
	Status     int
	cause      error
	retryAfter time.Duration
}

// Error returns the code and, when there is one, the cause, for logs.
func (e *Error) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.cause.Error()
	}
	return e.Code
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, i18n.ErrUserNotFound) holds for every wrapped copy.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// WithCause returns a copy of e that wraps cause. The original is left as it
// is, so the catalog values below stay safe to share.
func (e *Error) WithCause(cause error) *Error {
	return &Error{Code: e.Code, Status: e.Status, cause: cause, retryAfter: e.retryAfter}
}

// WithRetryAfter returns a copy of e that tells the client to wait d before
// trying again (a Retry-After header, for a 429).
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	return &Error{Code: e.Code, Status: e.Status, cause: e.cause, retryAfter: d}
}

// RetryAfter is how long the client should wait before trying again, or 0.
func (e *Error) RetryAfter() time.Duration { return e.retryAfter }

// The catalog: every code this package answers with. The first ten are the
// seed page's, verbatim; CAPTCHA.0006 is the API family's code for a failed
// send; the rest are this package's own and keep their codes across releases.
var (
	ErrDeviceIncomplete  = &Error{Code: "IDAAS.SDK.PARAM.0001", Status: 400}
	ErrClientIDEmpty     = &Error{Code: "IDAAS.SDK.PARAM.0002", Status: 400}
	ErrClientUnknown     = &Error{Code: "IDAAS.SDK.PARAM.0003", Status: 400}
	ErrTokenEmpty        = &Error{Code: "IDAAS.SDK.PARAM.0015", Status: 400}
	ErrTokenInvalid      = &Error{Code: "IDAAS.SDK.PARAM.0016", Status: 400}
	ErrCodeEmpty         = &Error{Code: "IDAAS.SDK.PARAM.0009", Status: 400}
	ErrCodeIncorrect     = &Error{Code: "IDAAS.SDK.CAPTCHA.0007", Status: 400}
	ErrEmailInvalid      = &Error{Code: "IDAAS.SDK.USER.0021", Status: 400}
	ErrEmailExists       = &Error{Code: "IDAAS.SDK.USER.0036", Status: 400}
	ErrUserNotFound      = &Error{Code: "IDAAS.SDK.USER.0001", Status: 400}
	ErrSendFailed        = &Error{Code: "IDAAS.SDK.CAPTCHA.0006", Status: 500}
	ErrInternal          = &Error{Code: "IDAAS.SDK.SYS.9001", Status: 500}
	ErrMethodNotAllowed  = &Error{Code: "IDAAS.SDK.REQ.9101", Status: 405}
	ErrContentType       = &Error{Code: "IDAAS.SDK.REQ.9102", Status: 415}
	ErrBodyTooLarge      = &Error{Code: "IDAAS.SDK.REQ.9103", Status: 413}
	ErrBodyMalformed     = &Error{Code: "IDAAS.SDK.REQ.9104", Status: 400}
	ErrSendRateLimited   = &Error{Code: "IDAAS.SDK.CAPTCHA.9201", Status: 429}
	ErrCaptchaFailed     = &Error{Code: "IDAAS.SDK.CAPTCHA.9202", Status: 400}
	ErrCodeTypeUnsupport = &Error{Code: "IDAAS.SDK.PARAM.9203", Status: 400}
	ErrReauthRequired    = &Error{Code: "IDAAS.SDK.PARAM.9204", Status: 401}
	ErrCodeBudgetSpent   = &Error{Code: "IDAAS.SDK.CAPTCHA.9205", Status: 429}
	ErrHeaderRepeated    = &Error{Code: "IDAAS.SDK.REQ.9105", Status: 400}
)

// Catalog lists every error above, in the order of the README's table.
var Catalog = []*Error{
	ErrDeviceIncomplete, ErrClientIDEmpty, ErrClientUnknown, ErrTokenEmpty,
	ErrTokenInvalid, ErrCodeEmpty, ErrCodeIncorrect, ErrEmailInvalid,
	ErrEmailExists, ErrUserNotFound, ErrSendFailed, ErrInternal,
	ErrMethodNotAllowed, ErrContentType, ErrBodyTooLarge, ErrBodyMalformed,
	ErrSendRateLimited, ErrCaptchaFailed, ErrCodeTypeUnsupport, ErrReauthRequired,
	ErrCodeBudgetSpent, ErrHeaderRepeated,
}

// Messages are the English source texts of the catalog, written as go-i18n
// literals so that `goi18n extract` finds them; locales/active.en.json is
// their extracted form and a test keeps the two equal.
var Messages = []*goi18n.Message{
	{ID: "IDAAS.SDK.PARAM.0001", Description: "a required device header is missing or malformed", Other: "Device information is incomplete"},
	{ID: "IDAAS.SDK.PARAM.0002", Description: "X-client-id is missing or empty", Other: "clientId cannot be empty"},
	{ID: "IDAAS.SDK.PARAM.0003", Description: "X-client-id names no registered application", Other: "The app is not registered, please register the app first"},
	{ID: "IDAAS.SDK.PARAM.0015", Description: "no bearer id_token in Authorization", Other: "IdToken cannot be empty"},
	{ID: "IDAAS.SDK.PARAM.0016", Description: "the id_token failed any check", Other: "IdToken is invalid or expired"},
	{ID: "IDAAS.SDK.PARAM.0009", Description: "verify_code is missing or empty", Other: "Verification code cannot be empty"},
	{ID: "IDAAS.SDK.CAPTCHA.0007", Description: "verify_code is wrong, expired, used or dead", Other: "Incorrect verification code"},
	{ID: "IDAAS.SDK.USER.0021", Description: "email breaks the address rules", Other: "The e-mail does not meet the verification rules"},
	{ID: "IDAAS.SDK.USER.0036", Description: "another user holds the address", Other: "E-mail already exists"},
	{ID: "IDAAS.SDK.USER.0001", Description: "the token's subject is no user", Other: "User not found"},
	{ID: "IDAAS.SDK.CAPTCHA.0006", Description: "the mailer failed to send a code", Other: "Failed to send the verification code, please try again later"},
	{ID: "IDAAS.SDK.SYS.9001", Description: "a store or another dependency failed", Other: "System busy, please try again later"},
	{ID: "IDAAS.SDK.REQ.9101", Description: "the method is not POST", Other: "Method not allowed, use POST"},
	{ID: "IDAAS.SDK.REQ.9102", Description: "Content-Type is not application/json", Other: "Content-Type must be application/json"},
	{ID: "IDAAS.SDK.REQ.9103", Description: "the body exceeds the size limit", Other: "Request body is too large"},
	{ID: "IDAAS.SDK.REQ.9104", Description: "the body is not exactly one JSON object of the expected fields", Other: "Request body is not a valid JSON object"},
	{ID: "IDAAS.SDK.CAPTCHA.9201", Description: "a send limit for this address is reached", Other: "Verification codes are requested too often, please try again later"},
	{ID: "IDAAS.SDK.CAPTCHA.9202", Description: "the captcha token was missing or refused", Other: "Human verification failed"},
	{ID: "IDAAS.SDK.PARAM.9203", Description: "the send type is not one this endpoint serves", Other: "Unsupported verification code type"},
	{ID: "IDAAS.SDK.PARAM.9204", Description: "the sign-in (auth_time) is older than the change allows", Other: "Please sign in again to change your email"},
	{ID: "IDAAS.SDK.CAPTCHA.9205", Description: "a budget of wrong verification codes (per user or per client address) is spent", Other: "Too many incorrect verification codes, please try again later"},
	{ID: "IDAAS.SDK.REQ.9105", Description: "X-client-id, Authorization or X-L appears more than once", Other: "A request header that may appear only once is repeated"},
}
