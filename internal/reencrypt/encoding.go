package reencrypt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
)

// style records how a stored value was written, so that its replacement
// is written the same way (padding of base64, case of hex).
type style uint8

const (
	styleDefault  style = iota
	stylePadded         // base64 with '=' padding
	styleUnpadded       // base64 without padding
	styleUpper          // hex in upper case
)

var errEncoding = errors.New("not valid in the column encoding")

// decodeStored turns a column value into the codec's raw bytes, in dst
// (reused when it is large enough) for the text encodings; bytea and text
// values are their raw bytes.
func decodeStored(enc string, stored, dst []byte) ([]byte, style, error) {
	switch enc {
	case EncodingBase64, EncodingBase64URL:
		e := base64.StdEncoding
		if enc == EncodingBase64URL {
			e = base64.URLEncoding
		}
		st := stylePadded
		if n := len(stored); n > 0 && stored[n-1] != '=' {
			if n%4 != 0 {
				e, st = e.WithPadding(base64.NoPadding), styleUnpadded
			} else {
				st = styleDefault // no padding needed: either way
			}
		}
		raw := grow(dst[:0], e.DecodedLen(len(stored)))
		raw = raw[:e.DecodedLen(len(stored))]
		n, err := e.Strict().Decode(raw, stored)
		if err != nil {
			return nil, 0, errEncoding
		}
		return raw[:n], st, nil
	case EncodingHex:
		raw := grow(dst[:0], hex.DecodedLen(len(stored)))[:hex.DecodedLen(len(stored))]
		if _, err := hex.Decode(raw, stored); err != nil {
			return nil, 0, errEncoding
		}
		st := styleDefault
		if bytes.IndexAny(stored, "ABCDEF") >= 0 && bytes.IndexAny(stored, "abcdef") < 0 {
			st = styleUpper
		}
		return raw, st, nil
	default: // bytea, text
		return stored, styleDefault, nil
	}
}

// encodedLen is the length of raw once encoded.
func encodedLen(enc string, n int, st style) int {
	switch enc {
	case EncodingBase64, EncodingBase64URL:
		if st == styleUnpadded {
			return base64.RawStdEncoding.EncodedLen(n)
		}
		return base64.StdEncoding.EncodedLen(n)
	case EncodingHex:
		return hex.EncodedLen(n)
	}
	return n
}

// encodeStored is the inverse of decodeStored, written into out (which
// must have encodedLen bytes). A base64 value whose padding cannot be
// told from the value it replaces is padded (RFC 4648).
func encodeStored(enc string, raw []byte, st style, out []byte) error {
	switch enc {
	case EncodingBase64, EncodingBase64URL:
		e := base64.StdEncoding
		if enc == EncodingBase64URL {
			e = base64.URLEncoding
		}
		if st == styleUnpadded {
			e = e.WithPadding(base64.NoPadding)
		}
		e.Encode(out, raw)
	case EncodingHex:
		hex.Encode(out, raw)
		if st == styleUpper {
			for i, c := range out {
				if c >= 'a' && c <= 'f' {
					out[i] = c - 'a' + 'A'
				}
			}
		}
	case EncodingText:
		if !utf8.Valid(raw) || bytes.IndexByte(raw, 0) >= 0 {
			return rekey.Errorf(rekey.CodeInvalid, "reencrypt: the codec's output is not text; it cannot go to a text column").
				WithHint("set encoding to base64, hex or bytea")
		}
		copy(out, raw)
	default:
		copy(out, raw)
	}
	return nil
}

// splitHeader returns the fingerprint and body of a value that starts
// with the key-id header.
func splitHeader(raw []byte) (fp [fingerprintLen]byte, body []byte, ok bool) {
	if len(raw) < headerLen || string(raw[:len(headerMagic)]) != headerMagic {
		return fp, nil, false
	}
	copy(fp[:], raw[len(headerMagic):headerLen])
	return fp, raw[headerLen:], true
}

// keyring opens stored values with a list of keys and seals new ones with
// one of them.
type keyring struct {
	encoding string
	keys     []*key
	sealWith int  // index of the key new ciphertexts are sealed with
	header   bool // prefix new ciphertexts with the key-id header
}

// opened is what open found.
type opened struct {
	idx  int // key index; -1: opens with no key (or not decodable)
	pt   []byte
	meta uint64
	st   style
}

// scratch holds one goroutine's buffers, reused from value to value.
type scratch struct {
	raw, pt, sealed, raw2, pt2 []byte
}

// open finds the key a stored value opens with. pref is the key tried
// first when the value has no header (the one that opened the previous
// value, usually). The plaintext lives in sc (nil: fresh memory) until
// the next call. A non-nil error is a failure of the codec itself (the
// command codec's program died), never "does not open".
func (kr *keyring) open(stored []byte, pref int, sc *scratch) (opened, error) {
	if sc == nil {
		sc = &scratch{}
	}
	o, raw, pt, err := kr.open2(stored, pref, sc.raw, sc.pt)
	sc.raw, sc.pt = raw, pt
	return o, err
}

func (kr *keyring) open2(stored []byte, pref int, rawBuf, ptBuf []byte) (opened, []byte, []byte, error) {
	raw, st, err := decodeStored(kr.encoding, stored, rawBuf)
	if err != nil {
		return opened{idx: -1}, rawBuf, ptBuf, nil
	}
	if kr.encoding != EncodingBytea && kr.encoding != EncodingText {
		rawBuf = raw[:0] // decoded into (a grown) rawBuf
	}
	try := func(i int, body []byte) (opened, bool, error) {
		pt, meta, err := kr.keys[i].c.open(ptBuf[:0], body)
		if err == nil {
			if cap(pt) >= cap(ptBuf) {
				ptBuf = pt[:0]
			}
			return opened{idx: i, pt: pt, meta: meta, st: st}, true, nil
		}
		if !errors.Is(err, errNoOpen) {
			return opened{}, false, err
		}
		return opened{}, false, nil
	}
	if fp, body, ok := splitHeader(raw); ok {
		for i, k := range kr.keys {
			if k.fp == fp {
				o, ok, err := try(i, body)
				if ok || err != nil {
					return o, rawBuf, ptBuf, err
				}
				break
			}
		}
	}
	tried := -1
	if pref >= 0 && pref < len(kr.keys) {
		o, ok, err := try(pref, raw)
		if ok || err != nil {
			return o, rawBuf, ptBuf, err
		}
		tried = pref
	}
	for i := range kr.keys {
		if i == tried {
			continue
		}
		o, ok, err := try(i, raw)
		if ok || err != nil {
			return o, rawBuf, ptBuf, err
		}
	}
	return opened{idx: -1}, rawBuf, ptBuf, nil
}

// errVerify means a fresh ciphertext did not decrypt back to its plaintext.
var errVerify = errors.New("a new ciphertext did not decrypt back to its plaintext")

// seal encrypts pt with the sealing key, in the column's form (allocated
// from ar; nil: fresh memory), and checks that the result opens through
// the whole decode path, with the sealing key, to pt again.
func (kr *keyring) seal(pt []byte, meta uint64, st style, sc *scratch, ar *arena) ([]byte, error) {
	if sc == nil {
		sc = &scratch{}
	}
	k := kr.keys[kr.sealWith]
	raw := sc.sealed[:0]
	if kr.header {
		raw = append(raw, headerMagic...)
		raw = append(raw, k.fp[:]...)
	}
	raw, err := k.c.seal(raw, pt, meta)
	if err != nil {
		return nil, err
	}
	sc.sealed = raw[:0]
	var out []byte
	if ar != nil {
		out = ar.alloc(encodedLen(kr.encoding, len(raw), st))
	} else {
		out = make([]byte, encodedLen(kr.encoding, len(raw), st))
	}
	if err := encodeStored(kr.encoding, raw, st, out); err != nil {
		return nil, err
	}
	back, raw2, pt2, err := kr.open2(out, kr.sealWith, sc.raw2, sc.pt2)
	sc.raw2, sc.pt2 = raw2, pt2
	if err != nil {
		return nil, err
	}
	if back.idx != kr.sealWith || !bytes.Equal(back.pt, pt) {
		return nil, &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: "reencrypt", Err: errVerify,
			Hint: "nothing of this batch was written; the codec (or the command codec's program) is broken"}
	}
	return out, nil
}
