package seal_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/seal"
)

// fixedKeyB64 encodes the bytes 0x00..0x1f; used where tests need a stable key.
const fixedKeyB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func fixedKey(t testing.TB) seal.Key {
	t.Helper()
	k, err := seal.ParseKey(fixedKeyB64)
	if err != nil {
		t.Fatalf("ParseKey(fixed): %v", err)
	}
	return k
}

func newKey(t testing.TB) seal.Key {
	t.Helper()
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k
}

// keyBytes extracts a key's bytes through its only exit, Encode.
func keyBytes(t testing.TB, k seal.Key) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(k.Encode())
	if err != nil {
		t.Fatalf("decode Encode(): %v", err)
	}
	return b
}

// leakForms lists the ways key bytes could show up in text: every common
// base64 and hex alphabet, in full and as a 12-character prefix, plus Go's
// default []byte formatting.
func leakForms(b []byte) []string {
	var forms []string
	for _, s := range []string{
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	} {
		forms = append(forms, s, s[:12])
	}
	return append(forms, fmt.Sprint(b), fmt.Sprintf("%v", b[:8]), string(b))
}

// assertNoLeak fails if out contains any leak form of secret, which must be
// at least 16 bytes.
func assertNoLeak(t *testing.T, what, out string, secret []byte) {
	t.Helper()
	for _, f := range leakForms(secret) {
		if strings.Contains(out, f) {
			t.Errorf("%s leaks key material %q in output %q", what, f, out)
		}
	}
}
