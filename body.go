package selfservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/ciamkit/selfservice/i18n"
)

// Why a body is refused, wrapped in the catalog error decodeFields returns.
var (
	errNotObject      = errors.New("selfservice: body is not exactly one JSON object")
	errUnknownField   = errors.New("selfservice: body has an unknown field")
	errDuplicateField = errors.New("selfservice: body repeats a field")
	errFieldType      = errors.New("selfservice: body field is not a string")
	errInvalidUTF8    = errors.New("selfservice: body is not UTF-8")
)

// readFields reads the body as readBody does and decodes it into fields as
// decodeFields does. The body is read into a pooled buffer: the fields are
// strings of their own, so it can go back as soon as they are decoded.
func readFields(w http.ResponseWriter, r *http.Request, limit int64, fields []field) error {
	buf := bodyBufs.Get().(*[]byte)
	body, err := readBody(w, r, limit, (*buf)[:0])
	if err == nil {
		err = decodeFields(body, fields)
	}
	if cap(body) <= maxPooledBody {
		*buf = body[:0]
		bodyBufs.Put(buf)
	}
	return err
}

// bodyBufs holds the buffers readFields reads bodies into; maxPooledBody
// keeps a rare large body's buffer out of the pool.
var bodyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

const maxPooledBody = 16 << 10

// readBody checks the content type and reads at most limit bytes of the
// body, appended to buf.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
	if !isJSON(r.Header.Get("Content-Type")) {
		return buf, i18n.CodeContentType
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), buf)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return body, i18n.Wrap(i18n.CodeBodyTooLarge, err)
		}
		return body, i18n.Wrap(i18n.CodeBodyMalformed, err)
	}
	return body, nil
}

// readAll is io.ReadAll appending to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// isJSON accepts application/json with at most a UTF-8 charset parameter.
func isJSON(contentType string) bool {
	if contentType == "application/json" {
		return true
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	// A charset parameter is allowed whatever it says: JSON is UTF-8
	// (RFC 8259 section 8.1, which defines no parameter), and a body that
	// is not is refused as malformed.
	for k := range params {
		if k != "charset" {
			return false
		}
	}
	return true
}

// field is one member decodeFields may fill.
type field struct {
	name string
	dst  *string
}

// decodeFields parses body as exactly one JSON object whose members are
// among fields and are strings or null, and stores each string in its field.
// Refused, as IDAAS.SDK.REQ.9104: invalid UTF-8, anything but an object
// (null and [] included), unknown or repeated names (names match exactly),
// other value types, and anything after the object. A null or absent member
// leaves its field empty, so that the field's own "empty" rule answers.
//
// One pass checks the syntax of what it accepts (RFC 8259: white space,
// strings with their escapes, null) and picks the members out, without
// reflection or a token per value; anything else is refused where it is
// found. A differential fuzz target holds it to encoding/json both ways.
func decodeFields(body []byte, fields []field) error {
	if !utf8.Valid(body) {
		return i18n.Wrap(i18n.CodeBodyMalformed, errInvalidUTF8)
	}
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
	}
	var seen uint64 // bit k: fields[k] was given
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return endOfBody(body, i+1)
	}
	for {
		end, escaped, err := scanString(body, i)
		if err != nil {
			return i18n.Wrap(i18n.CodeBodyMalformed, err)
		}
		k, err := memberIndex(body[i:end], escaped, fields)
		switch {
		case err != nil:
			return i18n.Wrap(i18n.CodeBodyMalformed, err)
		case k < 0:
			return i18n.Wrap(i18n.CodeBodyMalformed, errUnknownField)
		case seen&(1<<k) != 0:
			return i18n.Wrap(i18n.CodeBodyMalformed, errDuplicateField)
		}
		seen |= 1 << k
		i = skipSpace(body, end)
		if i == len(body) || body[i] != ':' {
			return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
		}
		i = skipSpace(body, i+1)
		switch {
		case i < len(body) && body[i] == '"':
			end, escaped, err := scanString(body, i)
			if err != nil {
				return i18n.Wrap(i18n.CodeBodyMalformed, err)
			}
			v, err := stringValue(body[i:end], escaped)
			if err != nil {
				return i18n.Wrap(i18n.CodeBodyMalformed, err)
			}
			*fields[k].dst, i = v, end
		case bytes.HasPrefix(body[i:], jsonNull):
			i += len(jsonNull)
		default:
			return i18n.Wrap(i18n.CodeBodyMalformed, errFieldType)
		}
		i = skipSpace(body, i)
		switch {
		case i < len(body) && body[i] == '}':
			return endOfBody(body, i+1)
		case i < len(body) && body[i] == ',':
			i = skipSpace(body, i+1)
		default:
			return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
		}
	}
}

var jsonNull = []byte("null")

// endOfBody accepts nothing but white space from b[i] on.
func endOfBody(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
	}
	return nil
}

// memberIndex returns the index of the field that the JSON string s names,
// -1 for none. A name without escapes, the usual case, is compared in
// place, without a copy.
func memberIndex(s []byte, escaped bool, fields []field) (int, error) {
	if !escaped {
		return fieldIndex(fields, s[1:len(s)-1]), nil
	}
	name, err := stringValue(s, true)
	if err != nil {
		return 0, err
	}
	return fieldIndex(fields, []byte(name)), nil
}

func fieldIndex(fields []field, name []byte) int {
	for k, f := range fields {
		if f.name == string(name) {
			return k
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString checks the JSON string that starts at b[i] and returns the
// index just past its closing quote, and whether it holds escapes. As in
// encoding/json, control characters must be escaped, an escape is one of
// \" \\ \/ \b \f \n \r \t or \u and four hex digits, and any other byte
// stands for itself (decodeFields checks UTF-8 first).
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, false, errNotObject
	}
	for j := i + 1; j < len(b); {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, nil
		case c < 0x20:
			return 0, false, errNotObject
		case c != '\\':
			j++
			continue
		}
		escaped = true
		if j+1 >= len(b) {
			return 0, false, errNotObject
		}
		switch b[j+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j += 2
		case 'u':
			if j+6 > len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
				return 0, false, errNotObject
			}
			j += 6
		default:
			return 0, false, errNotObject
		}
	}
	return 0, false, errNotObject
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// stringValue decodes s, a JSON string scanString accepted. One without
// escapes, the usual case, is copied out directly; encoding/json decodes
// the others.
func stringValue(s []byte, escaped bool) (string, error) {
	if !escaped {
		return string(s[1 : len(s)-1]), nil
	}
	var v string
	if err := json.Unmarshal(s, &v); err != nil {
		return "", err
	}
	return v, nil
}
