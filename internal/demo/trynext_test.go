package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHowToRekey: "Try next" gives a rekey that works after the demo exits:
// under `go run` (a binary in go's temporary build folder, gone at exit)
// the go install line, never the temporary path; an alias to a rekey that
// is not the one on PATH; nothing for the rekey on PATH.
func TestHowToRekey(t *testing.T) {
	tmp := t.TempDir()
	goRun := filepath.Join(tmp, "go-build3141592", "b001", "exe", "rekey")
	installed := filepath.Join(tmp, "bin", "rekey")
	other := filepath.Join(tmp, "my dir", "rekey")
	for _, p := range []string{goRun, installed, other} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, self, onPath, root string
		want                     []string // each line's start
	}{
		{"go run in a clone", goRun, installed, "/src/rekey", []string{"go install -C /src/rekey ./cmd/rekey ", `export PATH="$(go env GOPATH)/bin:$PATH"`}},
		{"go run, no source tree", goRun, "", "", []string{"go install github.com/rekeyhq/rekey/cmd/rekey@latest ", `export PATH=`}},
		{"the rekey on PATH", installed, installed, "/src/rekey", nil},
		{"a rekey elsewhere", other, installed, "", []string{"alias rekey='" + other + "'"}},
	}
	for _, c := range cases {
		got := howToRekey(c.self, c.onPath, c.root)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want lines starting %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) || strings.Contains(got[i], "go-build") {
				t.Errorf("%s: line %d is %q, want it to start %q (and no go-build path)", c.name, i, got[i], c.want[i])
			}
		}
	}
	if goRunBuild(installed) || goRunBuild(filepath.Join(tmp, "go-build1", "rekey.test")) || !goRunBuild(goRun) {
		t.Error("goRunBuild: wrong answer")
	}
}
