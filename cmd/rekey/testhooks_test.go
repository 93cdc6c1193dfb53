package main

import "github.com/rekeyhq/rekey/internal/testhooks"

// The test binary honours REKEY_TEST_NOW and REKEY_TEST_FAULT: the in-process
// tests (Main.Run) and the testscripts (which run this binary as `rekey`) use
// them. The same init is in testhooks_rekeytest.go for binaries built with
// -tags rekeytest.
func init() {
	testHooks.now = testhooks.Now
	testHooks.fault = testhooks.Fault
}
