package reencrypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestKeyEncodings: a 32-byte key is accepted in base64, base64url
// (padded or not) and hex (either case), all meaning the same key; other
// sizes and alphabets are refused without quoting the key.
func TestKeyEncodings(t *testing.T) {
	raw := make([]byte, 32)
	rand.Read(raw)
	raw[0], raw[1] = 0xfb, 0xff // '+' '/' in base64, '-' '_' in base64url
	forms := map[string]string{
		"base64":        base64.StdEncoding.EncodeToString(raw),
		"base64 raw":    base64.RawStdEncoding.EncodeToString(raw),
		"base64url":     base64.URLEncoding.EncodeToString(raw),
		"base64url raw": base64.RawURLEncoding.EncodeToString(raw),
		"hex":           hex.EncodeToString(raw),
		"HEX":           strings.ToUpper(hex.EncodeToString(raw)),
		"padded":        "  " + base64.StdEncoding.EncodeToString(raw) + "\n",
	}
	for _, codec := range []string{CodecAESGCM, CodecChaCha} {
		cfg := rekey.ReencryptSpec{Codec: codec}
		want, err := Fingerprint(codec, rekey.NewValue([]byte(forms["base64"])))
		if err != nil {
			t.Fatal(err)
		}
		ref := mustCipher(t, cfg, rekey.NewValueString(forms["base64"]))
		ct := encrypt(t, ref, "hello")
		for name, f := range forms {
			fp, err := Fingerprint(codec, rekey.NewValueString(f))
			if err != nil || fp != want {
				t.Fatalf("%s %s: fingerprint %x %v, want %x", codec, name, fp, err, want)
			}
			c := mustCipher(t, cfg, rekey.NewValueString(f))
			if pt, err := c.Decrypt(ct); err != nil || string(pt) != "hello" {
				t.Fatalf("%s %s: %q %v", codec, name, pt, err)
			}
		}
	}
	// Fernet keys are base64 (URL-safe, as Fernet.generate_key) of 32 bytes.
	if _, err := NewCipher(rekey.ReencryptSpec{Codec: CodecFernet}, rekey.NewValueString(forms["base64url"]), nil); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"16 bytes":        base64.StdEncoding.EncodeToString(raw[:16]),
		"33 bytes":        base64.StdEncoding.EncodeToString(append(raw, 1)),
		"hex 31":          hex.EncodeToString(raw[:31]),
		"passphrase":      "correct horse battery staple, 32b",
		"mixed alphabets": strings.Replace(forms["base64"], forms["base64"][:4], "-_+/", 1),
		"empty":           "",
	}
	for name, k := range bad {
		for _, codec := range []string{CodecAESGCM, CodecChaCha, CodecFernet} {
			if codec == CodecFernet && name == "hex 31" {
				continue
			}
			_, err := NewCipher(rekey.ReencryptSpec{Codec: codec}, rekey.NewValueString(k), nil)
			if err == nil {
				t.Fatalf("%s %s: accepted", codec, name)
			}
			if rekey.ErrorCode(err) != rekey.CodeInvalid {
				t.Fatalf("%s %s: code %v", codec, name, rekey.ErrorCode(err))
			}
			if k != "" && strings.Contains(err.Error()+rekey.ErrorHint(err), strings.TrimSpace(k)) {
				t.Fatalf("%s %s: the error quotes the key: %v", codec, name, err)
			}
		}
	}
}

func codecConfigs() []rekey.ReencryptSpec {
	var out []rekey.ReencryptSpec
	for _, codec := range []string{CodecAESGCM, CodecChaCha} {
		for _, enc := range []string{EncodingBase64, EncodingBase64URL, EncodingHex, EncodingBytea} {
			out = append(out, rekey.ReencryptSpec{Codec: codec, Encoding: enc}, rekey.ReencryptSpec{Codec: codec, Encoding: enc, KeyID: true})
		}
	}
	return append(out, rekey.ReencryptSpec{Codec: CodecFernet}, rekey.ReencryptSpec{Codec: CodecFernet, Encoding: EncodingBytea})
}

func keyFor(t testing.TB, codec string) rekey.Value {
	if codec == CodecFernet {
		return newKey32(t, "base64url")
	}
	return newKey32(t, "base64")
}

// TestCipherRoundTrip: every codec × encoding × key-id combination
// decrypts what it encrypts (empty, short, long, binary plaintexts), never
// with another key, and its ciphertexts are fresh each time.
func TestCipherRoundTrip(t *testing.T) {
	big := make([]byte, 70000)
	rand.Read(big)
	pts := [][]byte{{}, []byte("a"), []byte("patient@example.com"), []byte("ünïcødé ✓"), big}
	for _, cfg := range codecConfigs() {
		name := fmt.Sprintf("%s/%s/keyid=%t", cfg.Codec, normalized(cfg).Encoding, cfg.KeyID)
		k1, k2 := keyFor(t, cfg.Codec), keyFor(t, cfg.Codec)
		c1, c2 := mustCipher(t, cfg, k1), mustCipher(t, cfg, k2)
		for _, pt := range pts {
			a, b := encrypt(t, c1, string(pt)), encrypt(t, c1, string(pt))
			if bytes.Equal(a, b) {
				t.Fatalf("%s: two encryptions are equal", name)
			}
			got, err := c1.Decrypt(a)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s: round trip of %d bytes: %v", name, len(pt), err)
			}
			if _, err := c2.Decrypt(a); !errors.Is(err, ErrNoOpen) {
				t.Fatalf("%s: opened with another key: %v", name, err)
			}
			if enc := normalized(cfg).Encoding; enc != EncodingBytea && enc != EncodingText && len(pt) < 100 {
				for _, ch := range a {
					if ch < 0x21 || ch > 0x7e {
						t.Fatalf("%s: stored form is not printable: %q", name, a)
					}
				}
			}
		}
	}
}

// TestKeyIDHeader: with KeyID, a new ciphertext is "rki\x01" ||
// fingerprint || the codec's bytes; the fingerprint is the documented
// HMAC; readers accept headed and unheaded values alike, and a reader
// picks the key from the header.
func TestKeyIDHeader(t *testing.T) {
	k := newKey32(t, "hex")
	headed := mustCipher(t, rekey.ReencryptSpec{KeyID: true, Encoding: EncodingBytea}, k)
	plain := mustCipher(t, rekey.ReencryptSpec{Encoding: EncodingBytea}, k)
	ct := encrypt(t, headed, "x")
	fp, _ := Fingerprint(CodecAESGCM, k)
	if !bytes.HasPrefix(ct, append([]byte("rki\x01"), fp[:]...)) || len(ct) != 8+12+1+16 {
		t.Fatalf("headed ciphertext % x", ct[:8])
	}
	for _, c := range []*Cipher{headed, plain} {
		for _, v := range [][]byte{ct, encrypt(t, plain, "x")} {
			if pt, err := c.Decrypt(v); err != nil || string(pt) != "x" {
				t.Fatalf("decrypt: %q %v", pt, err)
			}
		}
	}
	// The documented fingerprint: HMAC-SHA256(key bytes, "rekey key-id v1")[:4]
	// (vector computed with Python's hmac module).
	vector, err := Fingerprint(CodecAESGCM, rekey.NewValueString("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))
	if err != nil || hex.EncodeToString(vector[:]) != "291609a3" {
		t.Fatalf("fingerprint vector %x %v", vector, err)
	}
	// A two-key ring: a headed value is opened by the key it names first.
	kr, _, err := newRing(normalized(rekey.ReencryptSpec{KeyID: true, Encoding: EncodingBytea}), []rekey.Value{newKey32(t, "base64"), k}, []string{"a", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := kr.open(ct, 0, nil)
	if err != nil || o.idx != 1 || string(o.pt) != "x" {
		t.Fatalf("ring open: %+v %v", o, err)
	}
	// An unheaded value whose first bytes happen to look like a header
	// still opens (the header is only a hint).
	gcm := kr.keys[1].c.(aeadCipher).a
	nonce := append(append([]byte("rki\x01"), fp[:]...), 1, 2, 3, 4)
	odd := gcm.Seal(append([]byte{}, nonce...), nonce, []byte("y"), nil)
	if o, err := kr.open(odd, 0, nil); err != nil || o.idx != 1 || string(o.pt) != "y" {
		t.Fatalf("unheaded value with a header-like nonce: %+v %v", o, err)
	}
}

// TestEncodingStyle: a replacement keeps the style of the value it
// replaces: base64 padding or not, hex case.
func TestEncodingStyle(t *testing.T) {
	for _, tc := range []struct {
		enc, in string
	}{
		{EncodingBase64, "YWJjZA=="}, {EncodingBase64, "YWJjZA"}, {EncodingBase64URL, "_-8="}, {EncodingBase64URL, "_-8"},
		{EncodingHex, "00ff"}, {EncodingHex, "00FF"},
	} {
		raw, st, err := decodeStored(tc.enc, []byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%s %q: %v", tc.enc, tc.in, err)
		}
		out := make([]byte, encodedLen(tc.enc, len(raw), st))
		if err := encodeStored(tc.enc, raw, st, out); err != nil || string(out) != tc.in {
			t.Fatalf("%s %q: re-encoded as %q (%v)", tc.enc, tc.in, out, err)
		}
	}
	for _, tc := range []struct{ enc, in string }{
		{EncodingBase64, "YW Jj"}, {EncodingBase64, "_-8="}, {EncodingBase64URL, "+/8="}, {EncodingHex, "0g"}, {EncodingHex, "abc"},
	} {
		if _, _, err := decodeStored(tc.enc, []byte(tc.in), nil); err == nil {
			t.Fatalf("%s %q: decoded", tc.enc, tc.in)
		}
	}
}

// TestFernetTimestampKept: re-sealing a Fernet token keeps its timestamp
// (as MultiFernet.rotate does).
func TestFernetTimestampKept(t *testing.T) {
	cfg := normalized(rekey.ReencryptSpec{Codec: CodecFernet})
	kr, _, err := newRing(cfg, []rekey.Value{keyFor(t, CodecFernet), keyFor(t, CodecFernet)}, []string{"old", "new"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr.sealWith = 0
	tok, err := kr.keys[0].c.seal(nil, []byte("hi"), 1234567890)
	if err != nil {
		t.Fatal(err)
	}
	kr.sealWith = 1
	o, err := kr.open(tok, 0, nil)
	if err != nil || o.idx != 0 || o.meta != 1234567890 {
		t.Fatalf("%+v %v", o, err)
	}
	nv, err := kr.seal(o.pt, o.meta, o.st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := kr.open(nv, 1, nil)
	if err != nil || o2.idx != 1 || o2.meta != 1234567890 || string(o2.pt) != "hi" {
		t.Fatalf("%+v %v", o2, err)
	}
}

// FuzzOpen: opening arbitrary input never panics, whatever the codec,
// encoding or header, and a value that opens decrypts to what sealing it
// gave.
func FuzzOpen(f *testing.F) {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	key := rekey.NewValueString(base64.URLEncoding.EncodeToString(k))
	var rings []*keyring
	for _, cfg := range codecConfigs() {
		cfg = normalized(cfg)
		kr, _, err := newRing(cfg, []rekey.Value{key, newKey32(f, "base64url")}, []string{"a", "b"}, nil)
		if err != nil {
			f.Fatal(err)
		}
		rings = append(rings, kr)
		c := mustCipher(f, cfg, key)
		f.Add(encrypt(f, c, "seed value"))
	}
	f.Add([]byte("rki\x01\x00\x00\x00\x00"))
	f.Add([]byte("gAAAAA=="))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kr := range rings {
			var sc scratch
			o, err := kr.open(data, 0, &sc)
			if err != nil {
				t.Fatal(err)
			}
			if o.idx >= 0 {
				kr.sealWith = o.idx
				if _, err := kr.seal(o.pt, o.meta, o.st, &sc, nil); err != nil {
					t.Fatalf("re-seal of a value that opened: %v", err)
				}
			}
		}
	})
}

// FuzzParseColumn: the column parser never panics and what it accepts
// prints back to something it parses to the same thing.
func FuzzParseColumn(f *testing.F) {
	for _, s := range []string{"a.b", "s.t.c", `"a.b"."c"`, "t(a, b).c", `"x""y".z`, "t(a).", "((", "a.b.c.d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseColumns([]string{s})
		if err != nil {
			return
		}
		sp := specs[0]
		again := sp.Name()
		if len(sp.PK) > 0 {
			var pks []string
			for _, p := range sp.PK {
				pks = append(pks, displayIdent(p))
			}
			again += "(" + strings.Join(pks, ",") + ")"
		}
		again += "." + displayIdent(sp.Columns[0])
		specs2, err := ParseColumns([]string{again})
		if err != nil || specs2[0].Table != sp.Table || specs2[0].Schema != sp.Schema || specs2[0].Columns[0] != sp.Columns[0] || !equalStrings(specs2[0].PK, sp.PK) {
			t.Fatalf("%q → %q → %+v %v", s, again, specs2, err)
		}
	})
}
