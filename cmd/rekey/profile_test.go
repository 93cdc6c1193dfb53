package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestProfileNeverTruncates: REKEY_CPUPROFILE naming an existing file, or a
// symbolic link to one, leaves it untouched (it used to be truncated).
func TestProfileNeverTruncates(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	testkit.WriteFile(t, victim, "keep me", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{victim, link} {
		if f, err := createProfile(p); err == nil {
			f.Close()
			t.Errorf("createProfile(%s) opened it", p)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Fatalf("victim now %q", b)
	}
	f, err := createProfile(filepath.Join(dir, "new.prof"))
	if err != nil {
		t.Fatalf("a new file: %v", err)
	}
	f.Close()
}
