package main

// The tests run the example on SQLite too, whatever the build tags.
import _ "modernc.org/sqlite" // the "sqlite" database/sql driver
