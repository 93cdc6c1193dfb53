// Package safefile opens and checks the files rekey writes under .rekey/ —
// the environment locks, the store and the journals SQLite keeps beside it —
// so that a symbolic link, a hard link, a device or a file someone else
// planted there is refused instead of followed (and truncated or written
// through).
//
// A refusal is a *rekey.Error with CodeUnsafe (exit 5) naming the file, what
// is wrong with it and what to do.
//
// Replace writes a small file of rekey's own (an approval, the audit
// anchor) through a temporary file renamed over it.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/rekeyhq/rekey"
)

// RemoveHint is the hint for a file rekey recreates by itself (a lock).
const RemoveHint = "remove it; rekey creates it again"

// OpenFile is os.OpenFile for a file rekey owns: it does not follow a
// symbolic link at the last component of path (O_NOFOLLOW), and the opened
// file must be a regular file owned by the effective user with a single
// link, or it is closed again and refused. flag may include os.O_CREATE
// (the file is created with perm) but should not include os.O_TRUNC: the
// checks run on the open descriptor, before the caller changes anything.
// hint is the refusal's hint ("" for RemoveHint).
func OpenFile(path string, flag int, perm os.FileMode, hint string) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			// O_NOFOLLOW refuses a symbolic link with ELOOP.
			fi, lerr := os.Lstat(path)
			if lerr == nil {
				if p := problem(fi); p != "" {
					return nil, refuse(path, p, hint)
				}
			}
			return nil, refuse(path, "is a symbolic link", hint)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if p := problem(fi); p != "" {
		f.Close()
		return nil, refuse(path, p, hint)
	}
	// O_NONBLOCK only kept open() from hanging on a planted FIFO; a regular
	// file ignores it, but clear it anyway.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Check refuses the file at path if it exists and is not a regular file
// owned by the effective user with a single link (a symbolic link is not
// followed). A missing file is fine. hint is the refusal's hint ("" for
// RemoveHint).
func Check(path, hint string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if p := problem(fi); p != "" {
		return refuse(path, p, hint)
	}
	return nil
}

// StoreHint is the hint for the store file itself.
const StoreHint = "the store must be a regular file of yours: if this is a link to your store, set store.path in rekey.yaml to the real file instead; otherwise move it away and restore .rekey/ from a backup"

// JournalHint is the hint for a journal file of SQLite beside the store.
const JournalHint = "SQLite journals are the user's own regular files: if another user's rekey crashed here, run `rekey recover` as that user; otherwise move this file away (SQLite creates it again)"

// CheckStore checks the store file at path and the files SQLite creates and
// writes beside it (path-wal, path-shm, path-journal): none may be a
// symbolic link, another kind of file, another user's, or hard-linked.
// Missing files are fine. SQLite opens these files itself, after this check:
// see the package documentation of sqlite for the race that remains.
func CheckStore(path string) error {
	if err := Check(path, StoreHint); err != nil {
		return err
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := Check(path+suffix, JournalHint); err != nil {
			return err
		}
	}
	return nil
}

// problem says what is wrong with fi for a file rekey writes, or "".
func problem(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return "is a symbolic link"
	case m.IsDir():
		return "is a directory"
	case !m.IsRegular():
		return "is not a regular file (" + kind(m) + ")"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, euid)
	}
	if st.Nlink > 1 {
		return fmt.Sprintf("has %d hard links (another name for the same file exists)", st.Nlink)
	}
	return ""
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

func refuse(path, problem, hint string) error {
	if hint == "" {
		hint = RemoveHint
	}
	return &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("refusing to use %s: it %s", path, problem), Hint: hint}
}
