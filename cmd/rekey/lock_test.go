package main

// The per-environment lock: a second rekey fails at once while one holds it,
// and a holder that died does not block the next one. Helpers are in
// crash_test.go.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/flock"
)

// ctLockPath is where app.lockEnvName puts the lock of an environment.
func ctLockPath(p *ctProject, env string) string {
	return filepath.Join(p.dir, ".rekey", "lock-"+env)
}

// TestSecondInvocationFailsAtOnce holds the environment lock in the test
// process: every command that needs it exits 4 within a second, naming the
// holder, and changes nothing; once released, the rotation goes through.
func TestSecondInvocationFailsAtOnce(t *testing.T) {
	p := ctNewProject(t)
	oldVal := p.get(0)
	before := p.readEnv()

	l, err := flock.Acquire(ctLockPath(p, "production"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()

	for _, args := range [][]string{{"rotate", "JWT_SECRET"}, {"recover"}, {"rollback", "JWT_SECRET"}, {"publish", "JWT_SECRET"}} {
		r := p.run(args...)
		if r.code != 4 {
			t.Fatalf("want exit 4 while another rekey holds the lock, got %v", r)
		}
		if r.dur > time.Second {
			t.Errorf("rekey %s waited %v for the lock: it must fail at once", args[0], r.dur)
		}
		if !strings.Contains(r.stderr, "another rekey") || !strings.Contains(r.stderr, fmt.Sprintf("pid %d", os.Getpid())) {
			t.Errorf("the error should say another rekey (pid %d) holds the lock: %v", os.Getpid(), r)
		}
	}
	// Nothing happened: no new version, the .env as it was.
	if rows := p.history(); len(rows) != 1 {
		t.Fatalf("a locked-out rotate created a version: %+v", rows)
	}
	if !bytes.Equal(p.readEnv(), before) {
		t.Fatalf("a locked-out rotate changed the .env")
	}
	// Reading needs no lock.
	if got := p.get(0); got != oldVal {
		t.Fatalf("get while locked: wrong value")
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	p.must("rotate", "JWT_SECRET")
	if s := p.consistent(map[int]string{1: oldVal}); s.cur != 2 {
		t.Fatalf("want v2 current after the lock was released, got %+v", s.rows)
	}
}

// TestDeadHolderDoesNotBlock: a rekey killed while holding the lock (in the
// middle of a rotation) leaves its pid in the lock file, but the kernel
// released the lock: the next command proceeds at once and completes the
// interrupted rotation.
func TestDeadHolderDoesNotBlock(t *testing.T) {
	for _, next := range []string{"rotate", "recover"} {
		t.Run(next, func(t *testing.T) {
			t.Parallel()
			p := ctNewProject(t)
			oldVal := p.get(0)
			dead := p.crash("publish:after", "rotate", "JWT_SECRET")
			holder, err := os.ReadFile(ctLockPath(p, "production"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(holder), fmt.Sprintf("pid %d ", dead.pid)) {
				t.Fatalf("the lock file should still name the dead holder (pid %d): %q", dead.pid, holder)
			}
			pubVal := p.envJWT()

			var r ctResult
			if next == "rotate" {
				r = p.run("rotate", "JWT_SECRET")
				if r.code != 0 || !strings.Contains(r.stderr, "completed interrupted rotation") {
					t.Fatalf("rotate after a dead holder should complete its rotation, then rotate: %v", r)
				}
			} else {
				r = p.run("recover")
				if r.code != 0 || !strings.Contains(r.stdout, "completed rotation") {
					t.Fatalf("recover after a dead holder should complete its rotation: %v", r)
				}
			}
			if r.dur > 5*time.Second {
				t.Errorf("rekey %s took %v after a dead holder", next, r.dur)
			}
			s := p.consistent(map[int]string{1: oldVal, 2: pubVal})
			want := 2
			if next == "rotate" {
				want = 3
			}
			if s.cur != want {
				t.Fatalf("want v%d current, got %+v", want, s.rows)
			}
			// A released lock names no holder.
			if holder, _ := os.ReadFile(ctLockPath(p, "production")); len(holder) != 0 {
				t.Errorf("the lock file still names a holder after a clean exit: %q", holder)
			}
		})
	}
}
