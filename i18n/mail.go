package i18n

import (
	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
)

// MailMessages returns the English source texts of the mails the package
// mail sends, written as go-i18n literals like Messages. They are
// templates: their data is named in each Description. NewBundle adds them as
// English defaults and refuses a language whose own file lacks any of them,
// so a mail is never sent half in English.
func MailMessages() []*goi18n.Message {
	return []*goi18n.Message{
		{ID: "MAIL.CODE.SUBJECT", Description: "subject of the mail carrying a verification code for a new address", Other: "Confirm your new email address"},
		{ID: "MAIL.CODE.INTRO", Description: "line before the code; the code itself follows on its own line", Other: "Enter this verification code to confirm your new email address:"},
		{ID: "MAIL.CODE.EXPIRY", Description: "validity of the code; {{.Minutes}} is a whole number of minutes, at least 1", Other: "The code expires in {{.Minutes}} min."},
		{ID: "MAIL.CODE.WARNING", Description: "warning against handing the code to anyone", Other: "Never share this code with anyone. We will never ask you for it."},
		{ID: "MAIL.CODE.IGNORE", Description: "what to do with an unexpected code mail", Other: "If you did not ask to change your email address, ignore this email: nothing will change."},
		{ID: "MAIL.CHANGED.SUBJECT", Description: "subject of the notice sent to the old address after an email change", Other: "The email address of your account was changed"},
		{ID: "MAIL.CHANGED.BODY", Description: "what happened; {{.NewEmail}} is the new address already masked (n***@example.com), {{.Time}} the time of the change with its UTC offset", Other: "The email address of your account was changed to {{.NewEmail}} at {{.Time}}."},
		{ID: "MAIL.CHANGED.UNDO", Description: "offer to undo the change; the undo link follows this text on a line of its own (only when the application set mail.Options.RevertURL and the change has an undo), so the text must not hold a link itself", Other: "If this was not you, undo the change now: this link restores your previous address (it works once, and only for a limited time)."},
		{ID: "MAIL.CHANGED.NOT_YOU", Description: "what to do when the change was not the reader's", Other: "If this was not you, contact support immediately: someone else may control your account."},
		{ID: "MAIL.FOOTER", Description: "last line of every mail", Other: "This is an automated message, please do not reply."},
	}
}
