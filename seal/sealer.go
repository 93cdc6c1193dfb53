package seal

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// SealInfo is the HKDF info under which NewSealer derives its subkey from the
// master key.
const SealInfo = "rekey seal v1"

// Sealed message layout.
const (
	sealVersion = 0x01
	nonceSize   = chacha20poly1305.NonceSizeX // 24
	headerSize  = 1 + nonceSize
	tagSize     = chacha20poly1305.Overhead // 16

	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = headerSize + tagSize
)

// adTag starts every AD encoding, so associated data from this scheme cannot
// collide with any other use of the key.
const adTag = "rekey-ad-v1"

// ErrOpen is the only error Sealer.Open returns. It deliberately does not say
// why authentication failed.
var ErrOpen = errors.New("seal: message authentication failed")

// Sealer seals values with XChaCha20-Poly1305 under a subkey derived from the
// master key with HKDF-SHA256 (info "rekey seal v1").
//
// A sealed value is 0x01 || 24-byte random nonce || ciphertext || 16-byte tag.
// The random 192-bit nonce makes nonce reuse negligible however many values
// are sealed. A Sealer is safe for concurrent use, and prints as "[REDACTED]".
type Sealer struct {
	aead hidden[cipher.AEAD]
}

// NewSealer returns a Sealer for the master key k. It panics on the zero Key.
func NewSealer(k Key) *Sealer {
	sub := k.Derive(SealInfo)
	defer Wipe(sub)
	aead, err := chacha20poly1305.NewX(sub) // copies sub
	if err != nil {
		// Unreachable: sub is always KeySize bytes.
		panic("seal: " + err.Error())
	}
	return &Sealer{aead: hide(&aead)}
}

// Seal encrypts and authenticates plaintext, binding it to the associated
// data ad (which is authenticated but not stored; build it with AD). It
// returns a new slice of len(plaintext)+Overhead bytes and never modifies
// its arguments. Sealing the same input twice gives different outputs.
func (s *Sealer) Seal(plaintext, ad []byte) []byte {
	var nonce [nonceSize]byte
	rand.Read(nonce[:]) // never fails: crypto/rand crashes the program instead
	out := make([]byte, headerSize, headerSize+len(plaintext)+tagSize)
	out[0] = sealVersion
	copy(out[1:], nonce[:])
	return s.getAEAD().Seal(out, nonce[:], plaintext, ad)
}

// Open authenticates and decrypts a value produced by Seal with the same key
// and the same ad. It returns a new, non-nil slice and never modifies its
// arguments.
//
// Any failure — wrong key, different ad (a ciphertext moved to another
// record), modified or truncated bytes, unknown version — returns nil and
// exactly ErrOpen. Open never panics, whatever sealed and ad hold (on a
// Sealer from NewSealer).
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead || sealed[0] != sealVersion {
		return nil, ErrOpen
	}
	pt, err := s.getAEAD().Open(nil, sealed[1:headerSize], sealed[headerSize:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// getAEAD returns the AEAD; a nil or zero Sealer panics here, as any nil
// receiver would.
func (s *Sealer) getAEAD() cipher.AEAD { return *s.aead.get() }

// Format writes "[REDACTED]" for every verb.
func (Sealer) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// AD builds associated data from parts, for example
// AD(environment, name, version). The encoding is the tag "rekey-ad-v1"
// followed by each part as uvarint(len(part)) || part, so distinct part
// lists always give distinct bytes: AD("a", "bc") != AD("ab", "c") and
// AD() != AD("").
func AD(parts ...string) []byte {
	n := len(adTag)
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, adTag...)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}
