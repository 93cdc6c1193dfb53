//go:build unix

package dotenv

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// dirNames lists the names in dir, to check that no temp file is left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func checkFile(t *testing.T, path, want string, perm fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("contents: %s", testkit.BytesDiff(got, []byte(want)))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != perm {
		t.Errorf("mode = %v, want %v", fi.Mode(), perm)
	}
}

// writeAtomicAlone writes data to dir/.env (0600) with WriteFileAtomic and
// checks the file, and that nothing else is left in dir.
func writeAtomicAlone(t *testing.T, dir, data string) {
	t.Helper()
	path := filepath.Join(dir, ".env")
	if err := WriteFileAtomic(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data, 0o600)
	if diff := cmp.Diff([]string{".env"}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

// setHook replaces a package hook for the duration of the test.
func setHook[T any](t *testing.T, hook *T, v T) {
	old := *hook
	*hook = v
	t.Cleanup(func() { *hook = old })
}

func TestWriteFileAtomicCreates(t *testing.T) {
	writeAtomicAlone(t, t.TempDir(), "A=1\n")
}

func TestWriteFileAtomicModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), ".env")
	if err := WriteFileAtomic(path, []byte("A=1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "A=1\n", 0o640)
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("A=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	writeAtomicAlone(t, dir, "A=new\n")
}

func TestWriteFileAtomicKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.SkipOrFail(t, "changing a file's owner needs root")
	}
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("A=old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 4242, 4343
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("A=new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	checkFile(t, path, "A=new\n", 0o600)
}

func TestWriteFileAtomicFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.env")
	link := filepath.Join(dir, ".env")
	if err := os.WriteFile(real, []byte("A=old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.env", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, []byte("A=new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("symlink replaced (err %v)", err)
	}
	checkFile(t, real, "A=new\n", 0o600)
	if diff := cmp.Diff([]string{".env", "real.env"}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

func TestWriteFileAtomicRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("A=1\n"), 0o600); err == nil {
		t.Fatal("replaced a directory")
	}
	if diff := cmp.Diff([]string{".env"}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", ".env")
	if err := WriteFileAtomic(path, []byte("A=1\n"), 0o600); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}

// checkUntouched checks that WriteFileAtomic failed and left the target
// made by oldTarget, and its directory, as they were: no temp file remains.
func checkUntouched(t *testing.T, dir, path string, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("WriteFileAtomic succeeded")
	}
	checkFile(t, path, "A=old\n", 0o644)
	if diff := cmp.Diff([]string{filepath.Base(path)}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

func oldTarget(t *testing.T) (dir, path string) {
	dir = t.TempDir()
	path = filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("A=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestWriteFileAtomicRenameFails(t *testing.T) {
	dir, path := oldTarget(t)
	setHook(t, &rename, func(string, string) error {
		return &os.LinkError{Op: "rename", Err: syscall.EXDEV}
	})
	err := WriteFileAtomic(path, []byte("A=new\n"), 0o600)
	checkUntouched(t, dir, path, err)
	if !errors.Is(err, syscall.EXDEV) {
		t.Errorf("error %v does not wrap the rename error", err)
	}
}

func TestWriteFileAtomicChownEPERM(t *testing.T) {
	eperm := func(*os.File, int, int) error { return &os.PathError{Op: "chown", Err: syscall.EPERM} }

	t.Run("ignored when not root", func(t *testing.T) {
		_, path := oldTarget(t)
		setHook(t, &fchown, eperm)
		setHook(t, &geteuid, func() int { return 1000 })
		if err := WriteFileAtomic(path, []byte("A=new\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, "A=new\n", 0o600)
	})

	t.Run("error as root", func(t *testing.T) {
		dir, path := oldTarget(t)
		setHook(t, &fchown, eperm)
		setHook(t, &geteuid, func() int { return 0 })
		checkUntouched(t, dir, path, WriteFileAtomic(path, []byte("A=new\n"), 0o600))
	})

	t.Run("other errors always", func(t *testing.T) {
		dir, path := oldTarget(t)
		setHook(t, &fchown, func(*os.File, int, int) error { return syscall.EIO })
		setHook(t, &geteuid, func() int { return 1000 })
		checkUntouched(t, dir, path, WriteFileAtomic(path, []byte("A=new\n"), 0o600))
	})
}

func TestWriteFileAtomicDirSyncFails(t *testing.T) {
	dir, path := oldTarget(t)
	setHook(t, &dirSync, func(string) error { return syscall.EIO })
	err := WriteFileAtomic(path, []byte("A=new\n"), 0o600)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("error = %v, want EIO", err)
	}
	// The rename happened: the new contents are in place, nothing is left
	// behind.
	checkFile(t, path, "A=new\n", 0o600)
	if diff := cmp.Diff([]string{".env"}, dirNames(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}
