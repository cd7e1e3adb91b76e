// Package memstore implements every store interface in memory: for tests,
// for development, and for a single process that may forget everything on
// restart. Each store is safe for concurrent use and gives the atomicity a
// database would: every method runs under one lock.
package memstore

import "github.com/ciamkit/selfservice/store"

var (
	_ store.UserStore      = (*UserStore)(nil)
	_ store.CodeStore      = (*CodeStore)(nil)
	_ store.SendLimiter    = (*SendLimiter)(nil)
	_ store.ClientRegistry = (*ClientRegistry)(nil)
)

// sweepEvery is how many writes pass between sweeps of expired entries, so
// that abandoned codes and limits do not pile up in a long-running process.
const sweepEvery = 1024
