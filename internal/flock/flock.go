// Package flock is an exclusive, non-blocking lock on a file. The kernel
// releases it when the holder dies, so a crashed rekey never blocks the next.
package flock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/safefile"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// Lock is a held lock.
type Lock struct{ f *os.File }

// ErrBusy is returned (wrapped, with the holder) when another process holds the lock.
var ErrBusy = errors.New("lock is held")

// Acquire takes the lock at path at once or returns an error wrapping ErrBusy
// that names the holding process. It writes the holder's pid and start time.
//
// The lock file is opened without following a symbolic link and must be a
// regular file of the caller's with one link (see safefile.OpenFile): a link
// planted at path is refused (a *rekey.Error, CodeUnsafe), never truncated.
func Acquire(path string) (*Lock, error) {
	f, err := safefile.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600, "")
	if err != nil {
		var re *rekey.Error
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := make([]byte, 256)
		n, _ := f.ReadAt(holder, 0)
		holder = holder[:n]
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			h := textsafe.Quote(strings.TrimSpace(string(holder)))
			if h == "" {
				h = "unknown process"
			}
			return nil, fmt.Errorf("%w by %s", ErrBusy, h)
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+" since "+time.Now().UTC().Format(time.RFC3339)+"\n"), 0)
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
	return err
}

// Held reports whether another process holds the lock at path, and who
// ("pid N since T"), without taking it: a shared lock is tried and dropped
// at once (a rotation starting in that instant waits for nothing: its
// exclusive try fails only while the shared one is held, microseconds).
// A missing lock file is a lock nobody holds.
func Held(path string) (holder string, held bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("open lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return "", false, fmt.Errorf("lock: %w", err)
		}
		b := make([]byte, 256)
		n, _ := f.ReadAt(b, 0)
		h := textsafe.Quote(strings.TrimSpace(string(b[:n])))
		if h == "" {
			h = "unknown process"
		}
		return h, true, nil
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return "", false, nil
}
