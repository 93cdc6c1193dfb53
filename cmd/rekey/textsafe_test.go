package main

// Terminal injection: names rekey prints but does not control (file names of
// a repository, REKEY_ACTOR) reach text output quoted, never raw, so escape
// sequences, carriage returns, newlines and bidi overrides in them cannot
// erase a finding, fake a clean result or fake an audit row. JSON output
// keeps them exact. Helpers are in crash_test.go and doctor_test.go.

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// ctRawControls lists the unsafe characters of s other than the newlines
// that end its lines.
func ctRawControls(s string) []rune {
	var out []rune
	for _, line := range strings.Split(s, "\n") {
		for _, r := range line {
			if textsafe.Unsafe(r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestScanQuotesFileNames commits (and leaves in the worktree) files whose
// names hold an escape sequence that erases the line, a carriage return and
// a newline followed by a fake clean result, and a right-to-left override,
// each holding the current JWT_SECRET. `rekey scan --history` prints one
// line per finding, every name quoted, no raw control character; the JSON
// report holds the exact names.
func TestScanQuotesFileNames(t *testing.T) {
	testkit.RequireGit(t)
	p := ctNewProject(t)
	if err := os.WriteFile(filepath.Join(p.dir, ".gitignore"), []byte(".rekey/\n.env\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := "no managed value found (42 versions searched); no rule matched (10 rules)"
	names := []string{
		"x\x1b[2K\rclean\n" + fake + "\n.env",
		"invoice\u202etxt.env",
		"tab\there\x07.txt",
	}
	jwt := p.get(0)
	home := testkit.GitInit(t, p.dir)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(p.dir, n), []byte("JWT_SECRET="+jwt+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Git(t, p.dir, home, "add", "-A")
	testkit.Git(t, p.dir, home, "commit", "-q", "-m", "leak\x1b[2K")

	var found []struct{ Path, Where string }
	r := p.run("scan", "--history", "--format", "json")
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &found) != nil {
		t.Fatalf("scan --format json: %v", r)
	}
	if len(found) != 2*len(names) { // each in the worktree and in the commit
		t.Fatalf("want %d findings, got %d: %v", 2*len(names), len(found), r)
	}
	for _, f := range found {
		ok := false
		for _, n := range names {
			ok = ok || f.Path == n
		}
		if !ok {
			t.Errorf("JSON must keep the exact path, got %q", f.Path)
		}
	}

	r = p.run("scan", "--history")
	if r.code != 1 {
		t.Fatalf("scan: %v", r)
	}
	if bad := ctRawControls(r.stdout); len(bad) > 0 {
		t.Errorf("the text output holds raw control characters %q:\n%q", bad, r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(found) {
		t.Errorf("want one line per finding (%d), got %d:\n%q", len(found), len(lines), r.stdout)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `"`) || !strings.Contains(l, "JWT_SECRET v1") {
			t.Errorf("a finding line should start with the quoted name and name the secret: %q", l)
		}
		if strings.HasPrefix(l, "no managed value found") {
			t.Errorf("a file name faked a clean result: %q", l)
		}
	}
	if !strings.Contains(r.stdout, `"x\x1b[2K\rclean\n`+fake+`\n.env":1: JWT_SECRET v1`) {
		t.Errorf("the name should be printed quoted, as git does:\n%s", r.stdout)
	}
}

// TestAuditQuotesActor: a REKEY_ACTOR holding a newline and a fake audit
// row (and an escape sequence) is recorded exactly, shown exactly by
// `audit --json`, and printed by `audit` as one quoted field of one row.
func TestAuditQuotesActor(t *testing.T) {
	p := ctNewProject(t)
	actor := "bob\n9999  2026-01-01 00:00:00Z  alice  rotate  production  JWT_SECRET  v9  fp:0000000000000000  ok\x1b[2K"
	if r := p.runEnv([]string{"REKEY_ACTOR=" + actor}, "get", "JWT_SECRET", "-n"); r.code != 0 {
		t.Fatalf("get: %v", r)
	}
	js := p.must("audit", "--json")
	n, actors := 0, 0
	sc := bufio.NewScanner(strings.NewReader(js))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct{ Actor string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		n++
		if e.Actor == actor {
			actors++
		}
	}
	if actors == 0 {
		t.Fatalf("audit --json should keep the exact actor:\n%s", js)
	}
	out := p.must("audit")
	if bad := ctRawControls(out); len(bad) > 0 {
		t.Errorf("audit holds raw control characters %q:\n%q", bad, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n+1 { // the header and one line per entry
		t.Errorf("want %d lines (header + %d entries), got %d: a row was faked:\n%s", n+1, n, len(lines), out)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "9999") {
			t.Errorf("a fake audit row: %q", l)
		}
	}
	if !strings.Contains(out, `"bob\n9999`) {
		t.Errorf("the actor should be printed quoted:\n%s", out)
	}
}
