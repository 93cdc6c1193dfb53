//go:build linux

package sqlite_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// smallFS mounts a 200 KB tmpfs for the test and unmounts it at the end.
func smallFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.SkipOrFail(t, "mounting a small tmpfs needs root (euid %d)", os.Geteuid())
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=200k,mode=0700"); err != nil {
		testkit.SkipOrFail(t, "cannot mount a tmpfs on %s: %v", dir, err)
	}
	// Registered after t.TempDir's removal, so it runs before it; stores
	// opened later are closed before it.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("the 200 KB file system never filled up")
		}
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// Smaller writes take whatever is left.
	for _, n := range []int{1024, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return path
}

func TestDiskFull(t *testing.T) {
	mnt := smallFS(t)
	path := filepath.Join(mnt, ".rekey", "store.db")
	key := newKey(t)
	s := create(t, path, key)
	fx := []fixture{
		{"prod", "A", 1, []byte("a1")},
		{"prod", "A", 2, []byte("a2")},
		{"prod", "B", 1, bytes.Repeat([]byte("b"), 3000)},
		{"staging", "A", 1, []byte("sa1")},
	}
	fill(t, s, fx)
	filler := fillDisk(t, mnt)

	big := make([]byte, 64*1024)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	err := s.Update(t.Context(), func(tx rekey.Tx) error {
		if err := tx.SetLabel("prod", "A", 1, rekey.LabelPrevious); err != nil {
			return err
		}
		for _, name := range []string{"A", "C"} {
			v, err := tx.AddVersion("prod", name, rekey.NewVersion{Value: rekey.NewValue(big), Label: rekey.LabelCurrent, Source: rekey.SourceGenerated})
			if err != nil {
				return err
			}
			if _, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "add", Env: "prod", Secret: name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		t.Fatal("an Update on a full disk succeeded")
	}
	t.Logf("Update on a full disk: %v (hint: %s)", err, rekey.ErrorHint(err))
	if errors.Is(err, rekey.ErrCorrupt) {
		t.Errorf("a full disk is reported as a damaged store: %v", err)
	}

	// The failed Update left nothing, seen from the same handle...
	checkAfter := func(s *sqlite.DB, when string) {
		t.Helper()
		checkFixture(t, s, fx)
		err := s.View(t.Context(), func(tx rekey.Tx) error {
			vs, err := tx.Versions("prod", "A")
			if err != nil {
				return err
			}
			if len(vs) != 2 || vs[1].Label != rekey.LabelCurrent || vs[0].Label != rekey.LabelNone {
				t.Errorf("%s: prod/A has %d versions (labels changed?), want the 2 stored before", when, len(vs))
			}
			if _, err := tx.Versions("prod", "C"); !errors.Is(err, rekey.ErrNotFound) {
				t.Errorf("%s: prod/C exists after the failed Update: %v", when, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if n, err := s.VerifyAudit(t.Context()); err != nil || n != len(fx) {
			t.Errorf("%s: VerifyAudit = %d, %v; want %d, nil", when, n, err, len(fx))
		}
		if err := s.IntegrityCheck(t.Context()); err != nil {
			t.Errorf("%s: IntegrityCheck: %v", when, err)
		}
	}
	checkAfter(s, "same handle, disk full")
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a failed Update: %v", err)
	}

	// ... from a new one while the disk is still full ...
	s2, err := sqlite.Open(t.Context(), path, key)
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	checkAfter(s2, "reopened, disk full")
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// ... and once space is back, when writing works again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s3 := open(t, path, key)
	checkAfter(s3, "reopened, space freed")
	// A small value: a WAL store needs room for the frames and the checkpoint.
	more := append(fx, fixture{"prod", "A", 3, big[:1000]})
	fill(t, s3, more[len(fx):])
	checkFixture(t, s3, more)
	if n, err := s3.VerifyAudit(t.Context()); err != nil || n != len(more) {
		t.Errorf("VerifyAudit after a successful Update = %d, %v", n, err)
	}
	// With space back, a clean close leaves the store file alone (a
	// journal, or a WAL kept by the close on the full disk, is gone).
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	if sib := siblings(t, path); len(sib) != 0 {
		t.Errorf("%q left next to the closed store", sib)
	}
}

// TestCreateOnFullDisk: Create that cannot write its schema fails and leaves
// no file behind.
func TestCreateOnFullDisk(t *testing.T) {
	mnt := smallFS(t)
	fillDisk(t, mnt)
	path := filepath.Join(mnt, "store.db")
	s, err := sqlite.Create(t.Context(), path, newKey(t), "")
	if err == nil {
		s.Close()
		t.Fatal("Create on a full disk succeeded")
	}
	t.Logf("Create on a full disk: %v", err)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Create left %s behind: %v", path, err)
	}
	if sib := siblings(t, path); len(sib) != 0 {
		t.Errorf("a failed Create left %q behind", sib)
	}
}
