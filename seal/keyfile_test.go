package seal_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/seal"
)

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("POSIX permission bits")
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "prod.key")
	k := newKey(t)
	if err := seal.WriteKeyFile(path, k); err != nil {
		t.Fatalf("WriteKeyFile: %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", got)
	}
	for _, d := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "a", "b")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("dir %s mode = %04o, want 0700", d, got)
		}
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(content) != k.Encode()+"\n" {
		t.Error("key file content is not Encode() + newline")
	}

	back, err := seal.ReadKeyFile(path)
	if err != nil {
		t.Fatalf("ReadKeyFile: %v", err)
	}
	if !back.Equal(k) {
		t.Fatal("ReadKeyFile returned a different key")
	}
}

func TestWriteKeyFileRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prod.key")
	first, second := newKey(t), newKey(t)
	if err := seal.WriteKeyFile(path, first); err != nil {
		t.Fatal(err)
	}
	err := seal.WriteKeyFile(path, second)
	if err == nil {
		t.Fatal("WriteKeyFile overwrote an existing key file")
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("error %v does not match fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the path", err)
	}
	assertNoLeak(t, "overwrite error", err.Error(), keyBytes(t, second))
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(content) != first.Encode()+"\n" {
		t.Fatal("existing key file was changed")
	}
}

func TestWriteKeyFileRefusesSymlink(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	link := filepath.Join(dir, "prod.key")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("symlinks unavailable:", err)
	}
	if err := seal.WriteKeyFile(link, newKey(t)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteKeyFile through a dangling symlink: err = %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("WriteKeyFile created the symlink's target")
	}
}

func TestWriteKeyFileZeroKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zero.key")
	if err := seal.WriteKeyFile(path, seal.Key{}); err == nil {
		t.Fatal("WriteKeyFile wrote the zero Key")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a file was left behind")
	}
}

func TestReadKeyFileRefusesLoosePermissions(t *testing.T) {
	skipOnWindows(t)
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o610, 0o666, 0o777} {
		path := filepath.Join(t.TempDir(), "prod.key")
		k := newKey(t)
		if err := seal.WriteKeyFile(path, k); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		got, err := seal.ReadKeyFile(path)
		if err == nil {
			t.Fatalf("ReadKeyFile accepted mode %04o", mode)
		}
		if !got.IsZero() {
			t.Errorf("mode %04o: a key was returned with the error", mode)
		}
		msg := err.Error()
		if !strings.Contains(msg, "chmod 600") || !strings.Contains(msg, path) {
			t.Errorf("mode %04o: error %q should tell to chmod 600 the path", mode, msg)
		}
		assertNoLeak(t, "permission error", msg, keyBytes(t, k))
	}
}

func TestReadKeyFileAcceptsOwnerOnly(t *testing.T) {
	skipOnWindows(t)
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		path := filepath.Join(t.TempDir(), "prod.key")
		k := newKey(t)
		if err := os.WriteFile(path, []byte("  "+k.Encode()+"\r\n\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // undo the umask
			t.Fatal(err)
		}
		got, err := seal.ReadKeyFile(path)
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if !got.Equal(k) {
			t.Fatalf("mode %04o: wrong key", mode)
		}
	}
}

func TestReadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	secretish := "hunter2-not-a-key-but-secret"
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := map[string]struct {
		path string
		is   error
	}{
		"missing":      {filepath.Join(dir, "missing.key"), fs.ErrNotExist},
		"directory":    {dir, nil},
		"empty":        {write("empty.key", nil), nil},
		"garbage":      {write("garbage.key", []byte(secretish+"\n")), nil},
		"short key":    {write("short.key", []byte("c2hvcnQ=\n")), nil},
		"two keys":     {write("two.key", []byte(newKey(t).Encode()+"\n"+newKey(t).Encode()+"\n")), nil},
		"huge":         {write("huge.key", bytes.Repeat([]byte(" "), 4096)), nil},
		"huge but key": {write("hugekey.key", append(bytes.Repeat([]byte("\n"), 2000), newKey(t).Encode()...)), nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			k, err := seal.ReadKeyFile(tt.path)
			if err == nil {
				t.Fatal("ReadKeyFile succeeded")
			}
			if !k.IsZero() {
				t.Error("a key was returned with the error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not match %v", err, tt.is)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "seal: ") || !strings.Contains(msg, tt.path) {
				t.Errorf("error %q should start with seal: and name the path", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q quotes the file content", msg)
			}
		})
	}
}

func TestDefaultKeyDir(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" && !strings.HasSuffix(runtime.GOOS, "bsd") {
		t.Skip("HOME-based home directory")
	}
	t.Setenv("HOME", "/home/alice")

	t.Setenv("XDG_CONFIG_HOME", "/xdg/config")
	if got, err := seal.DefaultKeyDir(); err != nil || got != "/xdg/config/rekey/keys" {
		t.Errorf("with XDG_CONFIG_HOME: %q, %v", got, err)
	}
	for _, xdg := range []string{"", "relative/config"} {
		t.Setenv("XDG_CONFIG_HOME", xdg)
		if got, err := seal.DefaultKeyDir(); err != nil || got != "/home/alice/.config/rekey/keys" {
			t.Errorf("XDG_CONFIG_HOME=%q: %q, %v", xdg, got, err)
		}
	}

	t.Setenv("HOME", "")
	if got, err := seal.DefaultKeyDir(); err == nil {
		t.Errorf("no HOME and no XDG_CONFIG_HOME: %q, want error", got)
	}
}
