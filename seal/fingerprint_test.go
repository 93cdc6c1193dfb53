package seal_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/rekeyhq/rekey/seal"
)

var fpFormat = regexp.MustCompile(`^fp:[0-9a-f]{16}$`)

func newFingerprinter(t *testing.T, key []byte) *seal.Fingerprinter {
	t.Helper()
	f, err := seal.NewFingerprinter(key)
	if err != nil {
		t.Fatalf("NewFingerprinter: %v", err)
	}
	return f
}

func TestFingerprint(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	f := newFingerprinter(t, key)
	value := []byte("s3cr3t-value")

	fp := f.Fingerprint(value)
	if !fpFormat.MatchString(fp) {
		t.Fatalf("Fingerprint = %q, want %s", fp, fpFormat)
	}
	m := hmac.New(sha256.New, key)
	m.Write(value)
	if want := "fp:" + hex.EncodeToString(m.Sum(nil))[:16]; fp != want {
		t.Fatalf("Fingerprint = %q, want HMAC-SHA256 prefix %q", fp, want)
	}
	if f.Fingerprint(bytes.Clone(value)) != fp || newFingerprinter(t, bytes.Clone(key)).Fingerprint(value) != fp {
		t.Fatal("Fingerprint is not stable")
	}
	if newFingerprinter(t, bytes.Repeat([]byte{0x43}, 32)).Fingerprint(value) == fp {
		t.Fatal("different keys give the same fingerprint")
	}
	if f.Fingerprint([]byte("s3cr3t-valuE")) == fp {
		t.Fatal("different values give the same fingerprint")
	}
	for _, v := range [][]byte{nil, {}, bytes.Repeat([]byte{0xff}, 1<<16)} {
		if got := f.Fingerprint(v); !fpFormat.MatchString(got) {
			t.Fatalf("Fingerprint(%d bytes) = %q", len(v), got)
		}
	}
}

func TestFingerprinterCopiesKey(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	f := newFingerprinter(t, key)
	before := f.Fingerprint([]byte("v"))
	seal.Wipe(key)
	if f.Fingerprint([]byte("v")) != before {
		t.Fatal("Fingerprinter aliases the caller's key slice")
	}
}

func TestNewFingerprinterKeyLength(t *testing.T) {
	for _, n := range []int{0, 1, 16, 31, 33, 64} {
		key := bytes.Repeat([]byte{0xa5}, n)
		f, err := seal.NewFingerprinter(key)
		if err == nil || f != nil {
			t.Fatalf("NewFingerprinter(%d bytes) = %v, %v; want nil, error", n, f, err)
		}
		if n >= 16 { // shorter keys are too short for meaningful substring checks
			assertNoLeak(t, "NewFingerprinter error", err.Error(), key)
		}
	}
}
