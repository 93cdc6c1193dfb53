package sshhost_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sshhost"
	"github.com/rekeyhq/rekey/internal/sshtest"
)

const envText = "# the app's settings\nRUST_LOG=info\nJWT_SECRET=old-secret-value-1234   # rotated by rekey\nOLD_KEY=x\n\nPORT=8080\n"

func newEnv(t *testing.T, s *sshtest.Server, mode os.FileMode) string {
	t.Helper()
	return s.WriteFile(t, ".env", envText, mode)
}

// TestTargetReadWrite: a remote .env is read and written over SSH with
// the local target's guarantees: every other byte kept, the mode kept less
// the bits of others, no temporary file left.
func TestTargetReadWrite(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, "web1")
	p := newEnv(t, s, 0o644)
	tg := sshhost.NewTarget("web1", host(s), p)
	got, err := tg.Read(t.Context(), []string{"JWT_SECRET", "NOPE"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["JWT_SECRET"].RevealString() != "old-secret-value-1234" {
		t.Fatalf("Read: %v", got)
	}
	if err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("new secret value with spaces")}, []string{"OLD_KEY"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := "# the app's settings\nRUST_LOG=info\nJWT_SECRET='new secret value with spaces'   # rotated by rekey\n\nPORT=8080\n"
	if string(raw) != want {
		t.Errorf("after Write:\n%q\nwant\n%q", raw, want)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %04o, want 0640 (others' bits dropped, owner's and group's kept)", fi.Mode().Perm())
	}
	if got, err := tg.Read(t.Context(), []string{"JWT_SECRET"}); err != nil || got["JWT_SECRET"].RevealString() != "new secret value with spaces" {
		t.Errorf("read back: %v %v", got, err)
	}
	noTemps(t, s.Home)
	// Unchanged values: nothing is written (the file's time stays).
	before, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	if err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("new secret value with spaces")}, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(p); !after.ModTime().Equal(before.ModTime()) {
		t.Error("an unchanged value rewrote the file")
	}
	// A missing file and a malformed one are clear errors.
	missing := sshhost.NewTarget("web1", host(s), filepath.Join(s.Home, "nope.env"))
	if _, err := missing.Read(t.Context(), []string{"A"}); rekey.ErrorCode(err) != rekey.CodeNotFound || !strings.Contains(err.Error(), "nope.env) does not exist") {
		t.Errorf("missing file: %v", err)
	}
	s.WriteFile(t, ".env", "GOOD=1\nBAD LINE\n", 0o600)
	if _, err := tg.Read(t.Context(), []string{"GOOD"}); rekey.ErrorCode(err) != rekey.CodeInvalid || !strings.Contains(err.Error(), ":2") {
		t.Errorf("malformed file: %v", err)
	}
}

// TestTargetDriftNotOverwritten: a hand edit on the host between rekey's
// read and its write is refused as drift; the person's file stays.
func TestTargetDriftNotOverwritten(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, "web1")
	p := newEnv(t, s, 0o600)
	tg := sshhost.NewTarget("web1", host(s), p)
	edited := envText + "ADDED_BY_HAND=1\n"
	err := sshhost.WriteAfterRead(t.Context(), tg, map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("new")}, func() {
		s.WriteFile(t, ".env", edited, 0o600)
	})
	if !errors.Is(err, sshhost.ErrChanged) || rekey.ErrorCode(err) != rekey.CodeConflict || !strings.Contains(err.Error(), "not overwritten") {
		t.Fatalf("Write after a hand edit: %v", err)
	}
	if raw, _ := os.ReadFile(p); string(raw) != edited {
		t.Errorf("the hand-edited file was changed:\n%s", raw)
	}
	noTemps(t, s.Home)
}

// TestHostKeyRefused: an unknown host key and a changed one are refused,
// each with its own message; an unreachable host is named.
func TestHostKeyRefused(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, "web1")
	p := newEnv(t, s, 0o600)
	tg := sshhost.NewTarget("web1", host(s), p)
	s.Forget(t)
	if _, err := tg.Read(t.Context(), []string{"JWT_SECRET"}); !errors.Is(err, sshhost.ErrHostKey) || rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "not in known_hosts") {
		t.Errorf("unknown host key: %v", err)
	}
	if raw, _ := os.ReadFile(s.KnownHosts); len(raw) != 0 {
		t.Errorf("the unknown key was recorded: %s", raw)
	}
	s.Impersonate(t)
	if _, err := tg.Read(t.Context(), []string{"JWT_SECRET"}); !errors.Is(err, sshhost.ErrHostKey) || !strings.Contains(err.Error(), "CHANGED") {
		t.Errorf("changed host key: %v", err)
	}
	h := host(s)
	h.Name, h.Dest = "gone", s.User+"@127.0.0.1:1"
	if _, err := sshhost.NewTarget("gone", h, p).Read(t.Context(), []string{"A"}); !errors.Is(err, sshhost.ErrUnreachable) || !strings.Contains(err.Error(), "host gone") {
		t.Errorf("unreachable host: %v", err)
	}
}

// TestNoValueInAnyCommandLine: while values are written to the host, no
// process on the machine (ssh here, sshd and the shell on the "host")
// shows one in its command line.
func TestNoValueInAnyCommandLine(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, "web1")
	p := newEnv(t, s, 0o600)
	tg := sshhost.NewTarget("web1", host(s), p)
	var seen atomic.Int64
	var leaked atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				if err != nil || len(b) == 0 {
					continue
				}
				seen.Add(1)
				if strings.Contains(string(b), "canary-value-") {
					leaked.Store(strings.ReplaceAll(string(b), "\x00", " "))
				}
			}
		}
	}()
	for i := range 5 {
		v := rekey.NewValueString("canary-value-" + strings.Repeat("x", i+8))
		if err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": v}, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if l := leaked.Load(); l != nil {
		t.Fatalf("a value in a command line: %s", l)
	}
	if seen.Load() == 0 {
		t.Fatal("no command line read from /proc")
	}
}

// TestRemoveStaleTemps: what an interrupted write left beside the file
// ("."+base+".rekey-"+16 hex digits+".tmp", the local target's names) is
// removed; nothing else is.
func TestRemoveStaleTemps(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, "web1")
	p := newEnv(t, s, 0o600)
	for _, n := range []string{"..env.rekey-0123456789abcdef.tmp", "..env.rekey-short.tmp", ".other.rekey-0123456789abcdef.tmp"} {
		s.WriteFile(t, n, "JWT_SECRET=new\n", 0o600)
	}
	got, err := sshhost.NewTarget("web1", host(s), p).RemoveStaleTemps(t.Context())
	if err != nil || len(got) != 1 || got[0] != "..env.rekey-0123456789abcdef.tmp" {
		t.Fatalf("RemoveStaleTemps = %v, %v", got, err)
	}
	for _, n := range []string{"..env.rekey-short.tmp", ".other.rekey-0123456789abcdef.tmp"} {
		if _, err := os.Stat(filepath.Join(s.Home, n)); err != nil {
			t.Errorf("%s removed", n)
		}
	}
}

// noTemps fails if a write's temporary file is left in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".rekey-") {
			t.Errorf("temporary file left on the host: %s", e.Name())
		}
	}
}

// TestDestinations: destinations that could be read as options or shell
// are refused before ssh runs.
func TestDestinations(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"", "-oProxyCommand=x", "a b", "web;rm", "u@h:0", "u@h:99999", "h:x"} {
		h := &sshhost.Host{Name: "x", Dest: d}
		if _, err := h.Run(t.Context(), "true", nil); rekey.ErrorCode(err) != rekey.CodeInvalid {
			t.Errorf("%q: %v, want invalid", d, err)
		}
	}
}

// host is s as rekey reaches it, through its client config.
func host(s *sshtest.Server) *sshhost.Host {
	return &sshhost.Host{Name: s.Name, Dest: s.Dest(), ConfigFile: s.ClientConfig, Timeout: 30 * time.Second}
}
