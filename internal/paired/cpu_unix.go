//go:build unix

package paired

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time, user plus system, that every thread of
// this process has used so far. On Linux the sum is the scheduler's runtime
// (nanoseconds, reported in microseconds), exact for the calling thread; a
// thread running on another CPU is counted up to its last tick or context
// switch, so a sample may lag by up to one tick for such threads. Run reads
// it when the batch's workers have finished, so that lag is left only to
// goroutines the measured code started or to the garbage collector.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
