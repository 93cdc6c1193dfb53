//go:build rekeytest

package main

import "github.com/rekeyhq/rekey/internal/testhooks"

// A binary built with -tags rekeytest (the crash, PostgreSQL and end-to-end
// tests build one) honours REKEY_TEST_NOW and REKEY_TEST_FAULT.
func init() {
	testHooks.now = testhooks.Now
	testHooks.fault = testhooks.Fault
}
