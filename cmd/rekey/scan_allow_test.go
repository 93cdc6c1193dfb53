package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestScanAllowFingerprint: a managed version's fingerprint in --allow
// suppresses its findings; another version's findings stay reported.
func TestScanAllowFingerprint(t *testing.T) {
	dir := t.TempDir()
	home := testkit.GitInit(t, dir)
	env := map[string]string{"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": home, "REKEY_ACTOR": "t"}
	jwt := strings.Repeat("Zml4dHVyZS1qd3Qtc2VjcmV0", 4)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, ".env"), []byte("JWT_SECRET="+jwt+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env\n"), 0o644))
	if _, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	must(os.WriteFile(filepath.Join(dir, "fixture.txt"), []byte("token: "+jwt+"\n"), 0o644))
	testkit.Git(t, dir, home, "add", "fixture.txt", ".gitignore")
	testkit.Git(t, dir, home, "commit", "-q", "-m", "fixture")

	out, _, code := runIn(t, dir, env, "", "scan", "--history", "--no-rules")
	if code != 1 || !strings.Contains(out, "fixture.txt:1: JWT_SECRET v1") {
		t.Fatalf("scan: exit %d\n%s", code, out)
	}
	hist, _, _ := runIn(t, dir, env, "", "history", "JWT_SECRET")
	fp := regexp.MustCompile(`fp:[0-9a-f]{16}`).FindString(hist)
	if fp == "" {
		t.Fatalf("no fingerprint in history:\n%s", hist)
	}
	must(os.WriteFile(filepath.Join(dir, "allow.txt"), []byte("# the fixture's value\n"+fp+"\n"), 0o644))
	out, _, code = runIn(t, dir, env, "", "scan", "--history", "--no-rules", "--allow", "allow.txt")
	if code != 0 || !strings.Contains(out, "suppressed") {
		t.Errorf("scan --allow with the fingerprint: exit %d\n%s", code, out)
	}
	// After a rotation, a leak of the new version is not covered by v1's fingerprint.
	if _, errs, code := runIn(t, dir, env, "", "rotate", "JWT_SECRET"); code != 0 {
		t.Fatalf("rotate: %s", errs)
	}
	cur, _, _ := runIn(t, dir, env, "", "get", "JWT_SECRET", "-n")
	must(os.WriteFile(filepath.Join(dir, "fixture2.txt"), []byte("jwt: "+cur+"\n"), 0o644))
	out, _, code = runIn(t, dir, env, "", "scan", "--no-rules", "--allow", "allow.txt")
	if code != 1 || !strings.Contains(out, "fixture2.txt:1: JWT_SECRET v2") {
		t.Errorf("scan after rotation: exit %d\n%s", code, out)
	}
	if strings.Contains(out, cur) || strings.Contains(out, jwt) {
		t.Error("scan printed a value")
	}
}

// TestScanErrorExit: scan's exit 1 means findings, so an error is never 1.
func TestScanErrorExit(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir()}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("JWT_SECRET="+strings.Repeat("c2VjcmV0", 11)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	for _, args := range [][]string{
		{"scan", "--format", "xml"},
		{"scan", "--history"},               // not a git repository
		{"scan", "--rules", "missing.toml"}, // no such file
	} {
		if _, errs, code := runIn(t, dir, env, "", args...); code < 2 {
			t.Errorf("rekey %s: exit %d, want 2 or more\n%s", strings.Join(args, " "), code, errs)
		}
	}
}
