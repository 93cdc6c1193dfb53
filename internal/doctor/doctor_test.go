package doctor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

func TestCheckJSON(t *testing.T) {
	b, err := json.Marshal([]Check{pass("a", "ok"), fail("b", "bad", "do this")})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"check":"a","status":"PASS","detail":"ok"},{"check":"b","status":"FAIL","detail":"bad","fix":"do this"}]`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", b, want)
	}
}

func TestSummaryFailed(t *testing.T) {
	checks := []Check{pass("a", ""), warn("b", "", "f"), pass("c", "")}
	if got := Summary(checks); got != "2 passed, 1 warnings, 0 failed" || Failed(checks) {
		t.Errorf("Summary %q, Failed %v", got, Failed(checks))
	}
	checks = append(checks, fail("d", "", "f"))
	if got := Summary(checks); got != "2 passed, 1 warnings, 1 failed" || !Failed(checks) {
		t.Errorf("Summary %q, Failed %v", got, Failed(checks))
	}
}

// TestGitEnv: git's children get neither rekey's variables nor any named
// like a managed secret or derived value.
func TestGitEnv(t *testing.T) {
	cfg := &config.Config{
		Secrets:      []rekey.Spec{{Name: "JWT_SECRET"}},
		Environments: []config.Environment{{Name: "production"}},
	}
	got := gitEnv(cfg, []string{"PATH=/bin", "REKEY_MASTER_KEY=k", "REKEY_ACTOR=me", "JWT_SECRET=v", "HOME=/h", "HOME=/h2"})
	want := []string{"HOME=/h2", "PATH=/bin", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}
	if !slices.Equal(got, want) {
		t.Errorf("gitEnv = %q, want %q", got, want)
	}
}

func TestInsideDir(t *testing.T) {
	dir := t.TempDir()
	real := t.TempDir()
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, rel string
		in        bool
	}{
		{filepath.Join(dir, "a", "b.key"), "a/b.key", true},
		{dir, ".", true},
		{filepath.Join(dir, "..", "x"), "", false},
		{filepath.Join(dir, "link", "k.key"), "", false}, // resolved: outside
		{filepath.Join(real, "k.key"), "", false},
	} {
		rel, in := insideDir(dir, tc.path)
		if rel != tc.rel || in != tc.in {
			t.Errorf("insideDir(%s) = %q, %v; want %q, %v", tc.path, rel, in, tc.rel, tc.in)
		}
	}
}

func TestExampleCredential(t *testing.T) {
	for _, tc := range []struct {
		key, v string
		looks  bool
	}{
		{"PORT", "8080", false},
		{"RUST_LOG", "info", false},
		{"ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345", true},
		{"TOKEN", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", true},
	} {
		if why := exampleCredential(tc.key, tc.v); (why != "") != tc.looks {
			t.Errorf("exampleCredential(%s) = %q, want looks=%v", tc.key, why, tc.looks)
		}
	}
}
