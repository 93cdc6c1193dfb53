package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey"
)

func wantUnsafe(t *testing.T, err error, path, problem string) {
	t.Helper()
	var re *rekey.Error
	if !errors.As(err, &re) || re.Code != rekey.CodeUnsafe {
		t.Fatalf("want a CodeUnsafe refusal, got %v", err)
	}
	if !strings.Contains(re.Msg, path) || !strings.Contains(re.Msg, problem) || re.Hint == "" {
		t.Fatalf("the refusal should name %s and say %q, with a hint: %+v", path, problem, re)
	}
}

// TestOpenFile: a regular file of the user's (new or existing) opens; a
// symbolic link, a hard link, a FIFO, a directory and (as root) another
// user's file are refused, and the file a link points to is not touched.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "lock")
	for i := 0; i < 2; i++ { // created, then existing
		f, err := OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600, "")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	sym := filepath.Join(dir, "sym")
	if err := os.Symlink(victim, sym); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile(sym, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600, "")
	wantUnsafe(t, err, sym, "symbolic link")

	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile(dangling, os.O_RDWR|os.O_CREATE, 0o600, "")
	wantUnsafe(t, err, dangling, "symbolic link")
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a dangling link's target was created")
	}

	hard := filepath.Join(dir, "hard")
	if err := os.Link(victim, hard); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile(hard, os.O_RDWR, 0, "")
	wantUnsafe(t, err, hard, "2 hard links")
	if err := Check(hard, ""); err == nil {
		t.Fatal("Check accepted a hard link")
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile(fifo, os.O_RDWR|os.O_CREATE, 0o600, "")
	wantUnsafe(t, err, fifo, "named pipe")

	_, err = OpenFile(dir, os.O_RDONLY, 0, "")
	wantUnsafe(t, err, dir, "directory")

	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Fatalf("the victim changed: %q", b)
	}

	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other")
		if err := os.WriteFile(other, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err = OpenFile(other, os.O_RDWR, 0, "")
		wantUnsafe(t, err, other, "owned by uid 65534")
		wantUnsafe(t, Check(other, ""), other, "owned by uid 65534")
	}
}

// TestCheckStore: missing journals are fine; a symbolic link at any of
// them is refused with the journal hint.
func TestCheckStore(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rekey.db")
	if err := CheckStore(db); err != nil {
		t.Fatalf("no store yet: %v", err)
	}
	if err := os.WriteFile(db, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckStore(db); err != nil {
		t.Fatalf("a plain store: %v", err)
	}
	for _, s := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Symlink(filepath.Join(dir, "elsewhere"), db+s); err != nil {
			t.Fatal(err)
		}
		err := CheckStore(db)
		wantUnsafe(t, err, db+s, "symbolic link")
		if rekey.ErrorHint(err) != JournalHint {
			t.Fatalf("hint: %q", rekey.ErrorHint(err))
		}
		os.Remove(db + s)
	}
}
