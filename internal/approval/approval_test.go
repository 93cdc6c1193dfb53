package approval

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

func TestStateDir(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_STATE_HOME": "/s", "HOME": "/h"}, "/s/rekey"},
		{map[string]string{"XDG_STATE_HOME": "rel", "HOME": "/h"}, "/h/.local/state/rekey"},
		{map[string]string{"HOME": "h"}, ""},
		{nil, ""},
	} {
		if got := StateDir(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("StateDir(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestRequireWriteRead(t *testing.T) {
	state := filepath.Join(t.TempDir(), "rekey")
	cfgPath := filepath.Join(t.TempDir(), "rekey.yaml")
	text := []byte("version: 1\nservices:\n  app:\n    restart: [true]\n")

	err := Require(state, cfgPath, text)
	if rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "rekey.yaml is not approved on this machine yet") || rekey.ErrorHint(err) != Hint {
		t.Fatalf("never approved: %v", err)
	}
	if err := Write(state, cfgPath, text); err != nil {
		t.Fatal(err)
	}
	if err := Require(state, cfgPath, text); err != nil {
		t.Fatalf("approved: %v", err)
	}
	ap, err := Read(state, cfgPath)
	if err != nil || ap == nil || string(ap.Text) != string(text) || filepath.Dir(ap.File) != filepath.Join(state, "trusted") {
		t.Fatalf("Read: %+v, %v", ap, err)
	}
	if fi, err := os.Stat(ap.File); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("approval file: %v %v", fi, err)
	}

	changed := []byte(strings.Replace(string(text), "[true]", "[sh, -c, evil]", 1))
	err = Require(state, cfgPath, changed)
	if rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "rekey.yaml changed since you approved it (line 4: services.app.restart)") {
		t.Fatalf("changed: %v", err)
	}

	// Another file's approval, renamed into place, is damaged.
	other := filepath.Join(filepath.Dir(cfgPath), "other.yaml")
	if err := Write(state, other, text); err != nil {
		t.Fatal(err)
	}
	of, _ := File(state, other)
	if err := os.Rename(of, ap.File); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(state, cfgPath); err == nil || !strings.Contains(err.Error(), "is damaged: it approves another file") {
		t.Fatalf("another file's approval: %v", err)
	}

	if err := Require("", cfgPath, text); !errors.Is(err, ErrNoStateDir) {
		t.Fatalf("no state folder: %v", err)
	}
}

func TestApprovalDirRefused(t *testing.T) {
	state := t.TempDir()
	real := t.TempDir()
	if err := os.Symlink(real, filepath.Join(state, "trusted")); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "rekey.yaml")
	if _, err := Read(state, cfgPath); rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("Read through a linked folder: %v", err)
	}
	if err := Write(state, cfgPath, []byte("version: 1\n")); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("Write through a linked folder: %v", err)
	}
}
