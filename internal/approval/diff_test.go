package approval

import (
	"bytes"
	"strings"
	"testing"
)

// TestConfigChangeDescription: the refusal names the changed lines and
// keys, quotes control characters, and config diff is a unified diff.
func TestConfigChangeDescription(t *testing.T) {
	old := "version: 1\nstore:\n  path: a\nchecks:\n  login:\n    http: {url: \"http://localhost/\"}\n  db:\n    tcp: {address: \"localhost:5432\"}\n"
	new := "version: 1\nstore:\n  path: a\nchecks:\n  login:\n    http: {url: \"http://evil.example/\"}\n  db:\n    tcp: {address: \"localhost:5432\"}\n    retries: 2\n"
	if got, want := Compare([]byte(old), []byte(new)).Summary(), "lines 6, 9: checks.login.http; checks.db.retries"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	new = strings.Replace(new, "    retries: 2\n", "# \x1b[2Jcleared\n", 1)
	ch := Compare([]byte(old), []byte(new))
	if got, want := ch.Summary(), "lines 6, 9: checks.login.http"; got != want { // the new text does not parse: the old one names the key
		t.Errorf("summary %q, want %q", got, want)
	}
	ex := ch.Excerpt(2)
	if !strings.Contains(ex, "-    6      http: {url: \"http://localhost/\"}") || !strings.Contains(ex, "+    6      http: {url: \"http://evil.example/\"}") ||
		!strings.Contains(ex, "1 more changed lines") || strings.Contains(ex, "\x1b") {
		t.Errorf("excerpt:%s", ex)
	}
	if ex := ch.Excerpt(6); !strings.Contains(ex, `"# \x1b[2Jcleared"`) {
		t.Errorf("control characters not quoted:%s", ex)
	}
	var b bytes.Buffer
	ch.Unified(&b, "a", "b", 1)
	want := "--- a\n+++ b\n@@ -5,4 +5,5 @@\n   login:\n-    http: {url: \"http://localhost/\"}\n+    http: {url: \"http://evil.example/\"}\n   db:\n     tcp: {address: \"localhost:5432\"}\n+\"# \\x1b[2Jcleared\"\n"
	if b.String() != want {
		t.Errorf("unified:\n%s\nwant:\n%s", b.String(), want)
	}
	// Two distant changes are two hunks; a missing final newline is said.
	old2 := "a\nb\nc\nd\ne\nf\ng\nh\n"
	new2 := "A\nb\nc\nd\ne\nf\ng\nh"
	b.Reset()
	Compare([]byte(old2), []byte(new2)).Unified(&b, "a", "b", 1)
	want = "--- a\n+++ b\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n@@ -7,2 +7,2 @@\n g\n-h\n+h\n\\ No newline at end of file\n"
	if b.String() != want {
		t.Errorf("unified:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := Compare([]byte("x: 1\ny: 2\n"), []byte("x: 1\n")).Summary(); got != "line 2 of the approved copy removed: y" {
		t.Errorf("summary of a removal: %q", got)
	}
	if got := Compare([]byte("a: 1\nb: 2\nc: 3\n"), []byte("a: 1\nc: 3\nd: 4\n")).Summary(); got != "line 3, and 1 removed: b; d" {
		t.Errorf("summary of a removal and an addition: %q", got)
	}
	// Blank and comment lines name no key, and the excerpt skips blank ones.
	ch = Compare([]byte("a: 1\n\nb: 2\n"), []byte("a: 1\nb: 3 # three\n# note\n"))
	if got := ch.Summary(); got != "lines 2-3: b" {
		t.Errorf("summary with blank and comment lines: %q", got)
	}
	if ex := ch.Excerpt(6); strings.Count(ex, "\n  ") != 4 || !strings.Contains(ex, "+    3  # note") {
		t.Errorf("excerpt with a blank line:%s", ex)
	}
}
