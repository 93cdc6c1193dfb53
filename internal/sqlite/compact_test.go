package sqlite

import (
	"bytes"
	"testing"

	"github.com/rekeyhq/rekey"
)

func TestPackValueRoundTrip(t *testing.T) {
	cases := []struct {
		in   string
		form byte
	}{
		{"", formRaw},
		{"short", formRaw},
		{"dGhpcyBpcyBhIHNlY3JldCB2YWx1ZQ==", formBase64},                   // padded
		{"dGhpcyBpcyBhIHNlY3JldCB2YWx1ZQ", formBase64Raw},                  // no padding
		{"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_", formBase64URL},                // URL alphabet, no padding needed
		{"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8", formBase64URLRaw},          // URL alphabet, padding left out
		{"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=", formBase64URL},            // URL, padded
		{"0123456789abcdef0123456789abcdef", formBase64},                   // hex digits are also base64: either form is exact
		{"dGhpcyBpcyBhIHNlY3JldCB2YWx1ZR==", formRaw},                      // non-canonical padding bits
		{"0123456789ABCDEF0123456789ABCDEF", formBase64},                   // upper-case hex reads as base64
		{"correct horse battery staple", formRaw},                          // spaces
		{"sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", formRaw}, // dashes and letters, length not a multiple of 4
		{"line\nbreak\x00nul\xff", formRaw},
	}
	for _, c := range cases {
		p := packValue([]byte(c.in))
		if p[0] != c.form {
			t.Errorf("%q packs to form %d, want %d", c.in, p[0], c.form)
		}
		got, err := unpackValue(p)
		if err != nil || string(got) != c.in {
			t.Errorf("%q → %q, %v", c.in, got, err)
		}
		if len(p) > len(c.in)+1 {
			t.Errorf("%q packs to %d bytes, longer than itself + 1", c.in, len(p))
		}
	}
	if _, err := unpackValue(nil); err == nil {
		t.Error("empty plaintext unpacked")
	}
	if _, err := unpackValue([]byte{99, 1}); err == nil {
		t.Error("unknown form unpacked")
	}
}

func FuzzPackValue(f *testing.F) {
	for _, s := range []string{"", "abc", "dGhpcyBpcyBhIHNlY3JldCB2YWx1ZQ==", "00ff00ff00ff00ff", "-_-_-_-_-_-_"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := unpackValue(packValue(v))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%q → %q, %v", v, got, err)
		}
		unpackValue(v) // never panics on arbitrary input
	})
}

func TestPackedColumnsRoundTrip(t *testing.T) {
	for _, s := range []string{"fp:0011223344556677", "fp:00112233445566778", "fp:ABCDEF0011223344", "", "whatever"} {
		var got string
		if err := (fpCol{&got}).Scan(asDriver(packFP(s))); err != nil || got != s {
			t.Errorf("fingerprint %q → %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"20260101T000000Z-0badf00d", "20260101T000000Z-0BADF00D", "rot-1", "", "19000101T000000Z-00000000", "21100101T000000Z-00000000"} {
		var got string
		if err := (rotIDCol{&got}).Scan(asDriver(packRotationID(s))); err != nil || got != s {
			t.Errorf("rotation id %q → %q, %v", s, got, err)
		}
	}
	for _, s := range []rekey.Source{rekey.SourceGenerated, rekey.SourceImported, rekey.SourceManual, rekey.SourceRollback, "future-source"} {
		var got rekey.Source
		if err := (sourceCol{&got}).Scan(packSource(s)); err != nil || got != s {
			t.Errorf("source %q → %q, %v", s, got, err)
		}
	}
}

// asDriver is what the driver hands Scan for a value written as v.
func asDriver(v any) any { return v }
