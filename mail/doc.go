// Package mail delivers the self-service API's mails over SMTP: an
// SMTPMailer is a selfservice.Mailer built on github.com/wneessen/go-mail,
// kept in this package so that the core never imports it.
//
// Every mail is multipart/alternative, plain text and HTML, in the
// request's language: the verification code for a new address and the
// notice of a change sent to the old one. The sentences are go-i18n
// messages (i18n.MailMessages(), in the locales next to the error messages)
// and the layouts are templates embedded here; Render builds a mail without
// sending it.
//
// Quick start:
//
//	opts, err := mail.ParseURL("smtps://user:secret@smtp.example.com?from=no-reply@example.com&from_name=Example")
//	if err != nil { ... }
//	mailer, err := mail.New(opts)
//	if err != nil { ... }
//	_, err = selfservice.Mount(mux, selfservice.Config{
//		Mailer: mailer,
//		// the stores, verifier, captcha and code secret
//	})
//
// Addresses and names are checked before any connection: a control
// character in one is ErrHeaderInjection, so no value can add a header.
// Send gives up when its context ends, closing the connection, so a slow
// server cannot hold a request (or the code) past the caller's deadline.
package mail
