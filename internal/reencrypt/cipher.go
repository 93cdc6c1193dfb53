package reencrypt

import (
	"errors"
	"io"

	"github.com/rekeyhq/rekey"
)

// ErrNoOpen is wrapped by Cipher.Decrypt when a value does not open with
// the key (wrong key, damaged value, or not in the configured format).
var ErrNoOpen = errors.New("value does not open with this key")

// Cipher encrypts and decrypts single values exactly as they are stored in
// a column under cfg (codec, encoding, key-id header). It is what an
// application written against the package doc does; tests and tools use
// it. A Cipher of the command codec runs the program until Close.
type Cipher struct {
	kr  *keyring
	cmd *commandCodec
}

// NewCipher returns a Cipher for key k. stderr receives the command
// codec's stderr (nil: os.Stderr). Close it when done.
func NewCipher(cfg rekey.ReencryptSpec, k rekey.Value, stderr io.Writer) (*Cipher, error) {
	cfg = normalized(cfg)
	if err := validateCodec(cfg); err != nil {
		return nil, err
	}
	var cmd *commandCodec
	if cfg.Codec == CodecCommand {
		var err error
		if cmd, err = startCommand(cfg.Command, stderr); err != nil {
			return nil, err
		}
	}
	kk, err := newKey(cfg.Codec, k, "key", cmd)
	if err != nil {
		if cmd != nil {
			_ = cmd.close()
		}
		return nil, err
	}
	return &Cipher{kr: &keyring{encoding: cfg.Encoding, keys: []*key{kk}, header: cfg.KeyID}, cmd: cmd}, nil
}

// Encrypt returns plaintext sealed with the key, in its stored form (text
// for the text encodings, raw bytes for bytea), checked to decrypt back.
func (c *Cipher) Encrypt(plaintext []byte) ([]byte, error) {
	return c.kr.seal(plaintext, 0, styleDefault, nil, nil)
}

// Decrypt opens a stored value. Errors wrap ErrNoOpen when the value does
// not open with the key; they never quote the value.
func (c *Cipher) Decrypt(stored []byte) ([]byte, error) {
	o, err := c.kr.open(stored, 0, nil)
	if err != nil {
		return nil, err
	}
	if o.idx < 0 {
		return nil, &rekey.Error{Code: rekey.CodeAuth, Msg: "reencrypt", Err: ErrNoOpen}
	}
	return o.pt, nil
}

// Close stops the command codec's program, if any.
func (c *Cipher) Close() error {
	if c.cmd != nil {
		return c.cmd.close()
	}
	return nil
}

// validateCodec checks the codec part of a normalized config (not the
// columns or batch settings).
func validateCodec(c rekey.ReencryptSpec) error {
	c2 := c
	c2.Columns = []string{"t.c"}
	if c2.BatchSize == 0 {
		c2.BatchSize = DefaultBatchSize
	}
	if c2.BatchSize < minBatchSize || c2.BatchSize > maxBatchSize {
		c2.BatchSize = DefaultBatchSize
	}
	c2.RowsPerSecond = 0
	_, err := validate(c2)
	return err
}
