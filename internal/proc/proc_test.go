package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestLongOutputCut checks that output beyond what is kept does not leak a
// partial line (a secret cut in half escapes redaction).
func TestLongOutputCut(t *testing.T) {
	tl := &tail{}
	tl.Write([]byte("SECRET-" + strings.Repeat("x", maxOutput) + "\nend\n"))
	lines := tl.lines(10, nil)
	if len(lines) != 1 || lines[0] != "end" {
		t.Errorf("lines %q", lines)
	}
}

// TestStdin: Options.Stdin reaches the command's standard input (here it
// must match exactly, read by a pattern from stdin), and nothing else: a
// command that does not read it still exits 0.
func TestStdin(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "accepted"), []byte("k-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	grep := rekey.Command{Argv: []string{"grep", "-qxF", "-f", "-", "accepted"}}
	for in, want := range map[string]bool{"k-123\n": true, "k-999\n": false} {
		if r := Run(t.Context(), "check", grep, Options{Dir: dir, Stdin: []byte(in)}); r.OK != want {
			t.Errorf("stdin %q: %+v, want OK %v", in, r, want)
		}
	}
	if r := Run(t.Context(), "check", rekey.Command{Argv: []string{"true"}}, Options{Dir: dir, Stdin: []byte(strings.Repeat("x", 1<<20))}); !r.OK {
		t.Errorf("a command that does not read its stdin: %+v", r)
	}
}

// TestStartedAlive: this process is alive by its start mark; a wrong mark
// (a reused pid) and a pid that does not exist are not.
func TestStartedAlive(t *testing.T) {
	m, ok := Started(os.Getpid())
	if !ok {
		t.Skip("no /proc: not Linux")
	}
	if !Alive(os.Getpid(), m) || Alive(os.Getpid(), m+1) || Alive(1<<30, m) {
		t.Error("Alive does not tell this process from another")
	}
}
