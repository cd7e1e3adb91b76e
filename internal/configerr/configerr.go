// Package configerr holds the one sentinel every constructor of the module
// wraps when its configuration is unusable; the root package exports it as
// selfservice.ErrConfig.
package configerr

// sentinel is a constant error: its values cannot be reassigned.
type sentinel string

func (s sentinel) Error() string { return string(s) }

// Err reports an unusable configuration.
const Err sentinel = "selfservice: invalid configuration"
