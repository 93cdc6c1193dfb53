package sqlite

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/rekeyhq/rekey"
)

// A store of 1,000 secrets × 100 versions must stay small (under 20 MB), so
// version rows hold their metadata in compact forms, each read back to the
// exact string it was written from, and anything that does not fit a compact
// form is stored as it is:
//   - fingerprints "fp:" + 16 hex digits as their 8 bytes;
//   - rotation IDs "20060102T150405Z-" + 8 hex digits as 8 bytes (Unix seconds, random);
//   - sources as small integers;
//   - values, inside the seal, as a one-byte form followed by the bytes an
//     encoded value decodes to when re-encoding gives back the same text
//     (a 64-byte base64 JWT secret seals 66 bytes instead of 89).

var fpForm = regexp.MustCompile(`^fp:[0-9a-f]{16}$`)

func packFP(s string) any {
	if fpForm.MatchString(s) {
		b, _ := hex.DecodeString(s[3:])
		return b
	}
	return s
}

// fpCol scans a fingerprint in either form.
type fpCol struct{ s *string }

func (c fpCol) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		if len(v) != 8 {
			return fmt.Errorf("fingerprint of %d bytes", len(v))
		}
		*c.s = "fp:" + hex.EncodeToString(v)
	case string:
		*c.s = v
	default:
		return fmt.Errorf("fingerprint of type %T", src)
	}
	return nil
}

var rotIDForm = regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{8}$`)

func packRotationID(s string) any {
	if !rotIDForm.MatchString(s) {
		return s
	}
	t, err := time.Parse("20060102T150405Z", s[:16])
	if err != nil || t.Unix() < 0 || t.Unix() > 1<<32-1 {
		return s
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(t.Unix()))
	r, _ := hex.DecodeString(s[17:])
	return append(b, r...)
}

type rotIDCol struct{ s *string }

func (c rotIDCol) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		if len(v) != 8 {
			return fmt.Errorf("rotation id of %d bytes", len(v))
		}
		t := time.Unix(int64(binary.BigEndian.Uint32(v)), 0).UTC()
		*c.s = t.Format("20060102T150405Z") + "-" + hex.EncodeToString(v[4:])
	case string:
		*c.s = v
	case nil:
		*c.s = ""
	default:
		return fmt.Errorf("rotation id of type %T", src)
	}
	return nil
}

var sourceCodes = []rekey.Source{"", rekey.SourceGenerated, rekey.SourceImported, rekey.SourceManual, rekey.SourceRollback}

func packSource(s rekey.Source) any {
	for i, c := range sourceCodes {
		if c == s {
			return int64(i)
		}
	}
	return string(s)
}

type sourceCol struct{ s *rekey.Source }

func (c sourceCol) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		if v < 0 || v >= int64(len(sourceCodes)) {
			return fmt.Errorf("unknown source %d", v)
		}
		*c.s = sourceCodes[v]
	case string:
		*c.s = rekey.Source(v)
	case []byte:
		*c.s = rekey.Source(v)
	default:
		return fmt.Errorf("source of type %T", src)
	}
	return nil
}

// Value forms (the first byte of a sealed plaintext).
const (
	formRaw byte = iota
	formBase64
	formBase64Raw
	formBase64URL
	formBase64URLRaw
	formHexLower
)

var forms = []struct {
	form byte
	enc  interface {
		DecodeString(string) ([]byte, error)
		EncodeToString([]byte) string
	}
}{
	{formBase64, base64.StdEncoding},
	{formBase64Raw, base64.RawStdEncoding},
	{formBase64URL, base64.URLEncoding},
	{formBase64URLRaw, base64.RawURLEncoding},
	{formHexLower, hexEncoding{}},
}

type hexEncoding struct{}

func (hexEncoding) DecodeString(s string) ([]byte, error) { return hex.DecodeString(s) }
func (hexEncoding) EncodeToString(b []byte) string        { return hex.EncodeToString(b) }

// packValue returns the plaintext to seal for v: its shortest exact form.
func packValue(v []byte) []byte {
	if len(v) >= 8 {
		s := string(v)
		for _, f := range forms {
			b, err := f.enc.DecodeString(s)
			if err == nil && len(b) < len(v) && f.enc.EncodeToString(b) == s {
				return append([]byte{f.form}, b...)
			}
		}
	}
	return append([]byte{formRaw}, v...)
}

// unpackValue reverses packValue.
func unpackValue(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("empty sealed value")
	}
	if p[0] == formRaw {
		return append([]byte(nil), p[1:]...), nil
	}
	for _, f := range forms {
		if f.form == p[0] {
			return []byte(f.enc.EncodeToString(p[1:])), nil
		}
	}
	return nil, fmt.Errorf("unknown value form %d", p[0])
}

// appendString appends s to b in the length-prefixed form of the store's
// binary encodings (audit blocks, attributes, the manifest): its length as
// a uvarint, then its bytes (any byte may stand in it).
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// byteReader is a bytes.Reader or a strings.Reader: what the decoders of
// the store's binary encodings read from.
type byteReader interface {
	io.ByteReader
	io.Reader
	Len() int
}

// readString reads a string appendString wrote; false when r ends before it
// does.
func readString(r byteReader) (string, bool) {
	l, err := binary.ReadUvarint(r)
	if err != nil || l > uint64(r.Len()) {
		return "", false
	}
	b := make([]byte, l)
	io.ReadFull(r, b)
	return string(b), true
}
