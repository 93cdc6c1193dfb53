package atlas

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// KeySize is the size of an ENCRYPTION_KEY (AES-256).
const KeySize = 32

// NonceSize is the size of the AES-GCM nonce prepended to each ciphertext.
const NonceSize = 12

// ErrUndecryptable is returned by Decrypt when no key opens the value.
var ErrUndecryptable = errors.New("atlas: value does not decrypt under any configured key")

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, errors.New("atlas: encryption key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errors.New("atlas: invalid encryption key")
	}
	return cipher.NewGCM(block)
}

// Encrypt seals plaintext with AES-256-GCM under key and returns
// base64(nonce(12) || ciphertext || tag(16)) — the layout of Rust's
// aes-gcm crate with the nonce prepended. No associated data.
func Encrypt(key []byte, plaintext string) (string, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, NonceSize, NonceSize+len(plaintext)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, []byte(plaintext), nil)), nil
}

// Decrypt opens a value written by Encrypt, trying keys in order (nil
// keys are skipped). It returns the index of the key that opened it. The
// error never contains the value or a key.
func Decrypt(keys [][]byte, value string) (string, int, error) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil || len(raw) < NonceSize+16 {
		return "", -1, ErrUndecryptable
	}
	for i, k := range keys {
		if k == nil {
			continue
		}
		gcm, err := newGCM(k)
		if err != nil {
			continue
		}
		pt, err := gcm.Open(nil, raw[:NonceSize], raw[NonceSize:], nil)
		if err == nil {
			return string(pt), i, nil
		}
	}
	return "", -1, ErrUndecryptable
}
