package mail

import (
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
)

// TimeLayout is how the time of a change is written in a notice: with its
// offset, because the reader's time zone is unknown.
const TimeLayout = "2006-01-02 15:04 (UTC-07:00)"

// sentinel is the type of the package's sentinel errors: constants, so
// that no importer can reassign them.
type sentinel string

func (s sentinel) Error() string { return string(s) }

// Errors of Render and Send.
const (
	// ErrUnknownKind reports a Message whose Kind is no mail this package
	// renders.
	ErrUnknownKind sentinel = "mail: unknown message kind"
	// ErrIncompleteMessage reports a Message that lacks what its mail
	// shows: a code mail without Code or ExpiresIn, a notice without
	// NewEmail or ChangedAt.
	ErrIncompleteMessage sentinel = "mail: incomplete message"
	// ErrHeaderInjection reports an address or a name holding a control
	// character (CR, LF, NUL...) or a line separator: it could add a
	// header to the mail, so it is refused before any connection is made.
	ErrHeaderInjection sentinel = "mail: control character in an address or name"
	// ErrInvalidAddress reports an address that is not a bare, valid
	// local@domain address.
	ErrInvalidAddress sentinel = "mail: not a valid address"
)

// Content is one rendered mail: its subject and its two bodies, the same
// text as plain text and as HTML.
type Content struct {
	Subject string
	Text    string
	HTML    string
	// ContentLanguage is the mail's Content-Language header: the language
	// of its text, or every language of a notice in every language, the
	// bundle's default first ("en, zh").
	ContentLanguage string
}

//go:embed templates
var templateFS embed.FS

// kind is the mail of one Message.Kind: its subject's message id and its
// two layouts.
type kind struct {
	subject string
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// kinds are parsed once; the templates are embedded and tested, so a parse
// failure is a broken build.
var kinds = map[selfservice.MailKind]kind{
	selfservice.MailCode:         newKind("MAIL.CODE.SUBJECT", "code"),
	selfservice.MailEmailChanged: newKind("MAIL.CHANGED.SUBJECT", "changed"),
}

func newKind(subject, name string) kind {
	return kind{
		subject: subject,
		text: texttemplate.Must(texttemplate.New("layout.txt.tmpl").ParseFS(templateFS,
			"templates/layout.txt.tmpl", "templates/"+name+".txt.tmpl")),
		html: htmltemplate.Must(htmltemplate.New("layout.html.tmpl").ParseFS(templateFS,
			"templates/layout.html.tmpl", "templates/"+name+".html.tmpl")),
	}
}

// page is what a layout sees: the mail's subject and its text in one
// language, or in several (a notice in every language), one section each.
type page struct {
	Lang     string // <html lang>: the one language, "" for several
	Subject  string
	Sections []*view
}

// view is what a section of a layout and the messages see. Its exported
// fields but UndoURL are the data of the messages (see
// i18n.MailMessages()).
type view struct {
	loc *i18n.Locale

	Lang string // the locale's BCP 47 tag, for <div lang>

	Code    string
	Minutes int

	NewEmail string
	Time     string

	// UndoURL is the undo link of a notice, or "". Only the layouts show
	// it: a message that held the link could drop or break it.
	UndoURL string
}

// T returns message id in the mail's language, executed with the view as
// its data.
func (v *view) T(id string) (string, error) {
	s, err := v.loc.Localizer().Localize(&goi18n.LocalizeConfig{MessageID: id, TemplateData: v})
	if err != nil {
		return "", fmt.Errorf("mail: message %s in %s: %w", id, v.loc.Tag(), err)
	}
	return s, nil
}

// Render returns the mail for msg in msg.Language (or the bundle's closest
// language, else its default): the subject and the plain-text and HTML
// bodies. The texts come from the bundle (see i18n.MailMessages()) and the
// layouts from this package; the HTML escapes every value. A nil bundle
// means i18n.Default().
//
// A code mail (Kind selfservice.MailCode) needs Code and a positive
// ExpiresIn, shown in whole minutes rounded up; a notice (Kind
// selfservice.MailEmailChanged) needs NewEmail, shown as given (the handler
// masks it), and ChangedAt, shown in its own location with TimeLayout. Any
// other Kind is ErrUnknownKind. Errors never quote the code, the undo token
// or an address.
//
// A notice whose Language is language.Und is written in every language of
// the bundle, the default first: one section per language in each body
// (a <div lang> in the HTML, a line between them in the text), the
// subjects joined with " / ". Its reader's language is unknown, and the
// language of the request that made the change is the changer's choice,
// who may not be the owner. A code mail without a language is in the
// default language.
//
// Render knows no undo page, so its notices carry no undo link, even with
// a RevertToken (they say to contact support, as every notice does);
// SMTPMailer.Render adds the link to Options.RevertURL.
func Render(bundle *i18n.Bundle, msg selfservice.Message) (Content, error) {
	return render(bundle, msg, "")
}

// render is Render with the undo page revertURL, checked by New, or "".
func render(bundle *i18n.Bundle, msg selfservice.Message, revertURL string) (Content, error) {
	k, ok := kinds[msg.Kind]
	if !ok {
		return Content{}, ErrUnknownKind
	}
	if bundle == nil {
		bundle = i18n.Default()
	}
	var data view
	locs := []*i18n.Locale{bundle.Match(msg.Language.String(), "")}
	switch msg.Kind {
	case selfservice.MailCode:
		if msg.Code == "" || msg.ExpiresIn <= 0 {
			return Content{}, fmt.Errorf("%w: a code mail needs Code and ExpiresIn", ErrIncompleteMessage)
		}
		data.Code = msg.Code
		data.Minutes = int((msg.ExpiresIn + time.Minute - 1) / time.Minute)
	case selfservice.MailEmailChanged:
		if msg.NewEmail == "" || msg.ChangedAt.IsZero() {
			return Content{}, fmt.Errorf("%w: a notice needs NewEmail and ChangedAt", ErrIncompleteMessage)
		}
		data.NewEmail = msg.NewEmail
		data.Time = msg.ChangedAt.Format(TimeLayout)
		if msg.RevertToken != "" && revertURL != "" {
			data.UndoURL = revertURL + "#revert_token=" + url.QueryEscape(msg.RevertToken)
		}
		// No stored language, or one the bundle lacks: every language,
		// rather than one the owner may not read.
		if _, ok := bundle.Lookup(msg.Language.String()); msg.Language == language.Und || !ok {
			locs = bundle.Locales()
		}
	}

	p := page{Sections: make([]*view, len(locs))}
	subjects := make([]string, len(locs))
	langs := make([]string, len(locs))
	for i, loc := range locs {
		v := data
		v.loc, v.Lang = loc, loc.Tag().String()
		subject, err := v.T(k.subject)
		if err != nil {
			return Content{}, err
		}
		// A subject is one line, whatever a translation holds.
		subjects[i] = strings.Join(strings.Fields(subject), " ")
		langs[i] = v.Lang
		p.Sections[i] = &v
	}
	p.Subject = strings.Join(subjects, " / ")
	if len(locs) == 1 {
		p.Lang = langs[0]
	}
	var text, html strings.Builder
	if err := k.text.Execute(&text, p); err != nil {
		return Content{}, fmt.Errorf("mail: %s text body: %w", msg.Kind, err)
	}
	if err := k.html.Execute(&html, p); err != nil {
		return Content{}, fmt.Errorf("mail: %s HTML body: %w", msg.Kind, err)
	}
	return Content{Subject: p.Subject, Text: text.String(), HTML: html.String(), ContentLanguage: strings.Join(langs, ", ")}, nil
}
