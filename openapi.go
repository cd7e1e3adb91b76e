package selfservice

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"time"
)

// openAPIDocument is openapi.yaml, the OpenAPI 3.1 description of both
// endpoints: headers, bodies, every error code with its status and its
// English and Chinese messages. The package's HTTP tests validate every
// response they get against it, so it describes what the handlers do.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// openAPIETag is a strong validator of the document: it changes only when
// the document does, that is with a new version of the package.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDocument)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}()

// OpenAPI returns a copy of the package's OpenAPI 3.1 document (YAML) for
// POST /api/v2/sdk/email/send and POST /api/v2/sdk/profile/update-email.
// Feed it to a client generator, or serve it with OpenAPIHandler.
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

// OpenAPIHandler returns a handler that serves OpenAPI() as
// application/yaml to GET and HEAD, with an ETag so that clients can
// revalidate it cheaply (If-None-Match), and answers other methods 405.
// The document is YAML whatever the request's Accept header says: every
// OpenAPI tool reads YAML, and converting it to JSON would need a YAML
// parser in the package. Mount it where your API's clients can find it:
//
//	mux.Handle("GET /openapi.yaml", selfservice.OpenAPIHandler())
func OpenAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", "application/yaml")
		h.Set("ETag", openAPIETag)
		// Revalidate on every use: the document changes when the server
		// is upgraded, and the ETag makes the check a 304.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(openAPIDocument))
	})
}
