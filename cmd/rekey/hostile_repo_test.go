package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestHostileRepositoryRunsNothing: a repository someone else prepared, whose
// .git/config makes `git log` run a program (log.showSignature with
// gpg.program, on a commit that carries a signature) and sets core.fsmonitor.
// Before internal/gitsafe, `rekey scan --history` and `rekey doctor` ran that
// program, with REKEY_MASTER_KEY in its environment.
func TestHostileRepositoryRunsNothing(t *testing.T) {
	dir := t.TempDir()
	home := testkit.GitInit(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Git(t, dir, home, "add", "README")
	testkit.Git(t, dir, home, "commit", "-q", "-m", "one")
	// A commit with a (bogus) signature, so that showSignature calls gpg.program.
	tree := strings.TrimSpace(testkit.Git(t, dir, home, "rev-parse", "HEAD^{tree}"))
	parent := strings.TrimSpace(testkit.Git(t, dir, home, "rev-parse", "HEAD"))
	raw := fmt.Sprintf("tree %s\nparent %s\nauthor a <a@b> 1700000000 +0000\ncommitter a <a@b> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n", tree, parent)
	obj := filepath.Join(t.TempDir(), "commit")
	os.WriteFile(obj, []byte(raw), 0o600)
	c := strings.TrimSpace(testkit.Git(t, dir, home, "hash-object", "-t", "commit", "-w", obj))
	testkit.Git(t, dir, home, "update-ref", "HEAD", c)

	marker := filepath.Join(t.TempDir(), "ran")
	evil := filepath.Join(t.TempDir(), "evil.sh")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\nenv >> "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"log.showSignature", "true"}, {"gpg.program", evil}, {"core.fsmonitor", evil}, {"core.pager", evil}, {"diff.external", evil}} {
		testkit.Git(t, dir, home, "config", kv[0], kv[1])
	}
	// Control: plain git does run it.
	cmd := exec.Command("git", "-C", dir, "log", "--all", "--format=%H")
	cmd.Env = testkit.GitEnv(home)
	cmd.Run()
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the hostile config does not work on plain git (test is wrong): %v", err)
	}
	os.Remove(marker)

	// A rekey project in that repository.
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REKEY_MASTER_KEY": ctRandB64(32, base64.StdEncoding), "XDG_CONFIG_HOME": t.TempDir(), "HOME": home,
		"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
	for _, k := range []string{"GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "HOME"} {
		t.Setenv(k, env[k]) // git children see the process's environment
	}
	if _, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"scan", "--history"}, {"scan", "--staged"}, {"doctor"}} {
		runIn(t, dir, env, "", args...)
		if b, err := os.ReadFile(marker); err == nil {
			leaked := strings.Contains(string(b), "REKEY_MASTER_KEY")
			t.Fatalf("rekey %s ran the repository's program (its environment held the master key: %v)", strings.Join(args, " "), leaked)
		}
	}
}
