// Package mail delivers the self-service API's mails over SMTP: an
// SMTPMailer is a selfservice.Mailer built on github.com/wneessen/go-mail,
// kept in this package so that the core never imports it.
//
// Every mail is multipart/alternative, plain text and HTML: the
// verification code for a new address, in the request's language, and the
// notice of a change sent to the old one (the owner's alarm), in the
// user's stored language or, without one (or with one the bundle lacks), in
// every language of the bundle,
// never in the language of the request that made the change. The sentences
// are go-i18n messages (i18n.MailMessages(), in the locales next to the
// error messages) and the layouts are templates embedded here; Render and
// SMTPMailer.Render build a mail without sending it.
//
// A notice carries the change's undo link when the application sets
// Options.RevertURL, its undo page: the token rides in the link's fragment
// (#revert_token=...), which no browser sends to a server. Production
// should set it; without it a notice only says to contact support.
//
// Quick start:
//
//	opts, err := mail.ParseURL("smtps://user:secret@smtp.example.com?from=no-reply@example.com&from_name=Example" +
//		"&revert_url=" + url.QueryEscape("https://app.example.com/account/undo-email"))
//	if err != nil { ... }
//	mailer, err := mail.New(opts)
//	if err != nil { ... }
//	svc, err := selfservice.New(selfservice.Config{
//		Mailer: mailer,
//		// the stores, verifier, captcha and code secret
//	})
//	if err != nil { ... }
//	svc.Mount(mux, "")
//	...
//	// At shutdown: the service first, which sends the last notices.
//	err = svc.Shutdown(ctx)
//	err = mailer.Close(ctx)
//
// The mailer keeps a few SMTP sessions open (Options.MaxConns, 4 by
// default), each connected, secured and logged in once, and sends each
// mail as one transaction on an idle one, which makes a code mail cost a
// few round trips rather than a session. It closes a session after
// IdleTimeout without a mail and after MaxMessagesPerConn mails, and
// replaces a session the server dropped: a mail that failed on it before
// the server accepted DATA is sent again once on a new session, never one
// the server may already hold.
//
// Addresses and names are checked before any connection: a control
// character in one is ErrHeaderInjection, so no value can add a header.
// Send gives up when its context ends, closing that session for good, so a
// slow server cannot hold a request (or the code) past the caller's
// deadline; its errors never quote the code or the undo token.
package mail
