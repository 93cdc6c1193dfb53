package main

// The command reference in docs/cli (Markdown) and docs/man (man pages) is
// generated from the cobra commands by cobra's doc generator. The generator
// lives in this test, so the release binary does not link it; this test
// fails when the checked-in files are not what the commands generate now,
// so CI (scripts/test) catches a help text changed without them.

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// update rewrites the checked-in generated files (docs, JSON golden files)
// instead of comparing with them: go test ./cmd/rekey -run 'TestDocs|TestJSONGolden' -update
var update = flag.Bool("update", false, "rewrite docs/cli, docs/man and testdata/json from the commands")

const regenerateDocs = "go test ./cmd/rekey -run TestDocsUpToDate -update"

// docsRoot is rekey's command tree as the docs show it: the same commands
// and help texts as the binary's, with no generator tag (it holds a date).
func docsRoot() *cobra.Command {
	root := (&app{m: &Main{}}).rootCommand()
	root.InitDefaultCompletionCmd() // cobra adds it when it runs
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

// genDocs writes the Markdown and man pages of every command into mdDir
// and manDir.
func genDocs(t *testing.T, mdDir, manDir string) {
	t.Helper()
	if err := doc.GenMarkdownTree(docsRoot(), mdDir); err != nil {
		t.Fatal(err)
	}
	// A fixed date, then none: a man page's header would otherwise carry
	// the day it was generated.
	epoch := time.Unix(0, 0).UTC()
	hdr := &doc.GenManHeader{Title: "REKEY", Section: "1", Source: "rekey", Manual: "rekey manual", Date: &epoch}
	if err := doc.GenManTree(docsRoot(), hdr, manDir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(manDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(manDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte(`"`+epoch.Format("Jan 2006")+`"`), []byte(`""`), 1)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDocsUpToDate regenerates docs/cli and docs/man into a temporary
// folder and compares them with the checked-in files; -update writes them.
func TestDocsUpToDate(t *testing.T) {
	tmp := t.TempDir()
	gen := map[string]string{
		filepath.Join("..", "..", "docs", "cli"): filepath.Join(tmp, "cli"),
		filepath.Join("..", "..", "docs", "man"): filepath.Join(tmp, "man"),
	}
	for _, d := range gen {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	genDocs(t, gen[filepath.Join("..", "..", "docs", "cli")], gen[filepath.Join("..", "..", "docs", "man")])
	for repoDir, genDir := range gen {
		compareTree(t, repoDir, genDir, regenerateDocs)
	}
}

// compareTree fails unless the files of repoDir are exactly those of genDir
// (same names, same bytes); with -update it makes them so.
func compareTree(t *testing.T, repoDir, genDir, how string) {
	t.Helper()
	want := dirFiles(t, genDir)
	have := dirFiles(t, repoDir)
	if *update {
		if err := os.MkdirAll(repoDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name := range have {
			if _, ok := want[name]; !ok {
				if err := os.Remove(filepath.Join(repoDir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(repoDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var stale []string
	for _, name := range sortedKeys(want) {
		if b, ok := have[name]; !ok || !bytes.Equal(b, want[name]) {
			stale = append(stale, name)
		}
	}
	for _, name := range sortedKeys(have) {
		if _, ok := want[name]; !ok {
			stale = append(stale, name+" (generated no more)")
		}
	}
	if len(stale) > 0 {
		t.Errorf("%s is out of date: %s\nrun `%s` to regenerate", filepath.Clean(repoDir), strings.Join(stale, ", "), how)
	}
}

func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// TestDocsDeterministic: two generations are the same bytes (no date, no
// generator tag), and no hidden command has a page.
func TestDocsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		for _, sub := range []string{"cli", "man"} {
			os.MkdirAll(filepath.Join(d, sub), 0o755)
		}
		genDocs(t, filepath.Join(d, "cli"), filepath.Join(d, "man"))
	}
	for _, sub := range []string{"cli", "man"} {
		fa, fb := dirFiles(t, filepath.Join(a, sub)), dirFiles(t, filepath.Join(b, sub))
		if len(fa) == 0 || !slices.Equal(sortedKeys(fa), sortedKeys(fb)) {
			t.Fatalf("%s: %d files, then %v", sub, len(fa), sortedKeys(fb))
		}
		for name, x := range fa {
			if !bytes.Equal(x, fb[name]) {
				t.Errorf("%s/%s differs between two generations", sub, name)
			}
			for _, bad := range []string{"Auto generated", time.Now().Format("Jan 2006"), time.Now().Format("2-Jan-2006")} {
				if bytes.Contains(x, []byte(bad)) {
					t.Errorf("%s/%s holds %q", sub, name, bad)
				}
			}
		}
	}
	if _, ok := dirFiles(t, filepath.Join(a, "cli"))["rekey_status.md"]; !ok {
		t.Error("no page for rekey status")
	}
}
