package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestReleaseBuildIgnoresTestHooks builds rekey exactly as the README says
// (`go build -o rekey ./cmd/rekey`, no tags) and attacks it with the test
// hooks: REKEY_TEST_NOW would backdate the audit log and the grace deadlines,
// REKEY_TEST_FAULT would kill a rotation half-way. The release binary must
// not contain their names, must write today's time in the audit log, and
// must complete the rotation.
func TestReleaseBuildIgnoresTestHooks(t *testing.T) {
	root, err := filepath.Abs("../..") // the test runs in ./cmd/rekey
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "rekey")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-o", bin, "./cmd/rekey")
	build.Dir = root
	// GOFLAGS could carry -tags=rekeytest from the developer's shell: the README's command has none.
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -o rekey ./cmd/rekey: %v\n%s", err, out)
	}

	// `strings rekey`: the names of the hooks are not in the binary at all.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"REKEY_TEST_FAULT", "REKEY_TEST_NOW"} {
		if bytes.Contains(data, []byte(name)) {
			t.Errorf("the release binary contains %q", name)
		}
	}

	dir := t.TempDir()
	secret := make([]byte, 64)
	rand.Read(secret)
	orig := "JWT_SECRET=" + base64.StdEncoding.EncodeToString(secret) + "\nPORT=8080\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	env := testkit.CleanEnv(
		"REKEY_MASTER_KEY="+base64.StdEncoding.EncodeToString(key),
		"XDG_CONFIG_HOME="+t.TempDir(),
		"REKEY_ACTOR=release-test",
		// The attack.
		"REKEY_TEST_NOW=2001-01-01T00:00:00Z",
		"REKEY_TEST_FAULT=publish:before",
	)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Errorf("rekey %s was killed by signal %v (REKEY_TEST_FAULT honoured)\nstderr:\n%s", strings.Join(args, " "), ws.Signal(), stderr.String())
				return stdout.String()
			}
		}
		if err != nil {
			t.Fatalf("rekey %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	start := time.Now().Add(-time.Minute)
	run("init", "--env-file", ".env")
	run("rotate", "JWT_SECRET")
	end := time.Now().Add(time.Minute)

	after, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) == orig || !strings.Contains(string(after), "PORT=8080\n") {
		t.Errorf("the rotation did not publish a new JWT_SECRET:\n%s", after)
	}
	var n int
	for line := range strings.Lines(run("audit", "--json")) {
		var e rekey.AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		n++
		if e.Time.Before(start) || e.Time.After(end) {
			t.Errorf("audit entry %d (%s) is dated %s, not now (REKEY_TEST_NOW honoured)", e.Seq, e.Action, e.Time.Format(time.RFC3339))
		}
	}
	if n == 0 {
		t.Fatal("no audit entries")
	}
	if h := run("history", "JWT_SECRET"); strings.Contains(h, "2001-") {
		t.Errorf("history shows a version dated 2001:\n%s", h)
	}
}
