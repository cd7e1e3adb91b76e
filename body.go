package selfservice

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
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
// decodeFields does.
func readFields(w http.ResponseWriter, r *http.Request, limit int64, fields []field) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return decodeFields(body, fields)
}

// readBody checks the content type and reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, i18n.CodeContentType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, i18n.Wrap(i18n.CodeBodyTooLarge, err)
		}
		return nil, i18n.Wrap(i18n.CodeBodyMalformed, err)
	}
	return body, nil
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
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
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
// encoding/json.Valid vouches for the syntax first; the walk below then only
// has to pick the members out, without reflection or a token per value.
func decodeFields(body []byte, fields []field) error {
	if !utf8.Valid(body) {
		return i18n.Wrap(i18n.CodeBodyMalformed, errInvalidUTF8)
	}
	if !json.Valid(body) {
		return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return i18n.Wrap(i18n.CodeBodyMalformed, errNotObject)
	}
	var seen uint64 // bit k: fields[k] was given
	i = skipSpace(body, i+1)
	for body[i] != '}' {
		name, next, err := jsonString(body, i)
		if err != nil {
			return i18n.Wrap(i18n.CodeBodyMalformed, err)
		}
		k := fieldIndex(fields, name)
		switch {
		case k < 0:
			return i18n.Wrap(i18n.CodeBodyMalformed, errUnknownField)
		case seen&(1<<k) != 0:
			return i18n.Wrap(i18n.CodeBodyMalformed, errDuplicateField)
		}
		seen |= 1 << k
		i = skipSpace(body, skipSpace(body, next)+1) // past the colon
		switch body[i] {
		case '"':
			v, next, err := jsonString(body, i)
			if err != nil {
				return i18n.Wrap(i18n.CodeBodyMalformed, err)
			}
			*fields[k].dst, i = v, next
		case 'n':
			i += len("null")
		default:
			return i18n.Wrap(i18n.CodeBodyMalformed, errFieldType)
		}
		i = skipSpace(body, i)
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	return nil
}

func fieldIndex(fields []field, name string) int {
	for k, f := range fields {
		if f.name == name {
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

// jsonString decodes the valid JSON string starting at b[i] and returns it
// with the index just past its closing quote. Strings without escapes, the
// usual case, are sliced out directly.
func jsonString(b []byte, i int) (string, int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return string(b[i+1 : j]), j + 1, nil
		case '\\':
			end := stringEnd(b, j)
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return "", 0, err
			}
			return s, end, nil
		}
	}
	return "", 0, errNotObject
}

// stringEnd returns the index past the closing quote of the string that
// contains b[j], skipping escaped characters.
func stringEnd(b []byte, j int) int {
	for ; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}
