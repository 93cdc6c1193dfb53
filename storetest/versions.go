package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
)

func testAddVersionNumbering(t *testing.T, s rekey.Store) {
	update(t, s, func(tx rekey.Tx) error {
		for want := 1; want <= 3; want++ {
			v, err := tx.AddVersion("prod", "DB_PASSWORD", nv(fmt.Sprintf("db-%d", want), rekey.LabelNone))
			if err != nil {
				return err
			}
			if v.N != want || v.Env != "prod" || v.Name != "DB_PASSWORD" {
				t.Errorf("AddVersion #%d returned %s/%s v%d, want prod/DB_PASSWORD v%d", want, v.Env, v.Name, v.N, want)
			}
		}
		// Another secret of the same environment counts on its own.
		v, err := tx.AddVersion("prod", "API_KEY", nv("api-1", rekey.LabelNone))
		if err != nil {
			return err
		}
		if v.N != 1 {
			t.Errorf("first version of prod/API_KEY is v%d, want v1", v.N)
		}
		return nil
	})
	// Numbering goes on in a later transaction.
	if v := add(t, s, "prod", "DB_PASSWORD", nv("db-4", rekey.LabelNone)); v.N != 4 {
		t.Errorf("fourth version is v%d, want v4", v.N)
	}
	vs := versions(t, s, "prod", "DB_PASSWORD")
	if got := numbers(vs); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Errorf("Versions lists %v, want [1 2 3 4] (oldest first)", got)
	}
	for _, v := range vs {
		if v.Env != "prod" || v.Name != "DB_PASSWORD" {
			t.Errorf("Versions returned v%d of %s/%s, want prod/DB_PASSWORD", v.N, v.Env, v.Name)
		}
		checkValue(t, s, fmt.Sprintf("v%d", v.N), readValue(t, s, "prod", "DB_PASSWORD", v.N), []byte(fmt.Sprintf("db-%d", v.N)))
	}
	if got := numbers(versions(t, s, "prod", "API_KEY")); !slices.Equal(got, []int{1}) {
		t.Errorf("prod/API_KEY has versions %v, want [1]", got)
	}
}

func testNamespaces(t *testing.T, s rekey.Store) {
	prod := add(t, s, "prod", "TOKEN", nv("prod-token", rekey.LabelCurrent))
	staging := add(t, s, "staging", "TOKEN", nv("staging-token", rekey.LabelCurrent))
	if prod.N != 1 || staging.N != 1 {
		t.Errorf("first versions are prod v%d and staging v%d, want v1 and v1", prod.N, staging.N)
	}
	if prod.Fingerprint == staging.Fingerprint {
		t.Errorf("distinct values have the same fingerprint %s", prod.Fingerprint)
	}
	checkValue(t, s, "prod/TOKEN v1", readValue(t, s, "prod", "TOKEN", 1), []byte("prod-token"))
	checkValue(t, s, "staging/TOKEN v1", readValue(t, s, "staging", "TOKEN", 1), []byte("staging-token"))

	// A second version in prod leaves staging alone, labels included.
	add(t, s, "prod", "TOKEN", nv("prod-token-2", rekey.LabelCurrent))
	if got := numbers(versions(t, s, "staging", "TOKEN")); !slices.Equal(got, []int{1}) {
		t.Errorf("staging/TOKEN has versions %v after a prod AddVersion, want [1]", got)
	}
	if n := labeledN(t, s, "staging", "TOKEN", rekey.LabelCurrent); n != 1 {
		t.Errorf("staging/TOKEN current is v%d, want v1", n)
	}
	if n := labeledN(t, s, "prod", "TOKEN", rekey.LabelCurrent); n != 2 {
		t.Errorf("prod/TOKEN current is v%d, want v2", n)
	}
	// Moving a label in staging leaves prod alone.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel("staging", "TOKEN", 0, rekey.LabelCurrent) })
	if n := labeledN(t, s, "prod", "TOKEN", rekey.LabelCurrent); n != 2 {
		t.Errorf("prod/TOKEN current is v%d after removing staging's, want v2", n)
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Value("staging", "TOKEN", 2)
		wantNotFound(t, "Value(staging, TOKEN, 2) (only prod has a v2)", err)
		_, err = tx.Versions("dev", "TOKEN")
		wantNotFound(t, "Versions(dev, TOKEN)", err)
		return nil
	})
}

func testNamesAndEnvironments(t *testing.T, s rekey.Store) {
	view(t, s, func(tx rekey.Tx) error {
		envs, err := tx.Environments()
		if err != nil {
			return err
		}
		if len(envs) != 0 {
			t.Errorf("Environments of an empty store = %q, want none", envs)
		}
		names, err := tx.Names("prod")
		if err != nil {
			return err
		}
		if len(names) != 0 {
			t.Errorf("Names(prod) of an empty store = %q, want none", names)
		}
		return nil
	})
	update(t, s, func(tx rekey.Tx) error {
		for _, p := range [][2]string{{"prod", "B"}, {"prod", "A"}, {"prod", "C"}, {"staging", "A"}, {"prod", "A"}} {
			if _, err := tx.AddVersion(p[0], p[1], nv("x", rekey.LabelNone)); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx rekey.Tx) error {
		envs, err := tx.Environments()
		if err != nil {
			return err
		}
		if d := cmp.Diff([]string{"prod", "staging"}, sorted(envs)); d != "" {
			t.Errorf("Environments (-want +got):\n%s", d)
		}
		for env, want := range map[string][]string{"prod": {"A", "B", "C"}, "staging": {"A"}, "dev": nil} {
			names, err := tx.Names(env)
			if err != nil {
				return fmt.Errorf("Names(%s): %w", env, err)
			}
			if d := cmp.Diff(want, sorted(names)); d != "" {
				t.Errorf("Names(%s) (-want +got):\n%s", env, d)
			}
		}
		return nil
	})
}

func testAddVersionMovesLabel(t *testing.T, s rekey.Store) {
	const env, name = "prod", "SECRET"
	v1 := add(t, s, env, name, nv("one", rekey.LabelCurrent))
	if v1.Label != rekey.LabelCurrent {
		t.Errorf("AddVersion with label current returned label %q", v1.Label)
	}
	v2 := add(t, s, env, name, nv("two", rekey.LabelCurrent))
	if v2.Label != rekey.LabelCurrent {
		t.Errorf("AddVersion with label current returned label %q", v2.Label)
	}
	if d := cmp.Diff(map[int]rekey.Label{1: "", 2: rekey.LabelCurrent}, labels(t, s, env, name)); d != "" {
		t.Errorf("labels after a second current version (-want +got):\n%s", d)
	}
	// Another label does not touch current.
	add(t, s, env, name, nv("three", rekey.LabelPending))
	add(t, s, env, name, nv("four", rekey.LabelNone))
	if d := cmp.Diff(map[int]rekey.Label{1: "", 2: rekey.LabelCurrent, 3: rekey.LabelPending, 4: ""}, labels(t, s, env, name)); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	if n := labeledN(t, s, env, name, rekey.LabelCurrent); n != 2 {
		t.Errorf("Labeled(current) = v%d, want v2", n)
	}
	if n := labeledN(t, s, env, name, rekey.LabelPending); n != 3 {
		t.Errorf("Labeled(pending) = v%d, want v3", n)
	}
	// Moving a label twice in one transaction.
	update(t, s, func(tx rekey.Tx) error {
		for _, v := range []string{"five", "six"} {
			if _, err := tx.AddVersion(env, name, nv(v, rekey.LabelPending)); err != nil {
				return err
			}
		}
		return nil
	})
	if n := labeledN(t, s, env, name, rekey.LabelPending); n != 6 {
		t.Errorf("Labeled(pending) = v%d, want v6", n)
	}
	checkLabelsUnique(t, s, env, name)
}

func testSetLabel(t *testing.T, s rekey.Store) {
	const env, name = "prod", "SECRET"
	update(t, s, func(tx rekey.Tx) error {
		for i, l := range []rekey.Label{rekey.LabelNone, rekey.LabelPrevious, rekey.LabelCurrent, rekey.LabelPending} {
			if _, err := tx.AddVersion(env, name, nv(fmt.Sprint(i+1), l)); err != nil {
				return err
			}
		}
		return nil
	})
	// Promote the pending version: previous → v3, current → v4, pending removed.
	update(t, s, func(tx rekey.Tx) error {
		if err := tx.SetLabel(env, name, 3, rekey.LabelPrevious); err != nil {
			return fmt.Errorf("SetLabel(3, previous): %w", err)
		}
		if err := tx.SetLabel(env, name, 4, rekey.LabelCurrent); err != nil {
			return fmt.Errorf("SetLabel(4, current): %w", err)
		}
		return nil
	})
	if d := cmp.Diff(map[int]rekey.Label{1: "", 2: "", 3: rekey.LabelPrevious, 4: rekey.LabelCurrent}, labels(t, s, env, name)); d != "" {
		t.Errorf("labels after promotion (-want +got):\n%s", d)
	}
	if n := labeledN(t, s, env, name, rekey.LabelPending); n != 0 {
		t.Errorf("pending still on v%d after v4 became current", n)
	}
	// Setting a label on the version that holds it changes nothing.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel(env, name, 4, rekey.LabelCurrent) })
	if n := labeledN(t, s, env, name, rekey.LabelCurrent); n != 4 {
		t.Errorf("current is v%d after re-setting it on v4", n)
	}
	// Moving back to an old version.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel(env, name, 1, rekey.LabelCurrent) })
	if d := cmp.Diff(map[int]rekey.Label{1: rekey.LabelCurrent, 2: "", 3: rekey.LabelPrevious, 4: ""}, labels(t, s, env, name)); d != "" {
		t.Errorf("labels after moving current to v1 (-want +got):\n%s", d)
	}
	// n == 0 removes the label, and only that label.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel(env, name, 0, rekey.LabelPrevious) })
	if d := cmp.Diff(map[int]rekey.Label{1: rekey.LabelCurrent, 2: "", 3: "", 4: ""}, labels(t, s, env, name)); d != "" {
		t.Errorf("labels after removing previous (-want +got):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Labeled(env, name, rekey.LabelPrevious)
		wantNotFound(t, "Labeled(previous) after removing it", err)
		return nil
	})
	// Removing a label nobody holds is fine.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel(env, name, 0, rekey.LabelPending) })
	checkLabelsUnique(t, s, env, name)
}

func testSetLabelMissingVersion(t *testing.T, s rekey.Store) {
	const env, name = "prod", "SECRET"
	add(t, s, env, name, nv("one", rekey.LabelPrevious))
	add(t, s, env, name, nv("two", rekey.LabelCurrent))
	before := versions(t, s, env, name)
	// The failing SetLabel is in an Update that goes on and commits: the
	// failure itself must change nothing, not merely be rolled back.
	update(t, s, func(tx rekey.Tx) error {
		wantNotFound(t, "SetLabel of missing v9", tx.SetLabel(env, name, 9, rekey.LabelCurrent))
		wantNotFound(t, "SetLabel of missing v-1", tx.SetLabel(env, name, -1, rekey.LabelPrevious))
		wantNotFound(t, "SetLabel on a missing secret", tx.SetLabel(env, "NOPE", 1, rekey.LabelCurrent))
		wantNotFound(t, "SetLabel on a missing environment", tx.SetLabel("nope", name, 1, rekey.LabelCurrent))
		v, err := tx.Labeled(env, name, rekey.LabelCurrent)
		if err != nil {
			return fmt.Errorf("Labeled(current) after a failed SetLabel: %w", err)
		}
		if v.N != 2 {
			t.Errorf("current is v%d inside the transaction after a failed SetLabel, want v2", v.N)
		}
		return nil
	})
	if d := cmp.Diff(before, versions(t, s, env, name)); d != "" {
		t.Errorf("a failed SetLabel changed the versions (-before +after):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Versions(env, "NOPE")
		wantNotFound(t, "Versions of the secret a failed SetLabel named", err)
		return nil
	})
}

func testAllLabeled(t *testing.T, s rekey.Store) {
	update(t, s, func(tx rekey.Tx) error {
		for _, a := range []struct {
			env, name, value string
			l                rekey.Label
		}{
			{"prod", "A", "a1", rekey.LabelCurrent},
			{"prod", "A", "a2", rekey.LabelNone},
			{"prod", "A", "a3", rekey.LabelCurrent},
			{"prod", "B", "b1", rekey.LabelPrevious},
			{"prod", "B", "b2", rekey.LabelCurrent},
			{"prod", "C", "c1", rekey.LabelNone},
			{"staging", "A", "sa1", rekey.LabelCurrent},
		} {
			if _, err := tx.AddVersion(a.env, a.name, rekey.NewVersion{Value: rekey.NewValueString(a.value), Label: a.l, Source: rekey.SourceManual}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx rekey.Tx) error {
		cur, err := tx.AllLabeled("prod", rekey.LabelCurrent)
		if err != nil {
			return fmt.Errorf("AllLabeled(prod, current): %w", err)
		}
		got := map[string]int{}
		for name, v := range cur {
			got[name] = v.N
			if v.Env != "prod" || v.Name != name || v.Label != rekey.LabelCurrent {
				t.Errorf("AllLabeled(prod, current)[%s] is %s/%s v%d labeled %q", name, v.Env, v.Name, v.N, v.Label)
			}
			want, err := tx.Labeled("prod", name, rekey.LabelCurrent)
			if err != nil {
				return err
			}
			if d := cmp.Diff(want, v); d != "" {
				t.Errorf("AllLabeled and Labeled disagree on prod/%s (-Labeled +AllLabeled):\n%s", name, d)
			}
		}
		if d := cmp.Diff(map[string]int{"A": 3, "B": 2}, got); d != "" {
			t.Errorf("AllLabeled(prod, current) (-want +got):\n%s", d)
		}
		prev, err := tx.AllLabeled("prod", rekey.LabelPrevious)
		if err != nil {
			return err
		}
		if len(prev) != 1 || prev["B"].N != 1 {
			t.Errorf("AllLabeled(prod, previous) has %d entries (B: v%d), want only B v1", len(prev), prev["B"].N)
		}
		for _, q := range []struct {
			env string
			l   rekey.Label
		}{{"prod", rekey.LabelPending}, {"dev", rekey.LabelCurrent}, {"staging", rekey.LabelPrevious}} {
			m, err := tx.AllLabeled(q.env, q.l)
			if err != nil {
				return fmt.Errorf("AllLabeled(%s, %s): %w", q.env, q.l, err)
			}
			if len(m) != 0 {
				t.Errorf("AllLabeled(%s, %s) has %d entries, want none", q.env, q.l, len(m))
			}
		}
		st, err := tx.AllLabeled("staging", rekey.LabelCurrent)
		if err != nil {
			return err
		}
		if len(st) != 1 || st["A"].N != 1 || st["A"].Env != "staging" {
			t.Errorf("AllLabeled(staging, current) = %d entries, want staging/A v1", len(st))
		}
		return nil
	})
}

func testNotFound(t *testing.T, s rekey.Store) {
	add(t, s, "prod", "A", nv("a", rekey.LabelCurrent))
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Versions("prod", "MISSING")
		wantNotFound(t, "Versions of a missing secret", err)
		_, err = tx.Labeled("prod", "MISSING", rekey.LabelCurrent)
		wantNotFound(t, "Labeled of a missing secret", err)
		_, err = tx.Labeled("prod", "A", rekey.LabelPending)
		wantNotFound(t, "Labeled of a label nobody holds", err)
		_, err = tx.Value("prod", "A", 2)
		wantNotFound(t, "Value of a missing version", err)
		_, err = tx.Value("prod", "A", 0)
		wantNotFound(t, "Value of version 0", err)
		_, err = tx.Value("prod", "MISSING", 1)
		wantNotFound(t, "Value of a missing secret", err)
		_, err = tx.Value("staging", "A", 1)
		wantNotFound(t, "Value in a missing environment", err)
		_, err = tx.Rotation("no-such-rotation")
		wantNotFound(t, "Rotation of a missing id", err)
		return nil
	})
	update(t, s, func(tx rekey.Tx) error {
		_, err := tx.Prune("prod", "MISSING", 1)
		wantNotFound(t, "Prune of a missing secret", err)
		return nil
	})
}

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

func testPrune(t *testing.T, s rekey.Store) {
	const env, name = "prod", "P"
	// v1..v8; previous on v2, current on v5, pending on v8.
	lab := map[int]rekey.Label{2: rekey.LabelPrevious, 5: rekey.LabelCurrent, 8: rekey.LabelPending}
	update(t, s, func(tx rekey.Tx) error {
		for n := 1; n <= 8; n++ {
			if _, err := tx.AddVersion(env, name, nv(fmt.Sprintf("p%d", n), lab[n])); err != nil {
				return err
			}
		}
		// Another secret is not touched by a prune of P.
		_, err := tx.AddVersion(env, "OTHER", nv("o1", rekey.LabelNone))
		return err
	})
	prune := func(keep int) int {
		t.Helper()
		var k int
		update(t, s, func(tx rekey.Tx) error {
			var err error
			k, err = tx.Prune(env, name, keep)
			return err
		})
		return k
	}
	// Unlabeled: 1 3 4 6 7. Keep 10: nothing to do.
	if k := prune(10); k != 0 {
		t.Errorf("Prune(keep=10) deleted %d, want 0", k)
	}
	// Keep 2 of the unlabeled (6, 7): 1 3 4 go.
	if k := prune(2); k != 3 {
		t.Errorf("Prune(keep=2) deleted %d, want 3", k)
	}
	if got := numbers(versions(t, s, env, name)); !slices.Equal(got, []int{2, 5, 6, 7, 8}) {
		t.Errorf("after Prune(keep=2): versions %v, want [2 5 6 7 8]", got)
	}
	// Again: idempotent.
	if k := prune(2); k != 0 {
		t.Errorf("second Prune(keep=2) deleted %d, want 0", k)
	}
	// Keep 0: every unlabeled version goes, no labeled one.
	if k := prune(0); k != 2 {
		t.Errorf("Prune(keep=0) deleted %d, want 2", k)
	}
	vs := versions(t, s, env, name)
	if got := numbers(vs); !slices.Equal(got, []int{2, 5, 8}) {
		t.Errorf("after Prune(keep=0): versions %v, want [2 5 8]", got)
	}
	for _, v := range vs {
		if v.Label != lab[v.N] {
			t.Errorf("v%d has label %q after pruning, want %q", v.N, v.Label, lab[v.N])
		}
		checkValue(t, s, fmt.Sprintf("v%d after pruning", v.N), readValue(t, s, env, name, v.N), []byte(fmt.Sprintf("p%d", v.N)))
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Value(env, name, 3)
		wantNotFound(t, "Value of a pruned version", err)
		return nil
	})
	if got := numbers(versions(t, s, env, "OTHER")); !slices.Equal(got, []int{1}) {
		t.Errorf("pruning P touched OTHER: versions %v, want [1]", got)
	}
	// Numbering continues after the highest version.
	if v := add(t, s, env, name, nv("p9", rekey.LabelNone)); v.N != 9 {
		t.Errorf("AddVersion after pruning returned v%d, want v9", v.N)
	}
	// A label removed makes its version prunable.
	update(t, s, func(tx rekey.Tx) error { return tx.SetLabel(env, name, 0, rekey.LabelPrevious) })
	if k := prune(1); k != 1 {
		t.Errorf("Prune(keep=1) after removing previous deleted %d, want 1 (v2)", k)
	}
	if got := numbers(versions(t, s, env, name)); !slices.Equal(got, []int{5, 8, 9}) {
		t.Errorf("versions %v, want [5 8 9]", got)
	}
}

func testPruneNeverReusesNumbers(t *testing.T, s rekey.Store) {
	// Audit records name versions by number: a pruned number must not come back.
	add(t, s, "prod", "R", nv("r1", rekey.LabelCurrent))
	add(t, s, "prod", "R", nv("r2", rekey.LabelNone))
	add(t, s, "prod", "R", nv("r3", rekey.LabelNone))
	update(t, s, func(tx rekey.Tx) error {
		_, err := tx.Prune("prod", "R", 0)
		return err
	})
	if got := numbers(versions(t, s, "prod", "R")); !slices.Equal(got, []int{1}) {
		t.Fatalf("after Prune(keep=0): versions %v, want [1]", got)
	}
	if v := add(t, s, "prod", "R", nv("r4", rekey.LabelNone)); v.N != 4 {
		t.Errorf("AddVersion after pruning v2 and v3 returned v%d, want v4 (numbers are never reused)", v.N)
	}
}

func testPruneEverything(t *testing.T, s rekey.Store) {
	// A secret whose versions are all pruned has no version left: Names, which
	// lists "the secrets of env that have at least one version", drops it.
	add(t, s, "prod", "KEEP", nv("k", rekey.LabelCurrent))
	add(t, s, "prod", "GONE", nv("g1", rekey.LabelNone))
	add(t, s, "prod", "GONE", nv("g2", rekey.LabelNone))
	update(t, s, func(tx rekey.Tx) error {
		k, err := tx.Prune("prod", "GONE", 0)
		if err != nil {
			return err
		}
		if k != 2 {
			t.Errorf("Prune(keep=0) deleted %d, want 2", k)
		}
		return nil
	})
	view(t, s, func(tx rekey.Tx) error {
		vs, err := tx.Versions("prod", "GONE")
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return err
		}
		if len(vs) != 0 {
			t.Errorf("Versions after pruning all: %v", numbers(vs))
		}
		names, err := tx.Names("prod")
		if err != nil {
			return err
		}
		if d := cmp.Diff([]string{"KEEP"}, sorted(names)); d != "" {
			t.Errorf("Names(prod) after pruning every version of GONE (-want +got):\n%s", d)
		}
		return nil
	})
}

func testUpdateSeesItsOwnWrites(t *testing.T, s rekey.Store) {
	update(t, s, func(tx rekey.Tx) error {
		v, err := tx.AddVersion("prod", "A", nv("first", rekey.LabelPending))
		if err != nil {
			return err
		}
		got, err := tx.Value("prod", "A", v.N)
		if err != nil {
			return fmt.Errorf("Value of a version added in the same transaction: %w", err)
		}
		checkValue(t, s, "same-transaction read", got, []byte("first"))
		if err := tx.SetLabel("prod", "A", v.N, rekey.LabelCurrent); err != nil {
			return err
		}
		cur, err := tx.Labeled("prod", "A", rekey.LabelCurrent)
		if err != nil {
			return fmt.Errorf("Labeled after SetLabel in the same transaction: %w", err)
		}
		if cur.N != v.N {
			t.Errorf("Labeled(current) = v%d in the transaction that set it on v%d", cur.N, v.N)
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r1", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateRunning, Actor: "t", Started: t0}); err != nil {
			return err
		}
		if _, err := tx.Rotation("r1"); err != nil {
			return fmt.Errorf("Rotation after PutRotation in the same transaction: %w", err)
		}
		e, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "test", Outcome: "ok"})
		if err != nil {
			return err
		}
		log, err := tx.AuditLog(rekey.AuditFilter{})
		if err != nil {
			return err
		}
		if len(log) != 1 || log[0].Seq != e.Seq {
			t.Errorf("AuditLog in the transaction that appended entry %d lists %v", e.Seq, seqs(log))
		}
		return nil
	})
}

func testUpdateAllOrNothing(t *testing.T, s rekey.Store) {
	// Committed state: prod/A v1 current, one rotation, one audit entry.
	update(t, s, func(tx rekey.Tx) error {
		if _, err := tx.AddVersion("prod", "A", nv("a1", rekey.LabelCurrent)); err != nil {
			return err
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r-ok", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateDone, Actor: "t", Started: t0, Ended: t0.Add(time.Second)}); err != nil {
			return err
		}
		_, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "first", Env: "prod", Secret: "A", Version: 1, Outcome: "ok"})
		return err
	})
	before := versions(t, s, "prod", "A")
	beforeLog := auditLog(t, s, rekey.AuditFilter{})

	err := s.Update(ctx(t), func(tx rekey.Tx) error {
		if _, err := tx.AddVersion("prod", "A", nv("a2", rekey.LabelCurrent)); err != nil {
			return err
		}
		if err := tx.SetLabel("prod", "A", 1, rekey.LabelPrevious); err != nil {
			return err
		}
		if _, err := tx.AddVersion("qa", "NEW", nv("new", rekey.LabelCurrent)); err != nil {
			return err
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r-failed", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateRunning, Actor: "t", Started: t0.Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r-ok", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateFailed, Actor: "t", Started: t0, Error: "overwritten"}); err != nil {
			return err
		}
		if _, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "second", Env: "prod", Secret: "A", Version: 2, Outcome: "ok"}); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update returned %v, want the error fn returned", err)
	}

	if d := cmp.Diff(before, versions(t, s, "prod", "A")); d != "" {
		t.Errorf("versions changed by a failed Update (-before +after):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Value("prod", "A", 2)
		wantNotFound(t, "Value of a version added by a failed Update", err)
		_, err = tx.Versions("qa", "NEW")
		wantNotFound(t, "Versions of a secret added by a failed Update", err)
		envs, err := tx.Environments()
		if err != nil {
			return err
		}
		if d := cmp.Diff([]string{"prod"}, sorted(envs)); d != "" {
			t.Errorf("Environments after a failed Update (-want +got):\n%s", d)
		}
		_, err = tx.Rotation("r-failed")
		wantNotFound(t, "Rotation inserted by a failed Update", err)
		r, err := tx.Rotation("r-ok")
		if err != nil {
			return err
		}
		if r.State != rekey.StateDone || r.Error != "" {
			t.Errorf("rotation replaced by a failed Update: state %q, error %q", r.State, r.Error)
		}
		rs, err := tx.Rotations("", false)
		if err != nil {
			return err
		}
		if len(rs) != 1 {
			t.Errorf("Rotations lists %d rotations after a failed Update, want 1", len(rs))
		}
		return nil
	})
	if d := cmp.Diff(beforeLog, auditLog(t, s, rekey.AuditFilter{})); d != "" {
		t.Errorf("audit log changed by a failed Update (-before +after):\n%s", d)
	}
	verifyAudit(t, s, 1)
	// The store goes on as if the failed Update never ran.
	if v := add(t, s, "prod", "A", nv("a2", rekey.LabelCurrent)); v.N != 2 {
		t.Errorf("AddVersion after a failed Update returned v%d, want v2", v.N)
	}
	checkValue(t, s, "prod/A v2", readValue(t, s, "prod", "A", 2), []byte("a2"))
}

func testViewCannotWrite(t *testing.T, s rekey.Store) {
	add(t, s, "prod", "A", nv("a1", rekey.LabelCurrent))
	add(t, s, "prod", "A", nv("a2", rekey.LabelNone))
	add(t, s, "prod", "A", nv("a3", rekey.LabelNone))
	before := versions(t, s, "prod", "A")
	// One write per View: a server store may abort the transaction at the
	// first refused write.
	writes := []struct {
		name string
		fn   func(rekey.Tx) error
	}{
		{"AddVersion", func(tx rekey.Tx) error {
			_, err := tx.AddVersion("prod", "A", nv("a4", rekey.LabelCurrent))
			return err
		}},
		{"AddVersion of a new secret", func(tx rekey.Tx) error {
			_, err := tx.AddVersion("prod", "B", nv("b1", rekey.LabelNone))
			return err
		}},
		{"Audit", func(tx rekey.Tx) error {
			_, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "view", Outcome: "ok"})
			return err
		}},
		{"SetLabel", func(tx rekey.Tx) error { return tx.SetLabel("prod", "A", 2, rekey.LabelCurrent) }},
		{"SetLabel n=0", func(tx rekey.Tx) error { return tx.SetLabel("prod", "A", 0, rekey.LabelCurrent) }},
		{"Prune", func(tx rekey.Tx) error {
			_, err := tx.Prune("prod", "A", 0)
			return err
		}},
		{"PutRotation", func(tx rekey.Tx) error {
			return tx.PutRotation(&rekey.Rotation{ID: "r", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateRunning, Actor: "t", Started: t0})
		}},
	}
	for _, w := range writes {
		var werr error
		err := s.View(ctx(t), func(tx rekey.Tx) error {
			werr = w.fn(tx)
			return nil
		})
		if werr == nil {
			t.Errorf("%s in a View returned no error", w.name)
		}
		if err != nil {
			t.Logf("%s in a View: View returned %v", w.name, err)
		}
	}
	if d := cmp.Diff(before, versions(t, s, "prod", "A")); d != "" {
		t.Errorf("versions changed by writes in Views (-before +after):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		_, err := tx.Versions("prod", "B")
		wantNotFound(t, "Versions of a secret added in a View", err)
		_, err = tx.Rotation("r")
		wantNotFound(t, "Rotation put in a View", err)
		return nil
	})
	if got := auditLog(t, s, rekey.AuditFilter{}); len(got) != 0 {
		t.Errorf("audit log has %d entries after an Audit in a View, want 0", len(got))
	}
	verifyAudit(t, s, 0)
}

// testPanicInTransaction: a panic in fn is a failure of fn. It reaches the
// caller, nothing of the Update is kept, and the store stays usable (a
// transaction left open would block the next View or Update).
func testPanicInTransaction(t *testing.T, s rekey.Store) {
	add(t, s, "prod", "A", nv("a1", rekey.LabelCurrent))
	panics := func(what string, run func() error) {
		t.Helper()
		var err error
		defer func() {
			if r := recover(); r == nil {
				t.Errorf("the panic in the fn of %s did not reach its caller (%s returned %v)", what, what, err)
			}
		}()
		err = run()
	}
	panics("Update", func() error {
		return s.Update(ctx(t), func(tx rekey.Tx) error {
			if _, err := tx.AddVersion("prod", "A", nv("a2", rekey.LabelCurrent)); err != nil {
				return err
			}
			if _, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "lost", Outcome: "ok"}); err != nil {
				return err
			}
			panic("storetest: deliberate panic in Update")
		})
	})
	// Bounded from here on, so a store left stuck by the panic fails the
	// test instead of hanging the suite.
	c, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	panics("View", func() error {
		return s.View(c, func(tx rekey.Tx) error {
			if _, err := tx.Versions("prod", "A"); err != nil {
				t.Errorf("View after a panicking Update: %v", err)
				return err
			}
			panic("storetest: deliberate panic in View")
		})
	})
	err := s.View(c, func(tx rekey.Tx) error {
		vs, err := tx.Versions("prod", "A")
		if err != nil {
			return err
		}
		if got := numbers(vs); !slices.Equal(got, []int{1}) || vs[0].Label != rekey.LabelCurrent {
			t.Errorf("after a panicking Update prod/A has versions %v, want only v1, current", got)
		}
		log, err := tx.AuditLog(rekey.AuditFilter{})
		if err != nil {
			return err
		}
		if len(log) != 0 {
			t.Errorf("the audit entry of a panicking Update was kept: %v", seqs(log))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View after a panic in a transaction: %v", err)
	}
	err = s.Update(c, func(tx rekey.Tx) error {
		v, err := tx.AddVersion("prod", "A", nv("a2", rekey.LabelCurrent))
		if err == nil && v.N != 2 {
			t.Errorf("AddVersion after a panicking Update returned v%d, want v2", v.N)
		}
		return err
	})
	if err != nil {
		t.Fatalf("Update after a panic in a transaction: %v", err)
	}
	checkValue(t, s, "prod/A v2", readValue(t, s, "prod", "A", 2), []byte("a2"))
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
