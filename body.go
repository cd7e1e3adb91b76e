package selfservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/ciamkit/selfservice/i18n"
)

// Why a body is refused, wrapped in the catalog error decodeBody returns.
var (
	errNotObject      = errors.New("selfservice: body is not exactly one JSON object")
	errUnknownField   = errors.New("selfservice: body has an unknown field")
	errDuplicateField = errors.New("selfservice: body repeats a field")
	errFieldType      = errors.New("selfservice: body field is not a string")
	errInvalidUTF8    = errors.New("selfservice: body is not UTF-8")
)

// readBody checks the content type and reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, i18n.ErrContentType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, i18n.ErrBodyTooLarge.WithCause(err)
		}
		return nil, i18n.ErrBodyMalformed.WithCause(err)
	}
	return body, nil
}

// isJSON accepts application/json with at most a UTF-8 charset parameter.
func isJSON(contentType string) bool {
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

// decodeFields parses body as exactly one JSON object whose members are
// among fields and are strings or null, and stores each string in its field.
// Refused, as IDAAS.SDK.REQ.9104: invalid UTF-8, anything but an object
// (null and [] included), unknown or repeated names (names match exactly),
// other value types, and anything after the object. A null or absent member
// leaves its field empty, so that the field's own "empty" rule answers.
func decodeFields(body []byte, fields map[string]*string) error {
	if !utf8.Valid(body) {
		return i18n.ErrBodyMalformed.WithCause(errInvalidUTF8)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return i18n.ErrBodyMalformed.WithCause(errNotObject)
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return i18n.ErrBodyMalformed.WithCause(err)
		}
		name := tok.(string) // object keys are always strings
		dst, ok := fields[name]
		if !ok {
			return i18n.ErrBodyMalformed.WithCause(errUnknownField)
		}
		if seen[name] {
			return i18n.ErrBodyMalformed.WithCause(errDuplicateField)
		}
		seen[name] = true
		val, err := dec.Token()
		if err != nil {
			return i18n.ErrBodyMalformed.WithCause(err)
		}
		switch v := val.(type) {
		case string:
			*dst = v
		case nil:
		default:
			return i18n.ErrBodyMalformed.WithCause(errFieldType)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return i18n.ErrBodyMalformed.WithCause(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return i18n.ErrBodyMalformed.WithCause(errNotObject)
	}
	return nil
}
