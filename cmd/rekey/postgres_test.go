package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// login reports whether pw logs in as the cluster's superuser.
func login(t *testing.T, c *pgtest.Cluster, pw string) bool {
	t.Helper()
	return loginURL(t, c.ConnString(c.SuperUser, pw, "postgres"))
}

// wantLogins fails unless, after what, the password that is current (cur)
// logs in as the superuser, the one it replaced (gone) does not, and the
// .env's DATABASE_URL (envURL) does.
func wantLogins(t *testing.T, c *pgtest.Cluster, after, cur, gone, envURL string) {
	t.Helper()
	if !login(t, c, cur) {
		t.Fatalf("after %s, the current password does not log in", after)
	}
	if login(t, c, gone) {
		t.Fatalf("after %s, the password it replaced still logs in", after)
	}
	if !loginURL(t, envURL) {
		t.Fatalf("after %s, the .env's DATABASE_URL does not log in", after)
	}
}

// setSuperPassword changes the superuser's password from (logging in with
// it) to to, as someone would by hand.
func setSuperPassword(t *testing.T, c *pgtest.Cluster, from, to string) {
	t.Helper()
	testkit.SetPassword(t, c.ConnString(c.SuperUser, from, "postgres"), c.SuperUser, to)
}

func readDotenv(t *testing.T, path string) (string, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return string(b), m
}

// TestPostgresRotation rotates a real role's password end to end,
// in-process: rotate, rollback, and a rotation refused because the
// database's password was changed behind rekey's back. All subtests share
// one cluster.
func TestPostgresRotation(t *testing.T) {
	c := startCluster(t)
	dir := t.TempDir()
	env := map[string]string{"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "REKEY_ACTOR": "pgtest"}
	old := c.SuperPassword
	dotenvPath := filepath.Join(dir, ".env")
	dotenv := "DATABASE_URL=postgres://postgres:" + old + "@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable\n" +
		"DATABASE_PASSWORD=" + old + "\n"
	if err := os.WriteFile(dotenvPath, []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runIn(t, dir, env, "", args...)
	}
	if out, errs, code := run("init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: exit %d\n%s\n%s", code, out, errs)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "rekey.yaml"))
	if !strings.Contains(string(cfg), "url_from: DATABASE_URL") {
		t.Logf("rekey.yaml:\n%s", cfg)
	}
	var outputs []string
	var newPW string

	t.Run("rotate", func(t *testing.T) {
		t0 := time.Now()
		out, errs, code := run("rotate", "DATABASE_PASSWORD")
		took := time.Since(t0)
		outputs = append(outputs, out, errs)
		if code != 0 {
			t.Fatalf("rotate: exit %d\n%s\n%s", code, out, errs)
		}
		t.Logf("rekey rotate DATABASE_PASSWORD took %s", took)
		_, m := readDotenv(t, dotenvPath)
		newPW = m["DATABASE_PASSWORD"]
		if newPW == "" || newPW == old {
			t.Fatalf("DATABASE_PASSWORD not rotated in .env")
		}
		if !strings.Contains(m["DATABASE_URL"], ":"+newPW+"@") && !strings.Contains(m["DATABASE_URL"], newPW) {
			t.Fatalf("DATABASE_URL does not embed the new password")
		}
		wantLogins(t, c, "the rotation", newPW, old, m["DATABASE_URL"])
	})
	if newPW == "" {
		t.FailNow()
	}

	t.Run("rollback", func(t *testing.T) {
		out, errs, code := run("rollback", "DATABASE_PASSWORD")
		outputs = append(outputs, out, errs)
		if code != 0 {
			t.Fatalf("rollback: exit %d\n%s\n%s", code, out, errs)
		}
		_, m := readDotenv(t, dotenvPath)
		if m["DATABASE_PASSWORD"] != old {
			t.Fatal("rollback did not restore the old DATABASE_PASSWORD in .env")
		}
		wantLogins(t, c, "the rollback", old, newPW, m["DATABASE_URL"])
	})

	t.Run("changed-behind-rekeys-back", func(t *testing.T) {
		// Someone changes the password by hand: the stored current is wrong.
		other := "changed-by-hand-" + strings.Repeat("x", 20)
		setSuperPassword(t, c, old, other)
		defer setSuperPassword(t, c, other, old) // give the role the password the store holds again

		before, _ := readDotenv(t, dotenvPath)
		storeBefore, _, code := run("get", "DATABASE_PASSWORD", "-n")
		if code != 0 {
			t.Fatalf("get: exit %d", code)
		}
		out, errs, code := run("rotate", "DATABASE_PASSWORD")
		outputs = append(outputs, out, errs)
		t.Logf("rotate with a wrong stored password: exit %d\n%s", code, errs)
		if code == 0 {
			t.Fatal("rotate succeeded although the stored password is wrong")
		}
		if !strings.Contains(errs, "refuses the stored password") || !strings.Contains(errs, "rekey: hint:") {
			t.Errorf("unclear error:\n%s", errs)
		}
		after, _ := readDotenv(t, dotenvPath)
		if after != before {
			t.Error("the .env changed")
		}
		storeAfter, _, code := run("get", "DATABASE_PASSWORD", "-n")
		if code != 0 || storeAfter != storeBefore {
			t.Error("the store's current value changed")
		}
		if !login(t, c, other) {
			t.Error("the database's password changed")
		}
		if !strings.Contains(errs, "rekey recover") {
			t.Errorf("no hint to run rekey recover:\n%s", errs)
		}
		// The rollback completed: no rotation is left hanging. (A following
		// in-process command cannot check it: Main.Run does not release the
		// lock when a command fails.)
		if strings.Contains(errs, "rollback failed") {
			t.Errorf("the rollback failed:\n%s", errs)
		}
	})

	t.Run("recover-probe", func(t *testing.T) {
		// The database is set back to an older stored password (v2, newPW) by
		// hand: the store's current (old) no longer logs in.
		setSuperPassword(t, c, old, newPW)
		out, errs, code := run("recover", "--probe")
		outputs = append(outputs, out, errs)
		if code != 0 {
			t.Fatalf("recover --probe: exit %d\n%s\n%s", code, out, errs)
		}
		if !strings.Contains(out, "probe: DATABASE_PASSWORD: the database accepts v2, not v3") {
			t.Errorf("recover --probe did not report the repair:\n%s", out)
		}
		cur, _, _ := run("get", "DATABASE_PASSWORD", "-n")
		if cur != newPW {
			t.Error("the store's current is not the password the database accepts")
		}
		_, m := readDotenv(t, dotenvPath)
		if m["DATABASE_PASSWORD"] != newPW || !loginURL(t, m["DATABASE_URL"]) {
			t.Error("the .env was not repaired")
		}
		hist, _, _ := run("history", "DATABASE_PASSWORD")
		if !strings.Contains(hist, "v3") || !strings.Contains(hist, "previous") {
			t.Errorf("history lost the replaced version:\n%s", hist)
		}
		audit, _, _ := run("audit", "--secret", "DATABASE_PASSWORD")
		if !strings.Contains(audit, "recover.probe") {
			t.Errorf("the repair is not audited:\n%s", audit)
		}
		// A second probe finds nothing to repair.
		out, _, code = run("recover", "--probe")
		if code != 0 || !strings.Contains(out, "accepts the current v2") {
			t.Errorf("second probe: exit %d\n%s", code, out)
		}
		// No stored version logs in: a clear error, nothing changed.
		setSuperPassword(t, c, newPW, "nobody-knows-this-one-0123456789")
		out, errs, code = run("recover", "--probe")
		if code != 4 || !strings.Contains(errs, "no stored version of DATABASE_PASSWORD is accepted") || !strings.Contains(errs, "hint:") {
			t.Errorf("probe with no working version: exit %d\n%s\n%s", code, out, errs)
		}
		if cur2, _, _ := run("get", "DATABASE_PASSWORD", "-n"); cur2 != newPW {
			t.Error("a failed probe changed the store")
		}
		// Put the password the store holds back, for the subtests after this one.
		setSuperPassword(t, c, "nobody-knows-this-one-0123456789", newPW)
	})

	t.Run("no-password-in-logs-or-output", func(t *testing.T) {
		log, err := c.ServerLog()
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{old, newPW} {
			for _, f := range forms(pw) {
				if bytes.Contains(log, []byte(f)) {
					t.Errorf("the server log contains a password (form %q...)", f[:4])
				}
				for _, o := range outputs {
					if strings.Contains(o, f) {
						t.Errorf("rekey's output contains a password")
					}
				}
			}
		}
	})
}
