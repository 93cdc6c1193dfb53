package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
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

// TestHardenRotationKeepsFileMode: item 14. A .env that a service reads
// through its group (0640 root:daemon) keeps its owner, group and group bits
// after a rotation; the others' bits go; rekey warns that the group can read
// it; doctor names who can read each secret file.
func TestHardenRotationKeepsFileMode(t *testing.T) {
	if os.Geteuid() != 0 {
		ctSkipOrFail(t, "needs root to give the .env to another group")
	}
	grp, err := user.LookupGroup("daemon")
	if err != nil {
		ctSkipOrFail(t, "no group daemon: %v", err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
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
