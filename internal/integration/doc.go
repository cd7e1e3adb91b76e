// Package integration holds end-to-end tests of the whole API over the real
// stores (PostgreSQL, Redis) that need more than one store package at once,
// such as the fault tests that cut a service's connection mid-run.
package integration
