package seal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxKeyFileSize bounds how much of a key file ReadKeyFile reads; a key file
// is 45 bytes, the rest is room for whitespace.
const maxKeyFileSize = 1024

// WriteKeyFile writes k to a new file at path with mode 0600, content
// k.Encode() + "\n". Missing parent directories are created with mode 0700
// (existing ones are left as they are).
//
// It never overwrites: the file is created with O_EXCL, so an existing file
// or symlink at path makes it fail with an error that matches fs.ErrExist
// (errors.Is). If writing fails part way, the new file is removed. The zero
// Key is refused. Errors name the path, never the key.
func WriteKeyFile(path string, k Key) (err error) {
	if k.IsZero() {
		return errors.New("seal: refusing to write zero key")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("seal: create key dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("seal: refusing to overwrite key file %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("seal: create key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("seal: write key file: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// The umask can only clear bits; set the mode exactly in case it cleared
	// the owner's.
	if runtime.GOOS != "windows" {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("seal: write key file: %w", err)
		}
	}
	buf := make([]byte, keyEncoding.EncodedLen(KeySize)+1)
	defer Wipe(buf)
	keyEncoding.Encode(buf, k.bytes()[:])
	buf[len(buf)-1] = '\n'
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("seal: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("seal: write key file: %w", err)
	}
	return nil
}

// ReadKeyFile reads a key written by WriteKeyFile (or any file holding one
// base64 key, surrounding whitespace ignored).
//
// On Unix it refuses a file that grants any permission to group or others
// (mode & 0077 != 0), with an error that names the path and tells to run
// chmod 600 on it; it also refuses anything but a regular file. Errors name
// the path but never quote the file's content.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("seal: read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("seal: read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("seal: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return Key{}, fmt.Errorf("seal: key file %s is accessible by group or others (mode %04o); run: chmod 600 %s",
			path, perm, path)
	}
	buf := make([]byte, maxKeyFileSize+1)
	defer Wipe(buf)
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		return Key{}, fmt.Errorf("seal: key file %s is too large", path)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return Key{}, fmt.Errorf("seal: read key file: %w", err)
	}
	k, err := parseKey(buf[:n])
	if err != nil {
		return Key{}, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	return k, nil
}

// DefaultKeyDir returns the directory where rekey keeps key files:
// $XDG_CONFIG_HOME/rekey/keys, or ~/.config/rekey/keys when XDG_CONFIG_HOME
// is unset or not absolute (as the XDG spec requires). It does not create it.
func DefaultKeyDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "rekey", "keys"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("seal: locate key dir: %w", err)
	}
	return filepath.Join(home, ".config", "rekey", "keys"), nil
}
