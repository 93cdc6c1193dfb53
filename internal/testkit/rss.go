package testkit

import (
	"os"
	"syscall"
)

// PeakRSSKiB is the peak resident set (KiB) of a child that has exited:
// the most of it and of the children it waited for (getrusage; Linux
// counts in KiB). ok is false where the system gives no rusage.
func PeakRSSKiB(ps *os.ProcessState) (kib int64, ok bool) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, false
	}
	return ru.Maxrss, true
}
