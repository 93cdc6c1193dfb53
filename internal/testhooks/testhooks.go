// Package testhooks reads the test-only environment variables of the rekey
// command: REKEY_TEST_NOW (a fixed clock) and REKEY_TEST_FAULT (SIGKILL at a
// step boundary). Only test builds import it: cmd/rekey's _test.go files
// (go test) and testhooks_rekeytest.go (go build -tags rekeytest, for the
// crash tests that run the binary). A release build does not link it, so
// neither variable is read and neither name is in the binary
// (TestReleaseBuildIgnoresTestHooks).
package testhooks

import (
	"os"
	"syscall"
	"time"
)

// Now returns the time REKEY_TEST_NOW names (RFC 3339), if it is set and valid.
func Now(getenv func(string) string) (time.Time, bool) {
	if v := getenv("REKEY_TEST_NOW"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Fault returns the engine's fault hook for REKEY_TEST_FAULT=point (a step
// boundary such as publish:before): reaching that point kills the process,
// as a crash would. It returns nil when the variable is not set.
func Fault(getenv func(string) string) func(string) {
	point := getenv("REKEY_TEST_FAULT")
	if point == "" {
		return nil
	}
	return func(p string) {
		if p == point {
			// A crash, not an exit: no deferred code runs, no lock is released by us.
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}
