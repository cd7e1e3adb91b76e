// Package locales embeds the message files that the i18n package loads: one
// go-i18n JSON file per language, named active.<tag>.json so that
// `goi18n extract` and `goi18n merge` can maintain them.
//
// An integrator adds a language by loading another file of the same shape into
// the bundle (see i18n.Options.Files); the files here are read once, at start-up.
package locales

import (
	"embed"
	"io/fs"
)

//go:embed active.*.json
var files embed.FS

// FS returns the files: active.en.json and active.zh.json.
func FS() fs.FS { return files }
