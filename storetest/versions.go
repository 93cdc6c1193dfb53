package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

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

// The tests of pruning: which versions go, which stay, and
// that numbers are never reused.

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
	// Unlabeled: 1 3 4 6 7. Keep 10: nothing to do.
	if k := prune(t, s, env, name, 10); k != 0 {
		t.Errorf("Prune(keep=10) deleted %d, want 0", k)
	}
	// Keep 2 of the unlabeled (6, 7): 1 3 4 go.
	if k := prune(t, s, env, name, 2); k != 3 {
		t.Errorf("Prune(keep=2) deleted %d, want 3", k)
	}
	if got := numbers(versions(t, s, env, name)); !slices.Equal(got, []int{2, 5, 6, 7, 8}) {
		t.Errorf("after Prune(keep=2): versions %v, want [2 5 6 7 8]", got)
	}
	// Again: idempotent.
	if k := prune(t, s, env, name, 2); k != 0 {
		t.Errorf("second Prune(keep=2) deleted %d, want 0", k)
	}
	// Keep 0: every unlabeled version goes, no labeled one.
	if k := prune(t, s, env, name, 0); k != 2 {
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
	if k := prune(t, s, env, name, 1); k != 1 {
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
	prune(t, s, "prod", "R", 0)
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
	if k := prune(t, s, "prod", "GONE", 0); k != 2 {
		t.Errorf("Prune(keep=0) deleted %d, want 2", k)
	}
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

// prune runs Prune in its own Update and returns how many versions it
// deleted.
func prune(t *testing.T, s rekey.Store, env, name string, keep int) int {
	t.Helper()
	return inTx(t, s, update, fmt.Sprintf("Prune(%s, %s, %d)", env, name, keep), func(tx rekey.Tx) (int, error) {
		return tx.Prune(env, name, keep)
	})
}
