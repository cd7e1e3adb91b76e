package i18n

import (
	"errors"
	"net/http"
	"time"

	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
)

// Code is the stable error_code of an API failure; clients branch on it,
// and it is also the ID of the message that localises it. A Code is an
// error itself, so the catalog's codes serve as sentinels:
//
//	if errors.Is(err, i18n.CodeEmailExists) { ... }
type Code string

// Error returns the code.
func (c Code) Error() string { return string(c) }

// Status returns the HTTP status the package answers the code with: the
// catalog's, or 500 for a code outside it.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// The catalog: every code this package answers with. The first ten are the
// seed page's, verbatim; CodeSendFailed is the API family's code for a failed
// send; the rest are this package's own and keep their codes across
// releases. The README's error table lists each with its status and texts.
const (
	CodeDeviceIncomplete    Code = "IDAAS.SDK.PARAM.0001"
	CodeClientIDEmpty       Code = "IDAAS.SDK.PARAM.0002"
	CodeClientUnknown       Code = "IDAAS.SDK.PARAM.0003"
	CodeTokenEmpty          Code = "IDAAS.SDK.PARAM.0015"
	CodeTokenInvalid        Code = "IDAAS.SDK.PARAM.0016"
	CodeVerifyCodeEmpty     Code = "IDAAS.SDK.PARAM.0009"
	CodeVerifyCodeIncorrect Code = "IDAAS.SDK.CAPTCHA.0007"
	CodeEmailInvalid        Code = "IDAAS.SDK.USER.0021"
	CodeEmailExists         Code = "IDAAS.SDK.USER.0036"
	CodeUserNotFound        Code = "IDAAS.SDK.USER.0001"
	CodeSendFailed          Code = "IDAAS.SDK.CAPTCHA.0006"
	CodeInternal            Code = "IDAAS.SDK.SYS.9001"
	CodeMethodNotAllowed    Code = "IDAAS.SDK.REQ.9101"
	CodeContentType         Code = "IDAAS.SDK.REQ.9102"
	CodeBodyTooLarge        Code = "IDAAS.SDK.REQ.9103"
	CodeBodyMalformed       Code = "IDAAS.SDK.REQ.9104"
	CodeHeaderRepeated      Code = "IDAAS.SDK.REQ.9105"
	CodeSendLimited         Code = "IDAAS.SDK.CAPTCHA.9201"
	CodeCaptchaFailed       Code = "IDAAS.SDK.CAPTCHA.9202"
	CodeTypeUnsupported     Code = "IDAAS.SDK.PARAM.9203"
	CodeReauthRequired      Code = "IDAAS.SDK.PARAM.9204"
	CodeWrongCodesLimited   Code = "IDAAS.SDK.CAPTCHA.9205"
	CodeChangesLimited      Code = "IDAAS.SDK.USER.9206"
	// For applications that sign their users in themselves (no id_token):
	// neutral words, and 403 rather than a 401 without a Bearer challenge.
	CodeNotSignedIn Code = "IDAAS.SDK.USER.9207"
	CodeSignInAgain Code = "IDAAS.SDK.USER.9208"

	// The undo of a change (revert-email) has a range of its own, 93xx.
	CodeRevertTokenEmpty   Code = "IDAAS.SDK.REVERT.9301"
	CodeRevertTokenInvalid Code = "IDAAS.SDK.REVERT.9302"
	CodeRevertEmailTaken   Code = "IDAAS.SDK.REVERT.9303"
	CodeRevertLimited      Code = "IDAAS.SDK.REVERT.9304"
	CodeChangeLocked       Code = "IDAAS.SDK.REVERT.9305"
)

// statuses are the HTTP statuses of the catalog's codes.
var statuses = map[Code]int{
	CodeDeviceIncomplete:    http.StatusBadRequest,
	CodeClientIDEmpty:       http.StatusBadRequest,
	CodeClientUnknown:       http.StatusBadRequest,
	CodeTokenEmpty:          http.StatusBadRequest,
	CodeTokenInvalid:        http.StatusBadRequest,
	CodeVerifyCodeEmpty:     http.StatusBadRequest,
	CodeVerifyCodeIncorrect: http.StatusBadRequest,
	CodeEmailInvalid:        http.StatusBadRequest,
	CodeEmailExists:         http.StatusBadRequest,
	CodeUserNotFound:        http.StatusBadRequest,
	CodeSendFailed:          http.StatusInternalServerError,
	CodeInternal:            http.StatusInternalServerError,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeContentType:         http.StatusUnsupportedMediaType,
	CodeBodyTooLarge:        http.StatusRequestEntityTooLarge,
	CodeBodyMalformed:       http.StatusBadRequest,
	CodeHeaderRepeated:      http.StatusBadRequest,
	CodeSendLimited:         http.StatusTooManyRequests,
	CodeCaptchaFailed:       http.StatusBadRequest,
	CodeTypeUnsupported:     http.StatusBadRequest,
	CodeReauthRequired:      http.StatusUnauthorized,
	CodeWrongCodesLimited:   http.StatusTooManyRequests,
	CodeChangesLimited:      http.StatusTooManyRequests,
	CodeNotSignedIn:         http.StatusForbidden,
	CodeSignInAgain:         http.StatusForbidden,
	CodeRevertTokenEmpty:    http.StatusBadRequest,
	CodeRevertTokenInvalid:  http.StatusBadRequest,
	CodeRevertEmailTaken:    http.StatusConflict,
	CodeRevertLimited:       http.StatusTooManyRequests,
	CodeChangeLocked:        http.StatusForbidden,
}

// Codes returns the catalog, in the order of the README's table.
func Codes() []Code {
	return []Code{
		CodeDeviceIncomplete, CodeClientIDEmpty, CodeClientUnknown, CodeTokenEmpty,
		CodeTokenInvalid, CodeVerifyCodeEmpty, CodeVerifyCodeIncorrect, CodeEmailInvalid,
		CodeEmailExists, CodeUserNotFound, CodeSendFailed, CodeInternal,
		CodeMethodNotAllowed, CodeContentType, CodeBodyTooLarge, CodeBodyMalformed,
		CodeHeaderRepeated, CodeSendLimited, CodeCaptchaFailed, CodeTypeUnsupported,
		CodeReauthRequired, CodeWrongCodesLimited, CodeChangesLimited, CodeNotSignedIn, CodeSignInAgain,
		CodeRevertTokenEmpty, CodeRevertTokenInvalid, CodeRevertEmailTaken, CodeRevertLimited, CodeChangeLocked,
	}
}

// Error is an API failure with what a client must not see: the cause, for
// logs, and how long to wait before trying again. Every failure the package
// returns (from its handlers' Go-level operations, its middlewares and its
// Verifier) is a Code or an *Error; ErrorOf reads either.
type Error struct {
	// Code is what the client is answered with.
	Code Code
	// RetryAfter, when positive, is how long the client should wait before
	// trying again (the Retry-After header of a 429).
	RetryAfter time.Duration
	// Err is the cause, for logs; it never reaches the client.
	Err error
}

// Error returns the code and, when there is one, the cause, for logs.
func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Err.Error()
	}
	return string(e.Code)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Code (or an *Error with that code), so
// that errors.Is(err, i18n.CodeEmailExists) holds for every wrapped copy.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Code:
		return t == e.Code
	case *Error:
		return t != nil && t.Code == e.Code
	}
	return false
}

// Wrap returns an *Error answered with code that keeps cause for logs.
func Wrap(code Code, cause error) *Error { return &Error{Code: code, Err: cause} }

// ErrorOf returns what err is answered with: the first *Error or Code in its
// chain, or, for any other error, CodeInternal with err as the cause (a Go
// error string never reaches a client). ErrorOf(nil) is nil.
func ErrorOf(err error) *Error {
	if err == nil {
		return nil
	}
	var x apiError
	if !errors.As(err, &x) {
		return &Error{Code: CodeInternal, Err: err}
	}
	e := x.apiError()
	if e.Err == nil && error(x) != err {
		// A Code wrapped in text of the caller's: keep that for logs.
		e = &Error{Code: e.Code, RetryAfter: e.RetryAfter, Err: err}
	}
	return e
}

// apiError is what Code and *Error share, so that one errors.As finds
// whichever comes first in a chain.
type apiError interface {
	error
	apiError() *Error
}

func (c Code) apiError() *Error   { return &Error{Code: c} }
func (e *Error) apiError() *Error { return e }

// Messages returns the English source texts of the catalog, written as
// go-i18n literals so that `goi18n extract` finds them; locales/active.en.json
// is their extracted form and a test keeps the two equal.
func Messages() []*goi18n.Message {
	return []*goi18n.Message{
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
		{ID: "IDAAS.SDK.REQ.9105", Description: "X-client-id, Authorization or X-L appears more than once", Other: "A request header that may appear only once is repeated"},
		{ID: "IDAAS.SDK.CAPTCHA.9201", Description: "a send limit (per address or per client IP) is reached", Other: "Verification codes are requested too often, please try again later"},
		{ID: "IDAAS.SDK.CAPTCHA.9202", Description: "the captcha token was missing or refused", Other: "Human verification failed"},
		{ID: "IDAAS.SDK.PARAM.9203", Description: "the send type is not one this endpoint serves", Other: "Unsupported verification code type"},
		{ID: "IDAAS.SDK.PARAM.9204", Description: "the sign-in (auth_time) is older than the change allows", Other: "Please sign in again to change your email"},
		{ID: "IDAAS.SDK.CAPTCHA.9205", Description: "a budget of wrong verification codes (per user or per client IP) is spent", Other: "Too many incorrect verification codes, please try again later"},
		{ID: "IDAAS.SDK.USER.9206", Description: "the budget of email changes per user is spent", Other: "Too many email changes, please try again later"},
		{ID: "IDAAS.SDK.USER.9207", Description: "no signed-in user (an application that signs users in itself)", Other: "Please sign in first"},
		{ID: "IDAAS.SDK.USER.9208", Description: "the sign-in is older than the change allows (an application that signs users in itself)", Other: "Please sign in again to change your email"},
		{ID: "IDAAS.SDK.REVERT.9301", Description: "revert_token is missing or empty", Other: "revert_token cannot be empty"},
		{ID: "IDAAS.SDK.REVERT.9302", Description: "the undo token is unknown, expired, used or voided by an earlier undo", Other: "The undo link is invalid, expired or already used"},
		{ID: "IDAAS.SDK.REVERT.9303", Description: "another account holds the address the undo would restore", Other: "The previous email address now belongs to another account, please contact support"},
		{ID: "IDAAS.SDK.REVERT.9304", Description: "the budget of undo attempts per client IP is spent", Other: "Too many undo attempts, please try again later"},
		{ID: "IDAAS.SDK.REVERT.9305", Description: "an undo paused the user's email changes for a cool-off", Other: "Email changes are paused after an undo, please try again later"},
	}
}
