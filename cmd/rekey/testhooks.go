package main

import "time"

// testHooks are the test-only overrides of the clock and the fault points.
// Only test builds set them (testhooks_test.go under go test,
// testhooks_rekeytest.go under go build -tags rekeytest), from
// REKEY_TEST_NOW and REKEY_TEST_FAULT; a release build leaves them nil, has
// no code that reads those variables and ignores them.
var testHooks struct {
	// now returns a fixed time, if the environment asks for one.
	now func(getenv func(string) string) (time.Time, bool)
	// fault returns the engine's Fault hook, or nil.
	fault func(getenv func(string) string) func(string)
}
