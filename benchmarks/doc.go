// Package benchmarks compares the selfservice middleware chain with its
// peers on the same token, key and claims, in one run: golang-jwt alone
// (the floor), github.com/coreos/go-oidc/v3's IDTokenVerifier and
// github.com/auth0/go-jwt-middleware/v2. It is a module of its own so that
// the peers stay out of the main go.mod; see BENCHMARKS.md at the root.
package benchmarks
