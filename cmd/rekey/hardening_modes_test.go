package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// hdStat returns the mode, uid and gid of path.
func hdStat(t *testing.T, path string) (os.FileMode, int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

// hdDaemonGID is the id of group daemon; the test is skipped unless it runs
// as root (to do what says) on a system with that group.
func hdDaemonGID(t *testing.T, what string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.SkipOrFail(t, "needs root to %s", what)
	}
	grp, err := user.LookupGroup("daemon")
	if err != nil {
		testkit.SkipOrFail(t, "no group daemon: %v", err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	return gid
}

// TestHardenRotationKeepsFileMode: item 14. A .env that a service reads
// through its group (0640 root:daemon) keeps its owner, group and group bits
// after a rotation; the others' bits go; rekey warns that the group can read
// it; doctor names who can read each secret file.
func TestHardenRotationKeepsFileMode(t *testing.T) {
	gid := hdDaemonGID(t, "give the .env to another group")
	for _, c := range []struct {
		mode, want os.FileMode
		warn       string
	}{
		{0o640, 0o640, "readable by group daemon"},
		{0o660, 0o660, "readable by group daemon"},
		{0o644, 0o640, "readable by group daemon"},
		{0o604, 0o600, ""},
		{0o600, 0o600, ""},
		{0o400, 0o400, ""},
	} {
		t.Run(fmt.Sprintf("%04o", c.mode), func(t *testing.T) {
			dir := t.TempDir()
			env := hdEnv(t)
			env["GIT_CEILING_DIRECTORIES"] = dir
			p := filepath.Join(dir, ".env")
			if err := os.WriteFile(p, []byte("JWT_SECRET="+hdJWT+"\nPORT=8080\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env"); code != 0 {
				t.Fatalf("init: exit %d\n%s%s", code, out, errs)
			}
			if err := os.Chown(p, 0, gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, c.mode); err != nil {
				t.Fatal(err)
			}
			out, errs, code := runIn(t, dir, env, "", "rotate", "JWT_SECRET")
			if code != 0 {
				t.Fatalf("rotate: exit %d\n%s%s", code, out, errs)
			}
			mode, uid, g := hdStat(t, p)
			if mode != c.want || uid != 0 || g != gid {
				t.Errorf(".env after the rotation: %04o %d:%d, want %04o 0:%d", mode, uid, g, c.want, gid)
			}
			if c.warn != "" && !strings.Contains(errs, "rekey: warning: .env is "+c.warn) {
				t.Errorf("no warning that the group can read .env:\n%s", errs)
			}
			if c.warn == "" && strings.Contains(errs, "readable by group") {
				t.Errorf("a warning about the group of a %04o .env:\n%s", c.want, errs)
			}
			if c.mode == 0o640 {
				// doctor says who can read each secret file.
				fm := hdDoctor(t, dir, env)["file-modes"]
				if fm.Status != checkWarn || !strings.Contains(fm.Detail, ".env (0640 root:daemon): root, group daemon") {
					t.Errorf("doctor file-modes: %s %s", fm.Status, fm.Detail)
				}
			}
		})
	}
}

// TestHardenRotationNotRootNeverWidens: item 14, when rekey runs as a user
// who cannot give the new .env the old group (nobody, not in daemon): the
// file becomes nobody's with nobody's group, so the old group bits must go
// too, or the rotation would let nobody's group read it.
func TestHardenRotationNotRootNeverWidens(t *testing.T) {
	daemon := hdDaemonGID(t, "run rekey as another user")
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testkit.SkipOrFail(t, "setpriv is not installed: %v", err)
	}
	const nobody = 65534
	// A folder every user can reach (t.TempDir's parents are 0700).
	base, err := os.MkdirTemp("", "rekey-hardening-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	bin := filepath.Join(base, "rekey")
	data, err := os.ReadFile(ctRekeyBin(t))
	if err != nil {
		t.Fatal(err)
	}
	proj, home := filepath.Join(base, "proj"), filepath.Join(base, "home")
	for _, d := range []string{proj, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(proj, ".env")
	if err := os.WriteFile(env, []byte("JWT_SECRET="+hdJWT+"\nPORT=8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(env, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		c := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		c.Dir = proj
		c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "XDG_CONFIG_HOME=" + home, "REKEY_MASTER_KEY=" + testMasterKey, "REKEY_ACTOR=nobody"}
		out, err := c.CombinedOutput()
		return string(out), err
	}
	if out, err := run("init", "--env-file", ".env"); err != nil {
		t.Fatalf("init as nobody: %v\n%s", err, out)
	}
	// The .env now belongs to group daemon, which nobody is not in.
	if err := os.Chown(env, nobody, daemon); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(env, 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := run("rotate", "JWT_SECRET")
	if err != nil {
		t.Fatalf("rotate as nobody: %v\n%s", err, out)
	}
	mode, uid, gid := hdStat(t, env)
	if gid == daemon {
		t.Logf("the kernel let nobody keep group daemon (%04o)", mode)
	} else if mode&0o077 != 0 {
		t.Errorf(".env after the rotation: %04o %d:%d: group %d, which could not read it before, now can", mode, uid, gid, gid)
	}
	if gid != daemon && !strings.Contains(out, "rekey: warning: .env belonged to nobody:daemon") {
		t.Errorf("no warning that the group could not be kept:\n%s", out)
	}
}
