// Package testkit is the scaffolding the tests and benchmarks of rekey
// share: environments for rekey children, contexts, files, git, binaries
// built once per test process, children run with their exit status, and
// throwaway PostgreSQL clusters (on top of internal/pgtest).
//
// Only tests and bench import it (internal/archtest places it in the test
// layer, which no production package may import). Of the module it imports
// internal/pgtest and internal/postgres (and through it the domain) only,
// so that the in-package tests of every other package can use it; those
// of internal/postgres cannot.
package testkit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgtest"
)

// DisallowSkipEnv, set to 1 (as CI does), turns every skip of a missing
// tool or service into a failure.
const DisallowSkipEnv = pgtest.DisallowSkipEnv

// SkipOrFail skips the test, or fails it when REKEY_TEST_DISALLOW_SKIP=1.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv(DisallowSkipEnv) == "1" {
		tb.Fatalf("cannot run (%s=1): "+format, append([]any{DisallowSkipEnv}, args...)...)
	}
	tb.Skipf(format, args...)
}

// Long skips a long test under -short (why says what takes long).
func Long(tb testing.TB, why string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip(why)
	}
}

// Ctx is a context that ends after d or with the test, whichever is first.
func Ctx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// CleanEnv is this process's environment without the developer's own
// REKEY_* settings (a fault point, a master key) and XDG_CONFIG_HOME, then
// extra: the environment of a rekey child that must not see them.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REKEY_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var unique atomic.Int64

// Unique is prefix_N with an N no other call of this test process got: a
// name for a role, a database or a table of a shared cluster.
func Unique(prefix string) string {
	return prefix + "_" + strconv.FormatInt(unique.Add(1), 10)
}
