// Package testkit is the scaffolding the tests and benchmarks of rekey
// share: environments for rekey children, contexts, files, git, binaries
// built once per test process, children run with their exit status, and
// throwaway PostgreSQL clusters (on top of internal/pgtest).
//
// Only tests and bench import it (internal/archtest places it in the test
// layer, which no production package may import). It imports no package
// of the module but the domain, internal/pgtest and internal/postgres, so
// that the in-package tests of the other packages can use it; the
// in-package tests of internal/postgres cannot.
package testkit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// WriteFile writes data to path (its folder created) with mode, or fails
// the test.
func WriteFile(tb testing.TB, path, data string, mode os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		tb.Fatal(err)
	}
}

// ReadFile returns the content of path, or fails the test.
func ReadFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// CopyFile copies from to to (mode 0600), or fails the test.
func CopyFile(tb testing.TB, from, to string) {
	tb.Helper()
	WriteFile(tb, to, ReadFile(tb, from), 0o600)
}

// EditFile replaces the first old in the file at path by new (appends new
// when old is ""), keeping mode 0644, or fails the test when old is not
// there. It returns the new content.
func EditFile(tb testing.TB, path, old, new string) string {
	tb.Helper()
	text := ReadFile(tb, path)
	next := text + new
	if old != "" {
		if next = strings.Replace(text, old, new, 1); next == text {
			tb.Fatalf("no %q in %s:\n%s", old, filepath.Base(path), text)
		}
	}
	WriteFile(tb, path, next, 0o644)
	return next
}
