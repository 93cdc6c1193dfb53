package testkit

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Child is this test binary run again as a child process with args (say
// -test.run=^TestX$), handed spec as JSON in a 0600 file that the
// environment variable env names: never in argv, nor in the environment
// itself, where a DSN or a key would show.
func Child(tb testing.TB, env string, spec any, args ...string) *exec.Cmd {
	tb.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "spec.json")
	WriteFile(tb, path, string(data), 0o600)
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env+"="+path)
	return cmd
}
