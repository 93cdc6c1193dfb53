package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Fingerprinter computes public fingerprints of secret values:
// "fp:" + the first 16 hex characters (64 bits) of HMAC-SHA256(key, value).
//
// The 32-byte key is independent of the master key (the store keeps it
// sealed), so fingerprints survive master key rotation, and without the key a
// fingerprint cannot be used to test guesses of the value. A Fingerprinter is
// safe for concurrent use and prints as "[REDACTED]".
type Fingerprinter struct {
	key hidden[[KeySize]byte]
}

// NewFingerprinter returns a Fingerprinter using a copy of key, which must be
// exactly 32 bytes; otherwise it returns an error (that does not contain the
// key).
func NewFingerprinter(key []byte) (*Fingerprinter, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: fingerprint key must be %d bytes", KeySize)
	}
	k := new([KeySize]byte)
	copy(k[:], key)
	return &Fingerprinter{key: hide(k)}, nil
}

// Fingerprint returns "fp:" followed by 16 lowercase hex characters. The same
// key and value always give the same fingerprint.
func (f *Fingerprinter) Fingerprint(value []byte) string {
	m := hmac.New(sha256.New, f.key.get()[:])
	m.Write(value)
	sum := m.Sum(nil)
	return "fp:" + hex.EncodeToString(sum[:8])
}

// Format writes "[REDACTED]" for every verb.
func (Fingerprinter) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
