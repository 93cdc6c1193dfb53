package pgcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// RecordEnv names an environment variable that, when set, is a file to
// which every test that used a cluster appends one line: the test
// binary's directory (its package), the top-level test's name and the
// server's version, tab-separated. scripts/test reads it to run every
// PostgreSQL test once per major version and to check that none was left
// out.
const RecordEnv = "REKEY_TEST_PG_RECORD"

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// serverVersion runs `postgres --version` in binDir: "17.10" and 17.
func serverVersion(binDir string) (string, int, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s --version: %v", ErrUnavailable, filepath.Join(binDir, "postgres"), err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return "", 0, fmt.Errorf("pgtest: %s --version: no version in %q", filepath.Join(binDir, "postgres"), strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	return m[1] + m[2], major, nil
}

// BinDir is the directory of the server binaries the cluster runs.
func (c *Cluster) BinDir() string { return c.binDir }

var (
	startDir, _ = os.Getwd() // a test binary starts in its package's directory
	recordMu    sync.Mutex
	recorded    = map[string]bool{}
)

// RecordTest notes, under RecordEnv, that the top-level test of name
// (a subtest's name counts for its top-level test) used this cluster. It
// reports whether this is the first time for that test in this process.
func (c *Cluster) RecordTest(name string) bool {
	top, _, _ := strings.Cut(name, "/")
	recordMu.Lock()
	defer recordMu.Unlock()
	if recorded[top] {
		return false
	}
	recorded[top] = true
	path := os.Getenv(RecordEnv)
	if path == "" {
		return true
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %s: %v\n", RecordEnv, err)
		return true
	}
	defer f.Close()
	// One short write with O_APPEND: lines of concurrent test binaries
	// do not interleave.
	if _, err := fmt.Fprintf(f, "%s\t%s\t%s\n", startDir, top, c.Version); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %s: %v\n", RecordEnv, err)
	}
	return true
}

// recordCaller records the test whose function started the cluster (a
// test that starts one itself, or through code such as `rekey demo
// --with-postgres` run in-process): the outermost TestXxx frame of the
// calling goroutine. A cluster started from TestMain is recorded by
// pgtest.Need, per test. Without RecordEnv it does nothing; a start in a
// test binary that no test function can be found for (a goroutine of its
// own) is recorded as "?", which scripts/test refuses: it could not be
// run again per major.
func (c *Cluster) recordCaller() {
	if os.Getenv(RecordEnv) == "" {
		return
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	name := ""
	for {
		f, more := frames.Next()
		fn := f.Function[strings.LastIndex(f.Function, "/")+1:]
		_, fn, _ = strings.Cut(fn, ".") // drop the package
		if fn == "TestMain" {
			return // pgtest.Main's shared cluster: pgtest.Need records
		}
		if testFunc.MatchString(fn) {
			name, _, _ = strings.Cut(fn, ".") // TestX.func1 is TestX's
		}
		if !more {
			break
		}
	}
	if name == "" && strings.HasSuffix(os.Args[0], ".test") {
		name = "?"
	}
	if name != "" {
		c.RecordTest(name)
	}
}

var testFunc = regexp.MustCompile(`^Test[A-Z0-9_]\w*(\.|$)`)
