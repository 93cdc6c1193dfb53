package main

// Files rekey writes under .rekey/ (the environment locks, the store and
// SQLite's journals) are never followed through a symbolic link or a hard
// link, nor used when another user owns them: rekey refuses (exit 5) and
// names the file, and the file the link points to is untouched. Helpers are
// in crash_test.go.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ctVictim is a file outside the project that an attacker points a link at.
func ctVictim(t *testing.T) (path string, content []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "victim")
	content = []byte("the victim's own content\n")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, content
}

// ctRefused checks that r was refused as unsafe, naming file, with a hint,
// and that nothing changed: the victim holds its content, the store no new
// version, the .env its bytes.
func ctRefused(t *testing.T, p *ctProject, r ctResult, file, victim string, content, env []byte) {
	t.Helper()
	if got, err := os.ReadFile(victim); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("%s (the file the link points to) was changed or removed: %d bytes, was %d (%v); %v", victim, len(got), len(content), err, r)
	}
	if r.code != 5 {
		t.Fatalf("want exit 5 (unsafe), got %v", r)
	}
	if !strings.Contains(r.stderr, "rekey: error: ") || !strings.Contains(r.stderr, file) || !strings.Contains(r.stderr, "rekey: hint: ") {
		t.Fatalf("the error should name %s and give a hint: %v", file, r)
	}
	if !bytes.Equal(p.readEnv(), env) {
		t.Fatalf("a refused rotate changed the .env")
	}
}

// TestLockSymlinkRefused plants .rekey/lock-production as a symbolic link
// to a file of the user's (and then as a hard link to it): a rotate refuses
// instead of truncating it and writing its pid there.
func TestLockSymlinkRefused(t *testing.T) {
	for _, how := range []string{"symlink", "hardlink"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			p := ctNewProject(t)
			victim, content := ctVictim(t)
			lock := ctLockPath(p, "production")
			var err error
			if how == "symlink" {
				err = os.Symlink(victim, lock)
			} else {
				err = os.Link(victim, lock)
			}
			if err != nil {
				t.Fatal(err)
			}
			env := p.readEnv()
			r := p.run("rotate", "JWT_SECRET")
			ctRefused(t, p, r, "lock-production", victim, content, env)
			if !strings.Contains(r.stderr, "remove it; rekey creates it again") {
				t.Errorf("the hint should say to remove the lock: %v", r)
			}
			// Once removed, rekey creates its own lock and rotates.
			if err := os.Remove(lock); err != nil {
				t.Fatal(err)
			}
			p.must("rotate", "JWT_SECRET")
			if rows := p.history(); len(rows) != 2 {
				t.Fatalf("want v2 after the link was removed: %+v", rows)
			}
			if fi, err := os.Lstat(lock); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("rekey should have created its own lock file: %v %v", fi, err)
			}
		})
	}
}

// TestStoreJournalSymlinkRefused plants SQLite's journals beside the store
// (rekey.db-wal, -shm, -journal) as symbolic links to a file of the user's,
// the store itself as a link to the real store, and a journal owned by
// another user (as root): every command that opens the store refuses.
func TestStoreJournalSymlinkRefused(t *testing.T) {
	for _, suffix := range []string{"-wal", "-shm", "-journal", "", "-wal owned by nobody"} {
		name := strings.TrimPrefix(suffix, "-")
		if name == "" {
			name = "store"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := ctNewProject(t)
			victim, content := ctVictim(t)
			db := filepath.Join(p.dir, ".rekey", "rekey.db")
			file := "rekey.db" + suffix
			switch suffix {
			case "":
				// The store moved elsewhere, a link left in its place.
				if err := os.Rename(db, victim); err != nil {
					t.Fatal(err)
				}
				content, _ = os.ReadFile(victim)
				if err := os.Symlink(victim, db); err != nil {
					t.Fatal(err)
				}
			case "-wal owned by nobody":
				if os.Geteuid() != 0 {
					t.Skip("needs root to give a file to another user")
				}
				file = "rekey.db-wal"
				victim = db + "-wal"
				content = nil
				if err := os.WriteFile(victim, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(victim, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.Symlink(victim, db+suffix); err != nil {
					t.Fatal(err)
				}
			}
			env := p.readEnv()
			for _, args := range [][]string{{"rotate", "JWT_SECRET"}, {"status"}, {"audit"}} {
				r := p.run(args...)
				ctRefused(t, p, r, file, victim, content, env)
			}
		})
	}
}
