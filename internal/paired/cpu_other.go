//go:build !unix

package paired

import "time"

// processCPU reports that process CPU time is not measured on this system:
// Run then reports wall-time metrics only.
func processCPU() (time.Duration, bool) { return 0, false }
