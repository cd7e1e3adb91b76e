// Package i18n holds the error catalog of the self-service API and the
// language support around it: a go-i18n bundle loaded from the embedded
// locales, request-language matching with golang.org/x/text/language, and
// error bodies rendered once per language at start-up.
//
// Quick start:
//
//	b := i18n.Default()                       // English and Chinese, English by default
//	loc := b.Match(r.Header.Get("X-L"), r.Header.Get("Accept-Language"))
//	w.Write(loc.ErrorBody(i18n.CodeUserNotFound)) // {"error_code":"IDAAS.SDK.USER.0001","error_msg":"..."}
package i18n

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice/internal/configerr"
	"github.com/ciamkit/selfservice/locales"
)

// maxTagLen bounds the X-L value that reaches the parser: real tags are short
// and a long one only costs parsing time.
const maxTagLen = 64

// Bundle is a loaded set of languages. It is immutable after NewBundle and
// safe for concurrent use.
type Bundle struct {
	bundle  *goi18n.Bundle
	locales []*Locale // locales[0] is the default
	matcher language.Matcher
	exact   map[string]*Locale // X-L values answered without parsing
}

// Locale is one supported language with everything a request needs from it,
// prepared once: its localizer and its rendered error bodies. It is
// immutable and shared by every request in its language.
type Locale struct {
	tag       language.Tag
	localizer *goi18n.Localizer
	header    []string        // Content-Language value, shared read-only
	bodies    map[Code][]byte // error code -> JSON body
}

// Tag returns the language.
func (l *Locale) Tag() language.Tag { return l.tag }

// Localizer returns the go-i18n localizer of the language, for the
// integrator's own messages in the same bundle.
func (l *Locale) Localizer() *goi18n.Localizer { return l.localizer }

// Options configures NewBundle.
type Options struct {
	// Files holds go-i18n message files named active.<tag>.json.
	// Default: the embedded locales (English and Chinese).
	Files fs.FS
	// Default is the language used when neither X-L nor Accept-Language
	// matches a supported one. It must be one of the loaded languages.
	// Default: English.
	Default language.Tag
}

// NewBundle loads the message files and prepares every locale. It fails,
// with an error wrapping selfservice.ErrConfig, if a file does not parse, if
// the default language is not loaded, or if any catalog code or mail message
// (MailMessages) lacks a message in any loaded language.
func NewBundle(opts Options) (*Bundle, error) {
	files := opts.Files
	if files == nil {
		files = locales.FS()
	}
	def := opts.Default
	if def == language.Und {
		def = language.English
	}
	gb := goi18n.NewBundle(def)
	for _, msgs := range [][]*goi18n.Message{Messages(), MailMessages()} {
		if err := gb.AddMessages(language.English, msgs...); err != nil {
			return nil, fmt.Errorf("%w: %w", configerr.Err, err)
		}
	}
	names, err := fs.Glob(files, "active.*.json")
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("%w: no active.*.json message files", configerr.Err)
	}
	for _, name := range names {
		if _, err := gb.LoadMessageFileFS(files, name); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", configerr.Err, name, err)
		}
	}

	b := &Bundle{bundle: gb, exact: make(map[string]*Locale)}
	tags := gb.LanguageTags()
	// The default goes first: the matcher falls back to its first tag.
	ordered := []language.Tag{def}
	for _, t := range tags {
		if t != def {
			ordered = append(ordered, t)
		}
	}
	if !containsTag(tags, def) {
		return nil, fmt.Errorf("%w: default language %s has no message file", configerr.Err, def)
	}
	for _, t := range ordered {
		loc, err := newLocale(gb, t)
		if err != nil {
			return nil, err
		}
		b.locales = append(b.locales, loc)
		base, _ := t.Base()
		for _, k := range []string{t.String(), base.String()} {
			b.exact[k] = loc
			b.exact[strings.ToLower(k)] = loc
		}
	}
	b.matcher = language.NewMatcher(ordered)
	return b, nil
}

func containsTag(tags []language.Tag, t language.Tag) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

func newLocale(gb *goi18n.Bundle, tag language.Tag) (*Locale, error) {
	codes := Codes()
	loc := &Locale{
		tag:       tag,
		localizer: goi18n.NewLocalizer(gb, tag.String()),
		header:    []string{tag.String()},
		bodies:    make(map[Code][]byte, len(codes)),
	}
	for _, c := range codes {
		// Only this language's own file counts: falling back to English
		// would hide a missing translation.
		msg, got, err := loc.localizer.LocalizeWithTag(&goi18n.LocalizeConfig{MessageID: string(c)})
		if err != nil || got != tag {
			return nil, fmt.Errorf("%w: no %s message for %s", configerr.Err, tag, c)
		}
		loc.bodies[c] = renderBody(c, msg)
	}
	for _, m := range MailMessages() {
		// Rendered without data: this checks that the language has its
		// own text and that the text parses as a template.
		_, got, err := loc.localizer.LocalizeWithTag(&goi18n.LocalizeConfig{MessageID: m.ID})
		if got != tag {
			return nil, fmt.Errorf("%w: no %s message for %s", configerr.Err, tag, m.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s message for %s: %w", configerr.Err, tag, m.ID, err)
		}
	}
	return loc, nil
}

func renderBody(code Code, msg string) []byte {
	body, err := json.Marshal(struct {
		Code Code   `json:"error_code"`
		Msg  string `json:"error_msg"`
	}{code, msg})
	if err != nil {
		// Two strings always marshal.
		panic(err)
	}
	return append(body, '\n')
}

// Message returns the message of code in this language, or "" when there
// is none. The bundle's other messages (the mails', the integrator's own)
// are the Localizer's.
func (l *Locale) Message(code Code) string {
	s, err := l.localizer.Localize(&goi18n.LocalizeConfig{MessageID: string(code)})
	if err != nil {
		return ""
	}
	return s
}

// ErrorBody returns the JSON body {"error_code","error_msg"} for code in
// this language. The catalog's codes are answered from bodies rendered at
// start-up; an integrator's own code is localised on the fly from the
// bundle and falls back to the code itself as the message. The returned
// slice must not be modified.
func (l *Locale) ErrorBody(code Code) []byte {
	if b, ok := l.bodies[code]; ok {
		return b
	}
	msg := l.Message(code)
	if msg == "" {
		msg = string(code)
	}
	return renderBody(code, msg)
}

// ContentLanguage returns the Content-Language header value for this locale
// as a one-element slice that callers may assign to a header map but must not
// modify.
func (l *Locale) ContentLanguage() []string { return l.header }

// Locales returns the supported languages, the default first, in a slice of
// the caller's own: reordering it changes nothing in the bundle.
func (b *Bundle) Locales() []*Locale { return slices.Clone(b.locales) }

// DefaultLocale returns the locale used when nothing matches.
func (b *Bundle) DefaultLocale() *Locale { return b.locales[0] }

// Match picks the locale for a request from its X-L header, then its
// Accept-Language header, then the default. X-L takes a BCP 47 tag and is
// forgiving about the underscore form (zh_CN); regional and script forms
// (zh-CN, zh-Hans, en-US) match their language. acceptLanguage is the
// header's lines joined with commas; a range that cannot be read is
// skipped, not the header, and only its first kilobyte (at most 32 ranges)
// is read.
func (b *Bundle) Match(xl, acceptLanguage string) *Locale {
	if xl != "" {
		if loc, ok := b.exact[xl]; ok {
			return loc
		}
		if loc := b.matchTag(xl); loc != nil {
			return loc
		}
	}
	if tags := parseAcceptLanguage(acceptLanguage); len(tags) > 0 {
		if _, i, c := b.matcher.Match(tags...); c != language.No {
			return b.locales[i]
		}
	}
	return b.locales[0]
}

// Bounds on what of an Accept-Language header is read: browsers send a
// handful of ranges in well under a kilobyte; the rest is dropped, not the
// header.
const (
	maxAcceptLanguageLen    = 1024
	maxAcceptLanguageRanges = 32
)

// parseAcceptLanguage returns the language ranges of an Accept-Language
// value (several header lines joined with commas, as RFC 9110 reads them),
// most preferred first, without those of weight 0. It forgives what a
// strict parse would refuse the whole header for: a range it cannot read
// is skipped, and past maxAcceptLanguageLen bytes or
// maxAcceptLanguageRanges ranges the rest is ignored.
func parseAcceptLanguage(s string) []language.Tag {
	if len(s) > maxAcceptLanguageLen {
		s = s[:maxAcceptLanguageLen]
		if i := strings.LastIndexByte(s, ','); i >= 0 {
			s = s[:i]
		}
	}
	type weighted struct {
		tag language.Tag
		q   float32
	}
	var ranges []weighted
	for part := range strings.SplitSeq(s, ",") {
		if len(ranges) == maxAcceptLanguageRanges {
			break
		}
		if strings.TrimSpace(part) == "" {
			continue
		}
		tags, qs, err := language.ParseAcceptLanguage(part)
		if err != nil || len(tags) != 1 || qs[0] <= 0 {
			continue
		}
		ranges = append(ranges, weighted{tags[0], qs[0]})
	}
	slices.SortStableFunc(ranges, func(a, b weighted) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	tags := make([]language.Tag, len(ranges))
	for i, r := range ranges {
		tags[i] = r.tag
	}
	return tags
}

// Lookup returns the locale of tag, read as Match reads X-L, and whether
// the bundle has its language: unlike Match, it never falls back to the
// default. A mail in a user's stored language uses it to tell a language
// the bundle lacks from one it has.
func (b *Bundle) Lookup(tag string) (*Locale, bool) {
	if loc, ok := b.exact[tag]; ok {
		return loc, true
	}
	if loc := b.matchTag(tag); loc != nil {
		return loc, true
	}
	return nil, false
}

func (b *Bundle) matchTag(s string) *Locale {
	if len(s) > maxTagLen {
		return nil
	}
	t, err := language.Parse(strings.ReplaceAll(strings.TrimSpace(s), "_", "-"))
	if err != nil {
		return nil
	}
	if _, i, c := b.matcher.Match(t); c != language.No {
		return b.locales[i]
	}
	return nil
}

var (
	defaultOnce   sync.Once
	defaultBundle *Bundle
)

// Default returns the bundle of the embedded locales with English as the
// default language, loaded on first use.
func Default() *Bundle {
	defaultOnce.Do(func() {
		b, err := NewBundle(Options{})
		if err != nil {
			// The embedded files are tested; failing here means a broken build.
			panic(err)
		}
		defaultBundle = b
	})
	return defaultBundle
}
