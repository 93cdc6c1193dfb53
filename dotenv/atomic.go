package dotenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/rekeyhq/rekey/internal/fileperm"
)

// Hooks replaced by tests to inject failures.
var (
	rename  = os.Rename
	fchown  = func(f *os.File, uid, gid int) error { return f.Chown(uid, gid) }
	geteuid = os.Geteuid
	dirSync = syncDir
)

// WriteFileAtomic replaces the file at path with data so that a reader sees
// either the old or the new contents, never a mix, and a crash leaves one of
// the two. It writes a temporary file in the same directory (created with
// O_EXCL under a random name, mode perm), syncs it, gives it the owner and
// group of the existing target (a chown that fails with EPERM is ignored
// only when not running as root), renames it over the target and syncs the
// directory.
//
// If path is a symbolic link, the file it points to is replaced and the link
// is kept. The resulting file has exactly mode perm, whatever the umask and
// the old mode; callers writing secrets pass 0600. A target that exists but
// is not a regular file is refused.
//
// On any error before the rename, the temporary file is removed and the
// target is untouched. An error from syncing the directory after the rename
// means the new contents are in place but may not survive a crash.
// Errors name paths, never data.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	target := path
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, err = filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("resolve symlink: %w", err)
		}
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}

	uid, gid := -1, -1
	fi, err := os.Stat(target)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", target)
		}
		uid, gid = fileperm.IDs(fi)
	case errors.Is(err, fs.ErrNotExist):
	default:
		return err
	}

	f, tmp, err := createTemp(dir, base, perm)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	if uid >= 0 {
		if cerr := fchown(f, uid, gid); cerr != nil && !(errors.Is(cerr, syscall.EPERM) && geteuid() != 0) {
			return fmt.Errorf("keep owner of %s: %w", target, cerr)
		}
	}
	// Explicit chmod: the umask applied at creation, and a chown may clear
	// mode bits.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = rename(tmp, target); err != nil {
		return err
	}
	renamed = true // from here on, tmp names the target: never remove it
	if err = dirSync(dir); err != nil {
		return fmt.Errorf("file replaced, but directory not synced: %w", err)
	}
	return nil
}

// createTemp creates a new file next to the target with O_EXCL and a random
// name.
func createTemp(dir, base string, perm os.FileMode) (*os.File, string, error) {
	var b [8]byte
	for range 100 {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", err
		}
		name := filepath.Join(dir, "."+base+".rekey-"+hex.EncodeToString(b[:])+".tmp")
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", fmt.Errorf("create temp file: %w", err)
		}
	}
	return nil, "", fmt.Errorf("create temp file in %s: too many name collisions", dir)
}
