//go:build sqlite

package main

// The pure-Go SQLite driver, for -store sqlite:PATH. It is kept out of the
// default build (go run -tags sqlite ./example): its transpiled C is most of
// what a first build compiles.
import _ "modernc.org/sqlite" // the "sqlite" database/sql driver
