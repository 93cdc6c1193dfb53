package cmdtarget_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/cmdtarget"
)

// manager is a stand-in secret manager: its CLI prints the stored document
// (read) or stores the one given on stdin (write); with FAIL set, write
// fails printing what it was given on stderr (a careless CLI).
func manager(t *testing.T, initial string) (dir, store string, env []string) {
	t.Helper()
	dir = t.TempDir()
	store = filepath.Join(dir, "store")
	if initial != "" {
		if err := os.WriteFile(store, []byte(initial), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
case "$1" in
read) cat "$STORE" 2>/dev/null || true ;;
write) if [ -n "$FAIL" ]; then echo "error: rejected $(cat)" >&2; exit 2; fi; cat > "$STORE.tmp" && mv "$STORE.tmp" "$STORE" ;;
esac`
	if err := os.WriteFile(filepath.Join(dir, "sm"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, store, []string{"STORE=" + store, "PATH=" + os.Getenv("PATH")}
}

func TestJSONDocument(t *testing.T) {
	dir, store, env := manager(t, "")
	tg := cmdtarget.New("vault", []string{"./sm", "read"}, []string{"./sm", "write"}, cmdtarget.FormatJSON, dir, env)
	if got, err := tg.Read(t.Context(), []string{"JWT_SECRET"}); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v %v", got, err)
	}
	if err := os.WriteFile(store, []byte(`{"OTHER":"kept","JWT_SECRET":"old"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("new \"quoted\" value")}, []string{"JWT_SECRET_PREVIOUS"}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]string
	raw, _ := os.ReadFile(store)
	if err := json.Unmarshal(raw, &doc); err != nil || doc["JWT_SECRET"] != `new "quoted" value` || doc["OTHER"] != "kept" || len(doc) != 2 {
		t.Fatalf("stored: %s (%v)", raw, err)
	}
	got, err := tg.Read(t.Context(), []string{"JWT_SECRET", "NOPE"})
	if err != nil || len(got) != 1 || got["JWT_SECRET"].RevealString() != `new "quoted" value` {
		t.Fatalf("read back: %v %v", got, err)
	}
	if err := tg.Write(t.Context(), nil, []string{"OTHER"}); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(store); strings.Contains(string(raw), "OTHER") {
		t.Errorf("OTHER not removed: %s", raw)
	}
	// Not a JSON object: a clear error naming format:.
	if err := os.WriteFile(store, []byte("JWT_SECRET=x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Read(t.Context(), []string{"JWT_SECRET"}); rekey.ErrorCode(err) != rekey.CodeInvalid || !strings.Contains(rekey.ErrorHint(err), "format: env") {
		t.Errorf("env printed to a json target: %v", err)
	}
}

func TestEnvDocument(t *testing.T) {
	dir, store, env := manager(t, "OTHER=1\nJWT_SECRET=old\n")
	tg := cmdtarget.New("k8s", []string{"./sm", "read"}, []string{"./sm", "write"}, cmdtarget.FormatEnv, dir, env)
	if err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("n3w value")}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := tg.Read(t.Context(), []string{"JWT_SECRET", "OTHER"})
	if err != nil || got["JWT_SECRET"].RevealString() != "n3w value" || got["OTHER"].RevealString() != "1" {
		raw, _ := os.ReadFile(store)
		t.Fatalf("read back: %v %v\n%s", got, err, raw)
	}
}

// TestFailureRedacted: a write command that fails quoting what it was
// given: the error names the target and the command, with no value.
func TestFailureRedacted(t *testing.T) {
	dir, _, env := manager(t, `{"JWT_SECRET":"old-value-1234"}`)
	env = append(env, "FAIL=1")
	tg := cmdtarget.New("vault", []string{"./sm", "read"}, []string{"./sm", "write"}, cmdtarget.FormatJSON, dir, env)
	err := tg.Write(t.Context(), map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("new-value-5678")}, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(err.Error(), "target vault: the write command (./sm) failed: exit status 2") {
		t.Fatalf("failed write: %v", err)
	}
	if strings.Contains(err.Error(), "new-value-5678") || strings.Contains(err.Error(), "old-value-1234") {
		t.Fatalf("a value in the error: %v", err)
	}
}
