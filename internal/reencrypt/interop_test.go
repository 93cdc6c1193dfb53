package reencrypt

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// external runs an interop helper: argv holds file paths only; the key
// and the data go through files in a private temp dir.
func external(t *testing.T, argv []string, key rekey.Value, in []string) []string {
	t.Helper()
	dir := t.TempDir()
	keyFile, inFile, outFile := filepath.Join(dir, "key"), filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.WriteFile(keyFile, key.Reveal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inFile, []byte(strings.Join(in, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], append(argv[1:], keyFile, inFile, outFile)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(in) {
		t.Fatalf("%d lines back, want %d", len(lines), len(in))
	}
	return lines
}

// TestInterop: values encrypted by Python's cryptography (AESGCM, Fernet)
// and by Node's crypto (AES-256-GCM) are re-encrypted by rekey, then
// decrypted by the same library with the new key back to the original
// plaintexts.
func TestInterop(t *testing.T) {
	py, _ := filepath.Abs("testdata/interop.py")
	js, _ := filepath.Abs("testdata/interop.js")
	for _, tc := range []struct {
		name     string
		cfg      rekey.ReencryptSpec
		argv     []string // + encrypt|decrypt
		keyStyle string
	}{
		{"python-aesgcm", rekey.ReencryptSpec{Codec: CodecAESGCM}, []string{"python3", py, "aesgcm"}, "base64"},
		{"python-fernet", rekey.ReencryptSpec{Codec: CodecFernet}, []string{"python3", py, "fernet"}, "base64url"},
		{"node-aes-256-gcm", rekey.ReencryptSpec{Codec: CodecAESGCM}, []string{"node", js}, "base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, conn := newDB(t, true)
			cfg := tc.cfg
			cfg.Columns = []string{"people.secret"}
			cfg.BatchSize = 40
			oldK, newK := newKey32(t, tc.keyStyle), newKey32(t, tc.keyStyle)
			var pts []string
			for i := 0; i < 200; i++ {
				pts = append(pts, base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("person-%d@example.com ✓ %s", i, strings.Repeat("x", i%37)))))
			}
			pts[0] = "" // the empty plaintext has a (non-empty) ciphertext
			stored := external(t, append(tc.argv, "encrypt"), oldK, pts)
			mustExec(t, conn, `CREATE TABLE people (id int PRIMARY KEY, secret text)`)
			for i, v := range stored {
				mustExec(t, conn, `INSERT INTO people VALUES ($1, $2)`, i, v)
			}
			res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, tc.name))
			if err != nil || res.Reencrypted != 200 {
				t.Fatalf("%v %+v", err, res)
			}
			var after []string
			rows, _ := conn.Query(testCtx(t), `SELECT secret FROM people ORDER BY id`)
			for rows.Next() {
				var v string
				rows.Scan(&v)
				after = append(after, v)
			}
			for i := range after {
				if after[i] == stored[i] {
					t.Fatalf("row %d not re-encrypted", i)
				}
			}
			back := external(t, append(tc.argv, "decrypt"), newK, after)
			for i := range pts {
				if back[i] != pts[i] {
					t.Fatalf("row %d: %q, want %q", i, back[i], pts[i])
				}
			}
		})
	}
}
