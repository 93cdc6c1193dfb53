package sqlite

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAttrsRoundTrip: any byte may stand in an attribute (a PostgreSQL role
// name can hold \x01), and the form is canonical.
func TestAttrsRoundTrip(t *testing.T) {
	for _, a := range []map[int]map[string]string{
		{},
		{1: {"role": "app_blue"}},
		{2: {"role": "we\x00ird\x01role", "grace_until": "2026-01-01T00:00:00Z"}, 10: {"": ""}, 300: {"exposed": "emergency r1"}},
	} {
		got, err := decodeAttrs(encodeAttrs(a))
		if err != nil {
			t.Fatalf("%v: %v", a, err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
}

// FuzzDecoders: the store's own encodings (version lists, attributes, the
// manifest) never panic on any input and accept only their canonical form.
func FuzzDecoders(f *testing.F) {
	f.Add([]byte("1-3,5"))
	f.Add([]byte(encodeAttrs(map[int]map[string]string{1: {"role": "a"}, 7: {"x": "y"}})))
	m := newManifest()
	m.secrets["production\x00JWT_SECRET"] = manEntry{id: 1, tag: bytes.Repeat([]byte{1}, manifestTag)}
	m.rotations["r1"] = manEntry{env: "production", tag: bytes.Repeat([]byte{2}, manifestTag)}
	m.auditSeq, m.auditHash = 9, []byte("hash")
	f.Add(m.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if vs, err := decodeVset(string(b)); err == nil && encodeVset(vs) != string(b) {
			t.Fatalf("vset %q accepted but not canonical (%q)", b, encodeVset(vs))
		}
		if a, err := decodeAttrs(string(b)); err == nil && encodeAttrs(a) != string(b) {
			t.Fatalf("attrs %q accepted but not canonical", b)
		}
		if m, err := decodeManifest(b); err == nil {
			if _, err := decodeManifest(m.encode()); err != nil {
				t.Fatalf("manifest re-encoding does not decode: %v", err)
			}
		}
	})
}
