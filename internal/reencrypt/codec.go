package reencrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/rekeyhq/rekey"
)

// errNoOpen means a value does not authenticate under a key (wrong key,
// damaged or not a ciphertext of this codec). It carries nothing else.
var errNoOpen = errors.New("does not open with this key")

// keyCipher is one key of one codec. open and seal work on the codec's
// raw bytes (after the column encoding and the key-id header are
// removed). meta is what the codec keeps across a re-encryption (the
// Fernet timestamp); 0 otherwise. Implementations are safe for concurrent
// use.
//
// Both append their result to dst (which may be nil) and return it.
type keyCipher interface {
	open(dst, raw []byte) (pt []byte, meta uint64, err error)
	seal(dst, pt []byte, meta uint64) ([]byte, error)
}

// key is a parsed key: its cipher and its key-id fingerprint.
type key struct {
	c  keyCipher
	fp [fingerprintLen]byte
}

const (
	nonceLen       = 12
	tagLen         = 16
	fingerprintLen = 4
	headerLen      = len(headerMagic) + fingerprintLen
	keyIDContext   = "rekey key-id v1"
)

// headerMagic starts the optional key-id header: "rki" and format version 1.
const headerMagic = "rki\x01"

// Fingerprint returns the 4-byte key id that the key-id header carries
// for key under codec: the first 4 bytes of HMAC-SHA256(k, "rekey key-id
// v1"), where k is the decoded 32-byte key (aes-256-gcm,
// chacha20-poly1305, fernet) or the secret's bytes as they are (command).
func Fingerprint(codec string, k rekey.Value) ([4]byte, error) {
	material, err := keyMaterial(codec, k, "key")
	if err != nil {
		return [4]byte{}, err
	}
	return fingerprint(material), nil
}

func fingerprint(material []byte) [fingerprintLen]byte {
	m := hmac.New(sha256.New, material)
	m.Write([]byte(keyIDContext))
	var fp [fingerprintLen]byte
	copy(fp[:], m.Sum(nil))
	return fp
}

// keyMaterial decodes the key bytes a codec uses from the secret value.
// which ("old key", "new key") names it in errors; the value never
// appears in them.
func keyMaterial(codec string, k rekey.Value, which string) ([]byte, error) {
	switch codec {
	case CodecAESGCM, CodecChaCha:
		b, ok := decodeKey32(k.Reveal(), true)
		if !ok {
			return nil, invalid("the %s is not 32 bytes in base64, base64url or hex (%s needs a 256-bit key)", which, codec).
				WithHint("generate one with: openssl rand -base64 32")
		}
		return b, nil
	case CodecFernet:
		b, ok := decodeKey32(k.Reveal(), false)
		if !ok {
			return nil, invalid("the %s is not a Fernet key (URL-safe base64 of 32 bytes)", which).
				WithHint("generate one with: python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
		}
		return b, nil
	case CodecCommand:
		if k.IsZero() {
			return nil, invalid("the %s is empty", which)
		}
		return append([]byte(nil), k.Reveal()...), nil
	}
	return nil, invalid("unknown codec %q", codec)
}

// decodeKey32 decodes exactly 32 bytes from base64 (standard or URL-safe,
// padded or not) or, when allowHex, 64 hex digits. Surrounding whitespace
// is ignored.
func decodeKey32(s []byte, allowHex bool) ([]byte, bool) {
	t := strings.TrimSpace(string(s))
	if allowHex && len(t) == 64 {
		if b, err := hex.DecodeString(t); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(t); err == nil && len(b) == 32 {
			return b, true
		}
	}
	return nil, false
}

// newKey parses a key for codec. cmd is the running command codec
// process (codec command only).
func newKey(codec string, k rekey.Value, which string, cmd *commandCodec) (*key, error) {
	material, err := keyMaterial(codec, k, which)
	if err != nil {
		return nil, err
	}
	out := &key{fp: fingerprint(material)}
	switch codec {
	case CodecAESGCM:
		block, err := aes.NewCipher(material)
		if err != nil {
			return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: aes")
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: gcm")
		}
		out.c = aeadCipher{gcm}
	case CodecChaCha:
		a, err := chacha20poly1305.New(material)
		if err != nil {
			return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: chacha20-poly1305")
		}
		out.c = aeadCipher{a}
	case CodecFernet:
		block, err := aes.NewCipher(material[16:])
		if err != nil {
			return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: aes")
		}
		out.c = &fernetCipher{signing: material[:16:16], block: block}
	case CodecCommand:
		if cmd == nil {
			return nil, rekey.Errorf(rekey.CodeInternal, "reencrypt: command codec not started")
		}
		out.c = &commandKey{cmd: cmd, key: material}
	}
	return out, nil
}

// aeadCipher is nonce (12 bytes) || ciphertext || tag (16 bytes), no
// associated data: what Go's crypto/cipher, Rust's aes-gcm and
// chacha20poly1305 crates, Python's AESGCM/ChaCha20Poly1305 and Node's
// crypto produce when the nonce is prepended and the tag appended.
type aeadCipher struct{ a cipher.AEAD }

func (c aeadCipher) open(dst, raw []byte) ([]byte, uint64, error) {
	if len(raw) < nonceLen+tagLen {
		return nil, 0, errNoOpen
	}
	pt, err := c.a.Open(dst, raw[:nonceLen], raw[nonceLen:], nil)
	if err != nil {
		return nil, 0, errNoOpen
	}
	return pt, 0, nil
}

func (c aeadCipher) seal(dst, pt []byte, _ uint64) ([]byte, error) {
	n := len(dst)
	dst = grow(dst, nonceLen+len(pt)+tagLen)[:n+nonceLen]
	nonce := dst[n:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: random nonce")
	}
	return c.a.Seal(dst, nonce, pt, nil), nil
}

// grow returns b with room for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n+len(b)/2)
	copy(nb, b)
	return nb
}

// fernetCipher implements the Fernet spec
// (https://github.com/fernet/spec/blob/master/Spec.md): the token is the
// URL-safe base64 (padded) of 0x80 || timestamp (8 bytes, big-endian
// seconds) || IV (16) || AES-128-CBC ciphertext (PKCS#7) || HMAC-SHA256
// (32) of everything before it. Key: signing key (16) || encryption key (16).
type fernetCipher struct {
	signing []byte
	block   cipher.Block
}

const (
	fernetVersion = 0x80
	fernetHead    = 1 + 8 + aes.BlockSize
	fernetMAC     = sha256.Size
)

func (c *fernetCipher) open(dst, token []byte) ([]byte, uint64, error) {
	if len(token) == 0 || len(token) > 1<<28 {
		return nil, 0, errNoOpen
	}
	enc := base64.URLEncoding
	if token[len(token)-1] != '=' && len(token)%4 != 0 {
		enc = base64.RawURLEncoding
	}
	raw := make([]byte, enc.DecodedLen(len(token)))
	n, err := enc.Decode(raw, token)
	if err != nil {
		return nil, 0, errNoOpen
	}
	raw = raw[:n]
	if len(raw) < fernetHead+aes.BlockSize+fernetMAC || raw[0] != fernetVersion {
		return nil, 0, errNoOpen
	}
	body, mac := raw[:len(raw)-fernetMAC], raw[len(raw)-fernetMAC:]
	m := hmac.New(sha256.New, c.signing)
	m.Write(body)
	if subtle.ConstantTimeCompare(m.Sum(nil), mac) != 1 {
		return nil, 0, errNoOpen
	}
	ct := body[fernetHead:]
	if len(ct)%aes.BlockSize != 0 {
		return nil, 0, errNoOpen
	}
	start := len(dst)
	dst = grow(dst, len(ct))[:start+len(ct)]
	pt := dst[start:]
	cipher.NewCBCDecrypter(c.block, body[9:fernetHead]).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, 0, errNoOpen
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, 0, errNoOpen
		}
	}
	return dst[:len(dst)-pad], binary.BigEndian.Uint64(body[1:9]), nil
}

// seal makes a token with timestamp ts (0: now). Re-encryption keeps the
// original timestamp, as Python's MultiFernet.rotate does, so a reader's
// ttl check sees the same age.
func (c *fernetCipher) seal(dst, pt []byte, ts uint64) ([]byte, error) {
	if ts == 0 {
		ts = uint64(time.Now().Unix())
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	raw := make([]byte, fernetHead, fernetHead+len(pt)+pad+fernetMAC)
	raw[0] = fernetVersion
	binary.BigEndian.PutUint64(raw[1:9], ts)
	if _, err := rand.Read(raw[9:fernetHead]); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: random iv")
	}
	raw = append(raw, pt...)
	for i := 0; i < pad; i++ {
		raw = append(raw, byte(pad))
	}
	cipher.NewCBCEncrypter(c.block, raw[9:fernetHead]).CryptBlocks(raw[fernetHead:], raw[fernetHead:])
	m := hmac.New(sha256.New, c.signing)
	m.Write(raw)
	raw = m.Sum(raw)
	return base64.URLEncoding.AppendEncode(dst, raw), nil
}
