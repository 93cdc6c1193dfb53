package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// KeySize is the length in bytes of a master key and of every subkey.
const KeySize = 32

// redacted is what every printable form of a Key, Sealer or Fingerprinter
// shows.
const redacted = "[REDACTED]"

// keyIDInfo is the HMAC message whose tag identifies a master key.
const keyIDInfo = "rekey master key id v1"

// keyEncoding is the only accepted textual form of a key: standard base64 with
// padding, as `openssl rand -base64 32` prints it. Strict rejects non-zero
// trailing bits so every key has exactly one encoding.
var keyEncoding = base64.StdEncoding.Strict()

// Errors returned (wrapped) by ParseKey and ReadKeyFile. They never contain
// the input.
var (
	errKeyEncoding = errors.New("key is not valid base64")
	errKeyLength   = errors.New("key is not 32 bytes")
)

// Key is a 32-byte master key.
//
// Its String, GoString, Format (every verb), MarshalJSON, MarshalText and slog
// LogValue forms print "[REDACTED]"; the bytes are unexported and [Key.Encode]
// is the only way out. Keys are immutable and safe for concurrent use; copies
// share the same bytes.
//
// The zero Key is not a key: [Key.IsZero] reports it, and Encode, ID, Derive
// and [NewSealer] panic on it rather than operate under a predictable key.
// Keys are not comparable with ==; use [Key.Equal].
type Key struct {
	_ [0]func() // forbid ==, which would not be constant time
	m hidden[[KeySize]byte]
}

// GenerateKey returns a new random key from crypto/rand. The error is non-nil
// only if the system random source fails.
func GenerateKey() (Key, error) {
	b := new([KeySize]byte)
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return Key{}, fmt.Errorf("seal: generate key: %w", err)
	}
	return Key{m: hide(b)}, nil
}

// ParseKey decodes a key from standard, padded base64 (the form
// `openssl rand -base64 32` prints and [Key.Encode] returns). Surrounding
// whitespace is ignored. The decoded key must be exactly 32 bytes.
//
// The error says what is wrong (bad base64 or wrong length) but never quotes
// s or any part of it.
func ParseKey(s string) (Key, error) {
	src := []byte(s)
	defer Wipe(src)
	k, err := parseKey(src)
	if err != nil {
		return Key{}, fmt.Errorf("seal: %w", err)
	}
	return k, nil
}

// parseKey decodes src (trimmed of surrounding whitespace) into a Key. It
// never retains src, and wipes its own scratch buffer.
func parseKey(src []byte) (Key, error) {
	src = bytes.TrimSpace(src)
	buf := make([]byte, keyEncoding.DecodedLen(len(src)))
	defer Wipe(buf)
	n, err := keyEncoding.Decode(buf, src)
	if err != nil {
		return Key{}, errKeyEncoding
	}
	if n != KeySize {
		return Key{}, errKeyLength
	}
	b := new([KeySize]byte)
	copy(b[:], buf[:n])
	return Key{m: hide(b)}, nil
}

// IsZero reports whether k is the zero Key, which holds no key at all.
func (k Key) IsZero() bool { return k.m.get() == nil }

// bytes returns the key bytes, panicking on the zero Key.
func (k Key) bytes() *[KeySize]byte {
	b := k.m.get()
	if b == nil {
		panic("seal: use of zero Key")
	}
	return b
}

// Encode returns the key as standard, padded base64 (44 characters). It is the
// only way to get key material out of a Key; treat the result as a secret.
// It panics on the zero Key.
func (k Key) Encode() string {
	return keyEncoding.EncodeToString(k.bytes()[:])
}

// ID returns the key's public identifier: "mk_" followed by the first 16 hex
// characters of HMAC-SHA256(k, "rekey master key id v1"). It reveals nothing
// usable about the key and is safe to print and store. It panics on the zero
// Key.
func (k Key) ID() string {
	m := hmac.New(sha256.New, k.bytes()[:])
	m.Write([]byte(keyIDInfo))
	sum := m.Sum(nil)
	return "mk_" + hex.EncodeToString(sum[:8])
}

// Equal reports, in constant time, whether k and o hold the same bytes. Two
// zero Keys are equal; a zero Key equals no other key.
func (k Key) Equal(o Key) bool {
	kb, ob := k.m.get(), o.m.get()
	if kb == nil || ob == nil {
		return kb == nil && ob == nil
	}
	return subtle.ConstantTimeCompare(kb[:], ob[:]) == 1
}

// Derive returns a 32-byte subkey of k for the given purpose:
// HKDF-SHA256(secret = k, no salt, info = purpose), for example
// k.Derive("rekey audit v1"). Distinct purposes give independent subkeys.
// The result is secret; [Wipe] it when done. It panics on the zero Key.
//
// The purpose "rekey seal v1" is the one [NewSealer] uses.
func (k Key) Derive(purpose string) []byte {
	out, err := hkdf.Key(sha256.New, k.bytes()[:], nil, purpose, KeySize)
	if err != nil {
		// Unreachable: a 32-byte output is far below HKDF-SHA256's limit.
		panic("seal: hkdf: " + err.Error())
	}
	return out
}

// String returns "[REDACTED]".
func (Key) String() string { return redacted }

// GoString returns "[REDACTED]".
func (Key) GoString() string { return redacted }

// Format writes "[REDACTED]" for every verb and flag, so %x, %q, %#v and
// friends never reveal the key.
func (Key) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalJSON returns the JSON string "[REDACTED]".
func (Key) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[REDACTED]".
func (Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue returns "[REDACTED]" so slog handlers never see the key.
func (Key) LogValue() slog.Value { return slog.StringValue(redacted) }

// Wipe overwrites b with zeros. Use it on plaintext and subkeys once they are
// no longer needed. It cannot reach copies made elsewhere (strings, GC moves).
func Wipe(b []byte) {
	clear(b)
}
