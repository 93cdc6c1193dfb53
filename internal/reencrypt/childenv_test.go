package reencrypt

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandCodecEnv: the command codec's program does not receive
// rekey's key material from rekey's environment.
func TestCommandCodecEnv(t *testing.T) {
	t.Setenv("REKEY_MASTER_KEY", "codec-canary-master-key")
	t.Setenv("REKEY_PASSPHRASE", "codec-canary-passphrase")
	t.Setenv("REKEY_NEW_MASTER_KEY", "codec-canary-new-key")
	out := filepath.Join(t.TempDir(), "env")
	c, err := startCommand(helperCommand(t, "ok", "REKEY_CODEC_ARGV_OUT="+out), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := c.call("seal", []byte("k"), []byte("data"))
	c.close()
	if !r.ok {
		t.Fatalf("seal: %+v", r)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "codec-canary") || strings.Contains(string(b), "REKEY_MASTER_KEY") {
		t.Errorf("the codec program received rekey's key material:\n%s", b)
	}
	if !strings.Contains(string(b), "REKEY_REENCRYPT_TEST_CODEC=ok") {
		t.Errorf("the program's own variables are missing:\n%s", b)
	}
}
