package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestTourDrivesRekey: the tour runs its commands in the project with the
// demo's own XDG folders and no master key from the caller, stops at the
// first failing one, and reports Ctrl-C as ErrInterrupted.
func TestTourDrivesRekey(t *testing.T) {
	dir := t.TempDir()
	var calls [][]string
	var out bytes.Buffer
	o := Options{Dir: dir, Stdout: &out, Stderr: &out, Rekey: func(_ context.Context, d string, env map[string]string, args []string) int {
		if d != filepath.Join(dir, "atlas-backend") || env["XDG_CONFIG_HOME"] != filepath.Join(dir, "config") || env["REKEY_MASTER_KEY"] != "" {
			t.Errorf("rekey %v run in %s with %v", args, d, env)
		}
		calls = append(calls, args)
		if args[0] == "init" {
			_ = os.WriteFile(filepath.Join(d, "rekey.yaml"), nil, 0o644)
		}
		if args[0] == "status" {
			return 8 // overdue: no failure
		}
		return 0
	}}
	if err := Tour(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if len(calls) != len(tourSteps) || calls[0][0] != "init" || strings.Join(calls[len(calls)-1], " ") != "audit verify" {
		t.Errorf("calls: %v", calls)
	}
	for _, f := range []string{".env", "secret-rotation-log.md"} {
		if _, err := os.Stat(filepath.Join(dir, "atlas-backend", f)); err != nil {
			t.Error(err)
		}
	}
	var e *rekey.Error
	if err := Tour(context.Background(), o); !errors.As(err, &e) || e.Code != rekey.CodeConflict {
		t.Errorf("a second tour in the same folder: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	o.Dir = t.TempDir()
	o.Rekey = func(context.Context, string, map[string]string, []string) int { cancel(); return 1 }
	if err := Tour(ctx, o); !errors.Is(err, ErrInterrupted) {
		t.Errorf("interrupted tour: %v", err)
	}
}

func TestFindAppGiven(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "app"), filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := FindApp(context.Background(), Options{App: exe}, dir); err != nil || p != exe {
		t.Errorf("--app %s: %q, %v", exe, p, err)
	}
	for _, bad := range []string{plain, filepath.Join(dir, "missing"), dir} {
		if _, err := FindApp(context.Background(), Options{App: bad}, dir); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("--app %s: %v", bad, err)
		}
	}
}

// TestFindAppBuildsFromSource: a rekey built from this tree builds the
// app from it into the user's cache folder, and says so.
func TestFindAppBuildsFromSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the app")
	}
	if SourceRoot() == "" {
		t.Skip("built with -trimpath: no source tree to build from")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip(err)
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache))) // not below the new XDG_CACHE_HOME: no cold build
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	var errb bytes.Buffer
	p, err := FindApp(context.Background(), Options{Stderr: &errb}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, filepath.Join(cache, "rekey")+string(filepath.Separator)) || filepath.Base(p) != AppName {
		t.Errorf("built into %s", p)
	}
	if !strings.Contains(errb.String(), "go build -o "+p+" ./examples/atlas-app") {
		t.Errorf("stderr: %s", errb.String())
	}
	if out, err := exec.Command(p, "help").CombinedOutput(); err != nil || !strings.Contains(string(out), "atlas-app start") {
		t.Errorf("%s help: %v\n%s", p, err, out)
	}
}

// TestFindAppMissing: with no app and no go toolchain, the error names
// the command that builds it.
func TestFindAppMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := FindApp(context.Background(), Options{}, t.TempDir())
	var e *rekey.Error
	if !errors.As(err, &e) || e.Code != rekey.CodeNotFound || !strings.Contains(e.Hint, "go build -o atlas-app ./examples/atlas-app") {
		t.Errorf("no app anywhere: %#v", err)
	}
}
