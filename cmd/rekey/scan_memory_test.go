package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestScanMemoryBounded: a 400 MB (sparse) file in the worktree, committed
// so that it is also a 400 MB blob of the history, holding the current
// JWT_SECRET far into it, across a 4 MiB boundary and after a few line
// breaks. `rekey scan --history` finds it in both places at the right line
// and column, and its peak RSS (rusage of the child: rekey and the git
// processes it waited for) stays under 200 MiB, with the blob loose and
// packed. Helpers are in
// crash_test.go and doctor_test.go.
func TestScanMemoryBounded(t *testing.T) {
	testkit.Long(t, "scans 800 MB")
	testkit.RequireGit(t)
	p := ctNewProject(t)
	if err := os.WriteFile(filepath.Join(p.dir, ".gitignore"), []byte(".rekey/\n.env\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 400 << 20
	const at int64 = 300<<20 - 20 // straddles a 4 MiB boundary
	newlines := []int64{1 << 20, 100 << 20, 250 << 20}
	jwt := p.get(0)
	f, err := os.Create(filepath.Join(p.dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range newlines {
		if _, err := f.WriteAt([]byte("\n"), off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteAt([]byte(jwt), at); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	home := testkit.GitInit(t, p.dir)
	testkit.Git(t, p.dir, home, "add", "-A")
	testkit.Git(t, p.dir, home, "commit", "-q", "-m", "a large file")

	// The blob loose, then packed (git streams a packed blob only when told
	// it is big).
	for _, how := range []string{"loose", "packed"} {
		if how == "packed" {
			testkit.Git(t, p.dir, home, "repack", "-adq")
		}
		checkScanOf400MB(t, p, how, newlines, at)
	}
}

func checkScanOf400MB(t *testing.T, p *ctProject, how string, newlines []int64, at int64) {
	t.Helper()
	cmd, stdout, stderr := p.command(nil, "scan", "--history", "--format", "json")
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("scan: want exit 1 (findings): %v\n%s", err, stderr)
	}
	kib, ok := testkit.PeakRSSKiB(cmd.ProcessState)
	if !ok {
		t.Fatal("no rusage")
	}
	peak := kib / 1024
	t.Logf("peak RSS of rekey scan --history over a 400 MB file and blob (%s): %d MiB", how, peak)
	if peak >= 200 {
		t.Errorf("blob %s: peak RSS %d MiB, want under 200 MiB", how, peak)
	}
	var fs []struct {
		Secret, Where, Path string
		Line, Column        int
	}
	if err := json.Unmarshal(stdout.Bytes(), &fs); err != nil {
		t.Fatal(err)
	}
	wantLine, wantCol := len(newlines)+1, int(at-newlines[len(newlines)-1])
	where := map[string]bool{}
	for _, x := range fs {
		if x.Secret != "JWT_SECRET" || x.Path != "big.bin" || x.Line != wantLine || x.Column != wantCol {
			t.Errorf("unexpected finding %+v, want JWT_SECRET in big.bin at %d:%d", x, wantLine, wantCol)
		}
		where[x.Where] = true
	}
	if len(fs) != 2 || !where["worktree"] || !where["commit"] {
		t.Errorf("want the value found once in the worktree and once in the commit: %+v", fs)
	}
}
