package scan

import (
	"context"
	"strings"
	"testing"
)

// TestHistoryOncePerAddedLine: a managed value that stays in its file
// through later edits (lines added above and below it) and a rename is
// reported where its line was added, and again only where a commit adds it
// anew (the line deleted then restored, a second occurrence on a new line).
func TestHistoryOncePerAddedLine(t *testing.T) {
	s := []Secret{secret("K", "rk_kept_0123456789abcdefghij")}
	v := s[0].Value.RevealString()
	r := newRepo(t)
	c1 := r.commit("add", map[string]string{"cfg/app.env": "A=1\nK=" + v + "\nB=2\n"})
	r.commit("above", map[string]string{"cfg/app.env": "# top\nA=1\nK=" + v + "\nB=2\n"})
	r.commit("below", map[string]string{"cfg/app.env": "# top\nA=1\nK=" + v + "\nB=3\nC=4\n"})
	r.git("mv", "cfg/app.env", "cfg/prod.env")
	r.commit("rename", nil)
	r.commit("drop", map[string]string{"cfg/prod.env": "# top\nA=1\nB=3\nC=4\n"})
	c6 := r.commit("restore", map[string]string{"cfg/prod.env": "# top\nA=1\nK=" + v + "\nB=3\nC=4\n"})
	c7 := r.commit("twice", map[string]string{"cfg/prod.env": "# top\nA=1\nK=" + v + "\nB=3\nC=4\nK2=" + v + "\n"})
	fs, err := ScanRepo(context.Background(), r.dir, NewMatcher(s), Options{History: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		if f.Where == WhereCommit {
			got = append(got, f.Commit[:7]+":"+f.Path+":"+string(rune('0'+f.Line)))
		}
	}
	want := []string{c1[:7] + ":cfg/app.env:2", c6[:7] + ":cfg/prod.env:3", c7[:7] + ":cfg/prod.env:6"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("history findings:\n got %v\nwant %v", got, want)
	}
}

func TestParseHunk(t *testing.T) {
	for line, want := range map[string]hunk{
		"@@ -3,0 +4,2 @@ ctx": {4, 2}, "@@ -1 +1 @@": {1, 1}, "@@ -0,0 +1,30 @@": {1, 30},
	} {
		if h, ok := parseHunk(line); !ok || h != want {
			t.Errorf("parseHunk(%q) = %v %v", line, h, ok)
		}
	}
	if _, ok := parseHunk("@@ -4,2 +3,0 @@"); ok {
		t.Error("a hunk that adds nothing")
	}
}

// TestHistoryLargeBlobNotDiffed: a blob larger than wholeLimit is not
// diffed (git would load it whole): each commit that changes it reports
// the value again, at its line.
func TestHistoryLargeBlobNotDiffed(t *testing.T) {
	s := []Secret{secret("K", "rk_large_0123456789abcdefghij")}
	v := s[0].Value.RevealString()
	r := newRepo(t)
	r.commit("add", map[string]string{"big.txt": "K=" + v + "\n"})
	r.commit("edit", map[string]string{"big.txt": "K=" + v + "\nmore\n"})
	smallWindows(t, 1024) // every blob is "large"
	fs, err := ScanRepo(context.Background(), r.dir, NewMatcher(s), Options{History: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fs {
		if f.Where == WhereCommit && f.Line == 1 {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("want the value at both commits, got %+v", fs)
	}
}
