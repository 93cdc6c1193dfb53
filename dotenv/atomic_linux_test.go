package dotenv

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// tmpfsDir mounts a small tmpfs on a new temporary directory (root only)
// and unmounts it when the test ends.
func tmpfsDir(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		testkit.SkipOrFail(t, "mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestWriteFileAtomicReadOnlyDir(t *testing.T) {
	var dir string
	if os.Geteuid() == 0 {
		// Root ignores directory permissions: use a read-only mount.
		dir = tmpfsDir(t, "64k")
	} else {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("A=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			testkit.SkipOrFail(t, "remount read-only: %v", err)
		}
	} else {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	err := WriteFileAtomic(path, []byte("A=new\n"), 0o600)
	checkUntouched(t, dir, path, err)
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("error %v is not about the read-only directory", err)
	}
}

func TestWriteFileAtomicDiskFull(t *testing.T) {
	dir := tmpfsDir(t, "64k")
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("A=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("B=0123456789abcdef\n"), 256<<10/19)
	err := WriteFileAtomic(path, big, 0o600)
	checkUntouched(t, dir, path, err)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %v is not ENOSPC", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil && st.Bfree*uint64(st.Bsize) < 32<<10 {
		t.Errorf("only %d bytes free after the failed write: space of the temp file not released", st.Bfree*uint64(st.Bsize))
	}
}
