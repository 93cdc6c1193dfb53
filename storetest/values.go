package storetest

// This file holds the tests of what a version holds: its value, exact to
// the byte, its fingerprint, metadata and attributes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
)

func testValueBytes(t *testing.T, s rekey.Store) {
	big := make([]byte, 10*1024)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := []struct {
		name  string
		value []byte
	}{
		{"EMPTY", nil},
		{"NUL", []byte{0}},
		{"NULS", []byte{0, 0, 0, 'a', 0}},
		{"ALL_BYTES", all},
		{"INVALID_UTF8", []byte{0xff, 0xfe, 0xc3, 0x28, 0x80}},
		{"UTF8", []byte("pässwörd-🔑-パスワード")},
		{"WHITESPACE", []byte("  trailing newline\n\r\n\t")},
		{"QUOTES", []byte(`'";--` + "`$(x)\\")},
		{"BIG", big},
	}
	update(t, s, func(tx rekey.Tx) error {
		for _, c := range cases {
			v, err := tx.AddVersion("prod", c.name, rekey.NewVersion{Value: rekey.NewValue(c.value), Label: rekey.LabelCurrent, Source: rekey.SourceImported})
			if err != nil {
				return fmt.Errorf("AddVersion(%s): %w", c.name, err)
			}
			if v.Fingerprint != s.Fingerprint(rekey.NewValue(c.value)) {
				t.Errorf("%s: Version.Fingerprint %s != Store.Fingerprint %s", c.name, v.Fingerprint, s.Fingerprint(rekey.NewValue(c.value)))
			}
		}
		return nil
	})
	view(t, s, func(tx rekey.Tx) error {
		for _, c := range cases {
			got, err := tx.Value("prod", c.name, 1)
			if err != nil {
				return fmt.Errorf("Value(%s): %w", c.name, err)
			}
			checkValue(t, s, c.name, got, c.value)
		}
		return nil
	})
	// The caller's buffer is not kept: changing it after AddVersion changes nothing.
	buf := []byte("mutable buffer value")
	want := bytes.Clone(buf)
	update(t, s, func(tx rekey.Tx) error {
		_, err := tx.AddVersion("prod", "MUTABLE", rekey.NewVersion{Value: rekey.NewValue(buf), Source: rekey.SourceManual})
		for i := range buf {
			buf[i] = 'X'
		}
		return err
	})
	checkValue(t, s, "MUTABLE", readValue(t, s, "prod", "MUTABLE", 1), want)
}

func testFingerprint(t *testing.T, s rekey.Store) {
	a1 := s.Fingerprint(rekey.NewValueString("alpha"))
	a2 := s.Fingerprint(rekey.NewValueString("alpha"))
	b := s.Fingerprint(rekey.NewValueString("beta"))
	empty := s.Fingerprint(rekey.Value{})
	nul := s.Fingerprint(rekey.NewValue([]byte{0}))
	if a1 == "" || b == "" || empty == "" {
		t.Fatalf("empty fingerprint: %q %q %q", a1, b, empty)
	}
	if a1 != a2 {
		t.Errorf("Fingerprint of equal values differs: %s, %s", a1, a2)
	}
	if a1 == b {
		t.Errorf("Fingerprint of distinct values is the same: %s", a1)
	}
	if empty == nul {
		t.Errorf("the empty value and a NUL byte have the same fingerprint %s", empty)
	}
	if strings.Contains(a1, "alpha") || strings.Contains(b, "beta") {
		t.Errorf("a fingerprint contains the value it fingerprints")
	}
	// The fingerprint of a version is the store's fingerprint of its value,
	// whatever secret or environment holds it.
	var vs []rekey.Version
	update(t, s, func(tx rekey.Tx) error {
		for _, p := range []struct{ env, name, value string }{
			{"prod", "A", "alpha"}, {"staging", "A", "alpha"}, {"prod", "B", "alpha"}, {"prod", "A", "beta"},
		} {
			v, err := tx.AddVersion(p.env, p.name, nv(p.value, rekey.LabelCurrent))
			if err != nil {
				return err
			}
			vs = append(vs, v)
		}
		return nil
	})
	for i, want := range []string{a1, a1, a1, b} {
		if vs[i].Fingerprint != want {
			t.Errorf("AddVersion #%d (%s/%s v%d) fingerprint %s, want %s", i, vs[i].Env, vs[i].Name, vs[i].N, vs[i].Fingerprint, want)
		}
	}
	if got := versions(t, s, "prod", "A"); len(got) != 2 || got[0].Fingerprint != a1 || got[1].Fingerprint != b {
		t.Errorf("Versions(prod, A) fingerprints are not [%s %s]", a1, b)
	}
	if s.Fingerprint(rekey.NewValueString("alpha")) != a1 {
		t.Errorf("Fingerprint changed after writes")
	}
}

func testVersionMetadata(t *testing.T, s rekey.Store) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("UTC+1", 3600)
	}
	created := time.Date(2024, time.February, 29, 23, 59, 59, 123456789, paris)
	old := time.Date(1999, time.December, 31, 23, 59, 59, 1, time.UTC)
	in := []rekey.NewVersion{
		{Value: rekey.NewValueString("v1"), Source: rekey.SourceImported, Note: "from .env", CreatedAt: old},
		{Value: rekey.NewValueString("v2"), Label: rekey.LabelPrevious, Source: rekey.SourceGenerated, RotationID: "rot-20240229-1", CreatedAt: created, Attrs: map[string]string{"role": "app_blue", "x": "ünï \"q\""}},
		{Value: rekey.NewValueString("v3"), Label: rekey.LabelCurrent, Source: rekey.SourceRollback, RotationID: "rot-2", Note: "rollback of v1 — ünïcode 'quoted'", CreatedAt: created.Add(time.Nanosecond)},
		{Value: rekey.NewValueString("v4"), Label: rekey.LabelPending, Source: rekey.SourceManual, Note: strings.Repeat("n", 1000), CreatedAt: created.Add(time.Hour)},
	}
	var added []rekey.Version
	update(t, s, func(tx rekey.Tx) error {
		for _, v := range in {
			got, err := tx.AddVersion("prod", "META", v)
			if err != nil {
				return err
			}
			added = append(added, got)
		}
		return nil
	})
	for i, v := range added {
		want := rekey.Version{
			Env: "prod", Name: "META", N: i + 1, Label: in[i].Label, CreatedAt: in[i].CreatedAt,
			Fingerprint: s.Fingerprint(in[i].Value), Source: in[i].Source, RotationID: in[i].RotationID, Note: in[i].Note, Attrs: in[i].Attrs,
		}
		if d := cmp.Diff(want, v); d != "" {
			t.Errorf("AddVersion #%d returned (-want +got):\n%s", i+1, d)
		}
	}
	got := versions(t, s, "prod", "META")
	if d := cmp.Diff(added, got); d != "" {
		t.Errorf("Versions differ from what AddVersion returned (-added +read):\n%s", d)
	}
	for i, v := range got {
		if v.CreatedAt.Location() != time.UTC {
			t.Errorf("v%d CreatedAt is in %v, want UTC", v.N, v.CreatedAt.Location())
		}
		if !v.CreatedAt.Equal(in[i].CreatedAt) || v.CreatedAt.Nanosecond() != in[i].CreatedAt.Nanosecond() {
			t.Errorf("v%d CreatedAt = %s, want %s (to the nanosecond)", v.N, v.CreatedAt.Format(time.RFC3339Nano), in[i].CreatedAt.UTC().Format(time.RFC3339Nano))
		}
	}
	// Labeled returns the same metadata.
	view(t, s, func(tx rekey.Tx) error {
		cur, err := tx.Labeled("prod", "META", rekey.LabelCurrent)
		if err != nil {
			return err
		}
		if d := cmp.Diff(got[2], cur); d != "" {
			t.Errorf("Labeled(current) differs from Versions (-Versions +Labeled):\n%s", d)
		}
		return nil
	})
	// A zero CreatedAt means now.
	before := time.Now()
	v := add(t, s, "prod", "NOW", rekey.NewVersion{Value: rekey.NewValueString("x"), Source: rekey.SourceGenerated})
	after := time.Now()
	const slack = time.Minute // a server store may use its own clock
	if v.CreatedAt.IsZero() || v.CreatedAt.Before(before.Add(-slack)) || v.CreatedAt.After(after.Add(slack)) {
		t.Errorf("a zero CreatedAt became %s, want about %s", v.CreatedAt.Format(time.RFC3339Nano), before.UTC().Format(time.RFC3339Nano))
	}
	if got := versions(t, s, "prod", "NOW"); len(got) != 1 || !got[0].CreatedAt.Equal(v.CreatedAt) {
		t.Errorf("the CreatedAt AddVersion returned is not the one read back")
	}
}

func testSetAttrs(t *testing.T, s rekey.Store) {
	update(t, s, func(tx rekey.Tx) error {
		_, err := tx.AddVersion("prod", "ATTRS", rekey.NewVersion{Value: rekey.NewValueString("v1"), Label: rekey.LabelCurrent, Attrs: map[string]string{"role": "app_blue"}})
		return err
	})
	update(t, s, func(tx rekey.Tx) error {
		return tx.SetAttrs("prod", "ATTRS", 1, map[string]string{"role": "app_blue", "grace_until": "2026-01-01T00:00:00Z"})
	})
	vs := versions(t, s, "prod", "ATTRS")
	if d := cmp.Diff(map[string]string{"role": "app_blue", "grace_until": "2026-01-01T00:00:00Z"}, vs[0].Attrs); d != "" {
		t.Errorf("attrs after SetAttrs (-want +got):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		v, err := tx.Labeled("prod", "ATTRS", rekey.LabelCurrent)
		if err != nil {
			return err
		}
		if v.Attrs["grace_until"] == "" {
			t.Errorf("Labeled does not return attrs: %v", v.Attrs)
		}
		all, err := tx.AllLabeled("prod", rekey.LabelCurrent)
		if err != nil {
			return err
		}
		if all["ATTRS"].Attrs["role"] != "app_blue" {
			t.Errorf("AllLabeled does not return attrs: %v", all["ATTRS"].Attrs)
		}
		return nil
	})
	update(t, s, func(tx rekey.Tx) error { return tx.SetAttrs("prod", "ATTRS", 1, nil) })
	if vs := versions(t, s, "prod", "ATTRS"); len(vs[0].Attrs) != 0 {
		t.Errorf("attrs after SetAttrs(nil) = %v, want none", vs[0].Attrs)
	}
	err := s.Update(context.Background(), func(tx rekey.Tx) error { return tx.SetAttrs("prod", "ATTRS", 9, nil) })
	if !errors.Is(err, rekey.ErrNotFound) {
		t.Errorf("SetAttrs of a missing version = %v, want ErrNotFound", err)
	}
}
