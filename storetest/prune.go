package storetest

// This file holds the tests of pruning: which versions go, which stay, and
// that numbers are never reused.

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
)

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
