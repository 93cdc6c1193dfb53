package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var builds sync.Map // "pkg tags" → func() (string, error)

// GoBuild builds the main package in the folder pkg (relative to the test's
// package, as `go build` takes it) with the build tags, once per test
// process, and returns the binary, named after the folder. It goes into a
// temporary folder of its own that is not removed: nothing runs at the end
// of a test process but TestMain, and a benchmark's log may name the binary
// for profiling by hand.
func GoBuild(tb testing.TB, pkg string, tags ...string) string {
	tb.Helper()
	key := pkg + " " + strings.Join(tags, ",")
	f, _ := builds.LoadOrStore(key, sync.OnceValues(func() (string, error) { return goBuild(pkg, tags) }))
	bin, err := f.(func() (string, error))()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

func goBuild(pkg string, tags []string) (string, error) {
	abs, err := filepath.Abs(pkg)
	if err != nil {
		return "", err
	}
	name := filepath.Base(abs)
	dir, err := os.MkdirTemp("", name+"-test-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	// go test puts its own go first on the test's PATH.
	if out, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s %s: %v\n%s", strings.Join(args, " "), pkg, err, out)
	}
	return bin, nil
}
