//go:build !linux

package redistest

import "os/exec"

// setParentDeathSignal does nothing where the kernel offers no parent
// death signal: a server outlives its test only when the test binary dies
// without running its cleanups.
func setParentDeathSignal(*exec.Cmd) {}
