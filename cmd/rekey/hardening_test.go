package main

// Trust hardening (issue 10, items 5, 6, 12 and 14), each attack performed
// against rekey in-process (Main.Run): credentials of a connection URL must
// not be copied into rekey.yaml; `rekey example` must not keep a secret rekey
// does not manage, and doctor must fail an example that holds one; a weak
// passphrase is refused from the environment as from a terminal; a rotation
// keeps the .env's owner, group and group bits and takes away the others'.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hdJWT is a managed secret every fixture holds, so that init has one.
const hdJWT = "aGFyZGVuaW5nLWp3dC1zZWNyZXQtZm9yLXRoZS1maXh0dXJlcy1vZi1pc3N1ZS0xMC1pdGVtcy01LTYtMTItMTQ="

func hdEnv(t *testing.T) map[string]string {
	home := t.TempDir()
	return map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "REKEY_ACTOR": "hardening",
		"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"REKEY_PASSPHRASE": "", "REKEY_NEW_PASSPHRASE": "", "GIT_CEILING_DIRECTORIES": "",
	}
}

// hdFragments are the substrings of s of 4 bytes or more (every window of 4).
func hdFragments(s string) []string {
	var out []string
	for i := 0; i+4 <= len(s); i++ {
		out = append(out, s[i:i+4])
	}
	return out
}

// TestHardenWeakPassphraseFromEnvironment: item 12. The passphrase rule of
// the terminal (12 characters) applies to REKEY_PASSPHRASE at init and to
// REKEY_NEW_PASSPHRASE at `master rotate`: a weak one creates nothing and
// changes nothing.
func TestHardenWeakPassphraseFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	env := hdEnv(t)
	env["REKEY_MASTER_KEY"] = ""
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("JWT_SECRET="+hdJWT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, weak := range []string{"a", "hunter2", "elevenchars", "aaaaaaaaaaaaaaaaaaaa", "abababababababab"} {
		env["REKEY_PASSPHRASE"] = weak
		out, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env", "--passphrase")
		if code != 2 || !strings.Contains(errs, "rekey: error: REKEY_PASSPHRASE: ") || !strings.Contains(errs, "rekey: hint: ") {
			t.Errorf("init with REKEY_PASSPHRASE=%q: exit %d\n%s%s", weak, code, out, errs)
		}
		if strings.Contains(errs, weak) && len(weak) > 3 {
			t.Errorf("the error shows the passphrase")
		}
		for _, f := range []string{"rekey.yaml", filepath.Join(".rekey", "rekey.db")} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Fatalf("init with REKEY_PASSPHRASE=%q created %s", weak, f)
			}
		}
	}

	env["REKEY_PASSPHRASE"] = "correct horse battery staple"
	if out, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env", "--passphrase"); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	db := filepath.Join(dir, ".rekey", "rekey.db")
	before, _ := os.ReadFile(db)
	for _, weak := range []string{"b", "short", "zzzzzzzzzzzzzzzz"} {
		env["REKEY_NEW_PASSPHRASE"] = weak
		out, errs, code := runIn(t, dir, env, "", "master", "rotate", "--passphrase")
		if code != 2 || !strings.Contains(errs, "rekey: error: REKEY_NEW_PASSPHRASE: ") {
			t.Errorf("master rotate with REKEY_NEW_PASSPHRASE=%q: exit %d\n%s%s", weak, code, out, errs)
		}
	}
	// Without REKEY_NEW_PASSPHRASE and without a terminal, the store's own
	// passphrase (REKEY_PASSPHRASE) is not taken as the new one.
	env["REKEY_NEW_PASSPHRASE"] = ""
	if out, errs, code := runIn(t, dir, env, "", "master", "rotate", "--passphrase"); code == 0 || !strings.Contains(errs, "REKEY_NEW_PASSPHRASE") {
		t.Errorf("master rotate without a new passphrase: exit %d\n%s%s", code, out, errs)
	}
	if after, _ := os.ReadFile(db); string(after) != string(before) {
		t.Errorf("a refused master rotate changed the store")
	}
	if out, errs, code := runIn(t, dir, env, "", "status"); code != 0 {
		t.Errorf("status with the old passphrase: exit %d\n%s%s", code, out, errs)
	}
}
