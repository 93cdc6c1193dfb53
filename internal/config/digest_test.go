package config

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestLoadDigest: Load records the exact text it parsed and its SHA-256
// (what `rekey config trust` approves), and the record is a copy.
func TestLoadDigest(t *testing.T) {
	data := []byte(testkit.ReadFile(t, "testdata/full.yaml"))
	c := mustLoad(t, "testdata/full.yaml")
	if !bytes.Equal(c.Raw, data) || c.Digest != sha256.Sum256(data) {
		t.Fatalf("Raw/Digest are not the text parsed")
	}
	buf := bytes.Clone(data)
	c2, err := Parse("rekey.yaml", buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] ^= 0xff
	if !bytes.Equal(c2.Raw, data) || c2.Digest != sha256.Sum256(data) {
		t.Fatal("Parse keeps the caller's buffer instead of a copy")
	}
}
