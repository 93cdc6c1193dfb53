package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/rekeyhq/rekey/seal"
)

var (
	testPlaintext = []byte("correct horse battery staple")
	testAD        = seal.AD("prod", "DB_PASSWORD", "3")
)

func TestSealOpenRoundTrip(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	for _, pt := range [][]byte{nil, {}, {0}, testPlaintext, bytes.Repeat([]byte{0xab}, 1<<16)} {
		for _, ad := range [][]byte{nil, {}, testAD} {
			sealed := s.Seal(pt, ad)
			if len(sealed) != len(pt)+seal.Overhead {
				t.Fatalf("len(Seal) = %d, want %d", len(sealed), len(pt)+seal.Overhead)
			}
			got, err := s.Open(sealed, ad)
			if err != nil {
				t.Fatalf("Open(Seal(%d bytes)): %v", len(pt), err)
			}
			if got == nil || !bytes.Equal(got, pt) {
				t.Fatalf("Open returned %d bytes (nil=%v), want the %d-byte plaintext", len(got), got == nil, len(pt))
			}
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	a, b := s.Seal(testPlaintext, testAD), s.Seal(testPlaintext, testAD)
	if bytes.Equal(a, b) {
		t.Fatal("sealing twice gave identical output")
	}
	if bytes.Equal(a[1:25], b[1:25]) {
		t.Fatal("sealing twice reused the nonce")
	}
	if bytes.Contains(a, testPlaintext) {
		t.Fatal("sealed output contains the plaintext")
	}
}

func TestSealDoesNotModifyInputs(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	pt := make([]byte, len(testPlaintext), 1024) // spare capacity must not be used
	copy(pt, testPlaintext)
	ad := bytes.Clone(testAD)
	sealed := s.Seal(pt, ad)
	if !bytes.Equal(pt, testPlaintext) || !bytes.Equal(pt[:cap(pt)][len(pt):], make([]byte, cap(pt)-len(pt))) || !bytes.Equal(ad, testAD) {
		t.Fatal("Seal modified its arguments")
	}
	orig := bytes.Clone(sealed)
	if _, err := s.Open(sealed, ad); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sealed, orig) {
		t.Fatal("Open modified its argument")
	}
}

// TestSealFormat checks the documented wire format against an independent
// XChaCha20-Poly1305 under HKDF-SHA256(master, info "rekey seal v1").
func TestSealFormat(t *testing.T) {
	k := fixedKey(t)
	s := seal.NewSealer(k)
	aead, err := chacha20poly1305.NewX(k.Derive("rekey seal v1"))
	if err != nil {
		t.Fatal(err)
	}

	sealed := s.Seal(testPlaintext, testAD)
	if sealed[0] != 0x01 {
		t.Fatalf("version byte = %#x, want 0x01", sealed[0])
	}
	pt, err := aead.Open(nil, sealed[1:25], sealed[25:], testAD)
	if err != nil || !bytes.Equal(pt, testPlaintext) {
		t.Fatalf("independent AEAD cannot open Seal output: %v", err)
	}

	nonce := bytes.Repeat([]byte{7}, 24)
	ext := append([]byte{0x01}, nonce...)
	ext = aead.Seal(ext, nonce, testPlaintext, testAD)
	pt, err = s.Open(ext, testAD)
	if err != nil || !bytes.Equal(pt, testPlaintext) {
		t.Fatalf("Open cannot read a value built to the documented format: %v", err)
	}
}

// assertOpenFails checks that Open rejects sealed/ad with exactly ErrOpen.
func assertOpenFails(t *testing.T, s *seal.Sealer, sealed, ad []byte, what string) {
	t.Helper()
	pt, err := s.Open(sealed, ad)
	if err == nil {
		t.Fatalf("%s: Open succeeded", what)
	}
	if err != seal.ErrOpen || !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("%s: Open error = %v, want ErrOpen", what, err)
	}
	if pt != nil {
		t.Fatalf("%s: Open returned %d bytes with its error", what, len(pt))
	}
}

func TestOpenWrongKey(t *testing.T) {
	sealed := seal.NewSealer(newKey(t)).Seal(testPlaintext, testAD)
	assertOpenFails(t, seal.NewSealer(newKey(t)), sealed, testAD, "wrong key")
}

func TestOpenMovedRecord(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	sealed := s.Seal(testPlaintext, seal.AD("prod", "DB_PASSWORD", "3"))
	for name, ad := range map[string][]byte{
		"other environment":      seal.AD("staging", "DB_PASSWORD", "3"),
		"other name":             seal.AD("prod", "API_TOKEN", "3"),
		"other version":          seal.AD("prod", "DB_PASSWORD", "4"),
		"parts shifted":          seal.AD("prodDB_PASSWORD", "3"),
		"part missing":           seal.AD("prod", "DB_PASSWORD"),
		"extra part":             seal.AD("prod", "DB_PASSWORD", "3", ""),
		"no ad":                  nil,
		"raw concatenation":      []byte("prodDB_PASSWORD3"),
		"ad with one bit off":    flip(seal.AD("prod", "DB_PASSWORD", "3"), 12, 0x01),
		"ad with trailing byte":  append(seal.AD("prod", "DB_PASSWORD", "3"), 0),
		"ad truncated by a byte": seal.AD("prod", "DB_PASSWORD", "3")[:len(seal.AD("prod", "DB_PASSWORD", "3"))-1],
	} {
		assertOpenFails(t, s, sealed, ad, name)
	}
}

func flip(b []byte, i int, mask byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= mask
	return c
}

func TestOpenTampered(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	sealed := s.Seal(testPlaintext, testAD)
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
			assertOpenFails(t, s, flip(sealed, i, mask), testAD, fmt.Sprintf("byte %d ^ %#02x", i, mask))
		}
	}
	if _, err := s.Open(sealed, testAD); err != nil {
		t.Fatal("original stopped opening; flips must not alias it")
	}
}

func TestOpenTruncated(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	for _, pt := range [][]byte{nil, testPlaintext} {
		sealed := s.Seal(pt, testAD)
		for n := range len(sealed) {
			assertOpenFails(t, s, sealed[:n], testAD, fmt.Sprintf("prefix of %d bytes", n))
			assertOpenFails(t, s, sealed[len(sealed)-n:], testAD, fmt.Sprintf("suffix of %d bytes", n))
		}
		assertOpenFails(t, s, append(bytes.Clone(sealed), 0), testAD, "extended by a byte")
	}
}

func TestOpenUnknownVersion(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	sealed := s.Seal(testPlaintext, testAD)
	for _, v := range []byte{0x00, 0x02, 0x7f, 0x80, 0xff} {
		c := bytes.Clone(sealed)
		c[0] = v
		assertOpenFails(t, s, c, testAD, fmt.Sprintf("version %#02x", v))
	}
}

func TestOpenGarbage(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	for name, in := range map[string][]byte{
		"nil":                 nil,
		"empty":               {},
		"version only":        {0x01},
		"header only":         append([]byte{0x01}, make([]byte, 24)...),
		"zero tag":            append([]byte{0x01}, make([]byte, 40)...),
		"plaintext as sealed": testPlaintext,
		"long zeros":          make([]byte, 4096),
	} {
		assertOpenFails(t, s, in, testAD, name)
	}
}

func TestErrOpenIsOpaque(t *testing.T) {
	if got := seal.ErrOpen.Error(); got != "seal: message authentication failed" {
		t.Fatalf("ErrOpen = %q", got)
	}
}

func TestSealerFingerprinterRedaction(t *testing.T) {
	k := newKey(t)
	s := seal.NewSealer(k)
	f, err := seal.NewFingerprinter(keyBytes(t, k))
	if err != nil {
		t.Fatal(err)
	}
	holder := struct {
		s  *seal.Sealer
		sv seal.Sealer
		f  *seal.Fingerprinter
		fv seal.Fingerprinter
	}{s, *s, f, *f}
	for _, verb := range []string{"%v", "%s", "%q", "%x", "%X", "%#v", "%+v", "%d"} {
		for _, v := range []any{s, *s, f, *f, holder, &holder} {
			out := fmt.Sprintf(verb, v)
			assertNoLeak(t, fmt.Sprintf("Sprintf(%q, %T)", verb, v), out, k.Derive("rekey seal v1"))
			assertNoLeak(t, fmt.Sprintf("Sprintf(%q, %T)", verb, v), out, keyBytes(t, k))
		}
		if got := fmt.Sprintf(verb, s); got != "[REDACTED]" {
			t.Errorf("Sprintf(%q, sealer) = %q", verb, got)
		}
		if got := fmt.Sprintf(verb, f); got != "[REDACTED]" {
			t.Errorf("Sprintf(%q, fingerprinter) = %q", verb, got)
		}
	}
}

func TestAD(t *testing.T) {
	if bytes.Equal(seal.AD("a", "bc"), seal.AD("ab", "c")) {
		t.Fatal(`AD("a","bc") == AD("ab","c")`)
	}
	if got, want := seal.AD("prod", "x"), []byte("rekey-ad-v1\x04prod\x01x"); !bytes.Equal(got, want) {
		t.Fatalf("AD(prod, x) = %q, want %q", got, want)
	}
	if got := seal.AD(); string(got) != "rekey-ad-v1" {
		t.Fatalf("AD() = %q", got)
	}
	long := strings.Repeat("x", 300) // two-byte uvarint length
	if got := seal.AD(long); !bytes.Equal(got, append([]byte("rekey-ad-v1\xac\x02"), long...)) {
		t.Fatalf("AD(300 bytes) has wrong length prefix: %q", got[:14])
	}

	lists := [][]string{
		{}, {""}, {"", ""}, {"", "", ""}, {"a"}, {"a", ""}, {"", "a"},
		{"ab"}, {"a", "b"}, {"abc"}, {"a", "bc"}, {"ab", "c"}, {"a", "b", "c"},
		{"\x01a"}, {"", "\x01a"}, {"\x00"}, {"\x00", ""},
		{long}, {long[:299], "x"}, {"prod", "DB_PASSWORD", "3"}, {"prod", "DB_PASSWORD", "30"},
	}
	for i, a := range lists {
		if !bytes.Equal(seal.AD(a...), seal.AD(a...)) {
			t.Fatalf("AD(%q) is not deterministic", a)
		}
		for _, b := range lists[i+1:] {
			if bytes.Equal(seal.AD(a...), seal.AD(b...)) {
				t.Errorf("AD(%q) == AD(%q)", a, b)
			}
		}
	}
}

func TestSealerConcurrentUse(t *testing.T) {
	s := seal.NewSealer(newKey(t))
	f := newFingerprinter(t, bytes.Repeat([]byte{1}, 32))
	want := f.Fingerprint(testPlaintext)
	done := make(chan error)
	for range 8 {
		go func() {
			for range 100 {
				pt, err := s.Open(s.Seal(testPlaintext, testAD), testAD)
				if err == nil && !bytes.Equal(pt, testPlaintext) {
					err = errors.New("wrong plaintext")
				}
				if err == nil && f.Fingerprint(testPlaintext) != want {
					err = errors.New("fingerprint changed")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
