package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestRedactingWriter: what a command codec prints on stderr — a stored
// key raw or base64, split across writes, on a last line without a newline —
// reaches the terminal redacted.
func TestRedactingWriter(t *testing.T) {
	ctx := context.Background()
	old := base64.StdEncoding.EncodeToString([]byte("an old data key of 32 bytes!!!!!"))
	st := newStore(t, testVersion{"ENCRYPTION_KEY", old, rekey.LabelCurrent, nil})
	newKey := rekey.NewValueString(base64.StdEncoding.EncodeToString([]byte("a new data key, not stored yet!!")))
	var out bytes.Buffer
	w := New(Options{Stderr: &out}).RedactedStderr(ctx, st, newKey)
	raw := "codec: cannot open with " + old + "\n"
	w.Write([]byte(raw[:20]))
	w.Write([]byte(raw[20:]))
	w.Write([]byte("codec: hex " + strings.ToUpper("") + base64.StdEncoding.EncodeToString([]byte(newKey.RevealString())) + "\n"))
	w.Write([]byte("codec: exiting with " + newKey.RevealString()))
	w.Close()
	got := out.String()
	for _, leak := range []string{old, newKey.RevealString(), base64.StdEncoding.EncodeToString([]byte(newKey.RevealString()))} {
		if strings.Contains(got, leak) {
			t.Fatalf("stderr shows a key:\n%s", got)
		}
	}
	if strings.Count(got, "\n") != 2 || !strings.Contains(got, "codec: exiting with") {
		t.Fatalf("lines lost or merged:\n%s", got)
	}
}
