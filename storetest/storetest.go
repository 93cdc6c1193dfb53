// Package storetest is the conformance suite that every [rekey.Store]
// implementation passes. It checks the contracts written in rekey's store.go:
// version numbering and namespaces, labels, exact value round trips and
// fingerprints, version metadata, pruning, all-or-nothing updates (also when
// fn panics) and read-only views, rotations, the hash-chained audit log and
// master key rotation.
//
// # Usage
//
// Call [Run] from a test of the implementation's package, with a function
// that returns a fresh, empty store for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) rekey.Store {
//			key, err := seal.GenerateKey()
//			if err != nil {
//				t.Fatal(err)
//			}
//			s, err := postgres.Create(t.Context(), dsnOfAFreshDatabase(t), key)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The rules for open:
//
//   - Every call returns a new store that holds no secret, rotation or audit
//     entry, and that shares nothing with the stores of other calls (for a
//     server database: a fresh database or schema per call).
//   - Run closes the store when the subtest ends and reports an error from
//     Close; open must not close it itself. It may register t.Cleanup
//     functions for anything else it made (a database, a folder): those run
//     after the store is closed.
//   - The store must accept a [seal.Key] as the new key of
//     [rekey.Store.RotateMasterKey].
//
// Subtests run one after another, never in parallel, and each finishes in
// well under a second on an embedded store.
//
// # Secret hygiene
//
// No helper of this package prints a value, neither on success nor on
// failure: mismatching values are reported by length, by the first differing
// byte offset and by their store fingerprints only. The values the suite
// stores are test data, but the rule keeps the suite safe to copy.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rekeyhq/rekey"
)

// test is one conformance subtest.
type test struct {
	name string
	fn   func(t *testing.T, s rekey.Store)
}

// tests is the whole suite, in the order Run runs it.
var tests = []test{
	{"AddVersionNumbering", testAddVersionNumbering},
	{"Namespaces", testNamespaces},
	{"NamesAndEnvironments", testNamesAndEnvironments},
	{"AddVersionMovesLabel", testAddVersionMovesLabel},
	{"SetLabel", testSetLabel},
	{"SetLabelMissingVersion", testSetLabelMissingVersion},
	{"AllLabeled", testAllLabeled},
	{"NotFound", testNotFound},
	{"ValueBytes", testValueBytes},
	{"Fingerprint", testFingerprint},
	{"VersionMetadata", testVersionMetadata},
	{"Prune", testPrune},
	{"PruneEverything", testPruneEverything},
	{"PruneNeverReusesNumbers", testPruneNeverReusesNumbers},
	{"UpdateSeesItsOwnWrites", testUpdateSeesItsOwnWrites},
	{"UpdateAllOrNothing", testUpdateAllOrNothing},
	{"PanicInTransaction", testPanicInTransaction},
	{"ViewCannotWrite", testViewCannotWrite},
	{"RotationPutAndReplace", testRotationPutAndReplace},
	{"Rotations", testRotations},
	{"PruneRotations", testPruneRotations},
	{"SetAttrs", testSetAttrs},
	{"AuditChain", testAuditChain},
	{"AuditFilters", testAuditFilters},
	{"AuditFailedUpdate", testAuditFailedUpdate},
	{"AuditEmpty", testAuditEmpty},
	{"RotateMasterKey", testRotateMasterKey},
	{"SecretHygiene", testSecretHygiene},
}

// Run runs the conformance suite against the stores open returns, one fresh
// store per subtest. See the package documentation.
func Run(t *testing.T, open func(t *testing.T) rekey.Store) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// reporter is the part of testing.TB the value helpers use (a fake in this
// package's own tests checks that they never print a value).
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// checkValue reports whether got holds exactly want; on a mismatch it
// reports lengths, the first differing offset and fingerprints, never bytes.
func checkValue(r reporter, s rekey.Store, what string, got rekey.Value, want []byte) bool {
	r.Helper()
	g := got.Reveal()
	if bytes.Equal(g, want) {
		return true
	}
	i := 0
	for i < len(g) && i < len(want) && g[i] == want[i] {
		i++
	}
	fpGot, fpWant := "-", "-"
	if s != nil {
		fpGot, fpWant = s.Fingerprint(got), s.Fingerprint(rekey.NewValue(want))
	}
	r.Errorf("%s: the value read differs from the value stored: got %d bytes (%s), want %d bytes (%s), first difference at byte %d",
		what, len(g), fpGot, len(want), fpWant, i)
	return false
}

// ctx is the context of a test.
func ctx(t *testing.T) context.Context { return t.Context() }

// update runs fn in an Update and fails the test if it returns an error.
func update(t *testing.T, s rekey.Store, fn func(rekey.Tx) error) {
	t.Helper()
	if err := s.Update(ctx(t), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in a View and fails the test if it returns an error.
func view(t *testing.T, s rekey.Store, fn func(rekey.Tx) error) {
	t.Helper()
	if err := s.View(ctx(t), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// inTx runs get in a transaction of txn (view or update) and returns what
// get returns; its error, named by what (the call, e.g. "Versions(prod,
// A)"), fails the test.
func inTx[T any](t *testing.T, s rekey.Store, txn func(*testing.T, rekey.Store, func(rekey.Tx) error), what string, get func(rekey.Tx) (T, error)) T {
	t.Helper()
	var out T
	txn(t, s, func(tx rekey.Tx) error {
		var err error
		out, err = get(tx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
	return out
}

// add appends one version in its own Update and returns it.
func add(t *testing.T, s rekey.Store, env, name string, nv rekey.NewVersion) rekey.Version {
	t.Helper()
	return inTx(t, s, update, fmt.Sprintf("AddVersion(%s, %s)", env, name), func(tx rekey.Tx) (rekey.Version, error) {
		return tx.AddVersion(env, name, nv)
	})
}

// nv is a NewVersion of a string value.
func nv(value string, l rekey.Label) rekey.NewVersion {
	return rekey.NewVersion{Value: rekey.NewValueString(value), Label: l, Source: rekey.SourceGenerated}
}

// versions reads a secret's versions in a View.
func versions(t *testing.T, s rekey.Store, env, name string) []rekey.Version {
	t.Helper()
	return inTx(t, s, view, fmt.Sprintf("Versions(%s, %s)", env, name), func(tx rekey.Tx) ([]rekey.Version, error) {
		return tx.Versions(env, name)
	})
}

// numbers lists the version numbers of vs.
func numbers(vs []rekey.Version) []int {
	out := make([]int, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.N)
	}
	return out
}

// labels maps each version number of a secret to its label ("" = none).
func labels(t *testing.T, s rekey.Store, env, name string) map[int]rekey.Label {
	t.Helper()
	out := map[int]rekey.Label{}
	for _, v := range versions(t, s, env, name) {
		out[v.N] = v.Label
	}
	return out
}

// checkLabelsUnique fails if a label is held by more than one version.
func checkLabelsUnique(t *testing.T, s rekey.Store, env, name string) {
	t.Helper()
	holders := map[rekey.Label][]int{}
	for _, v := range versions(t, s, env, name) {
		if v.Label != rekey.LabelNone {
			holders[v.Label] = append(holders[v.Label], v.N)
		}
	}
	for l, ns := range holders {
		if len(ns) > 1 {
			t.Errorf("%s/%s: label %q is held by versions %v, want at most one", env, name, l, ns)
		}
	}
}

// labeledN returns the number of the version of env/name holding l, or 0
// when Labeled returns ErrNotFound.
func labeledN(t *testing.T, s rekey.Store, env, name string, l rekey.Label) int {
	t.Helper()
	n := 0
	view(t, s, func(tx rekey.Tx) error {
		v, err := tx.Labeled(env, name, l)
		if errors.Is(err, rekey.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("Labeled(%s, %s, %s): %w", env, name, l, err)
		}
		if v.Label != l {
			t.Errorf("Labeled(%s, %s, %s) returned version %d labeled %q", env, name, l, v.N, v.Label)
		}
		n = v.N
		return nil
	})
	return n
}

// readValue reads one value in a View.
func readValue(t *testing.T, s rekey.Store, env, name string, n int) rekey.Value {
	t.Helper()
	return inTx(t, s, view, fmt.Sprintf("Value(%s, %s, %d)", env, name, n), func(tx rekey.Tx) (rekey.Value, error) {
		return tx.Value(env, name, n)
	})
}

// wantNotFound fails unless err is rekey.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, rekey.ErrNotFound) {
		t.Errorf("%s: err = %v, want rekey.ErrNotFound", what, err)
	}
}

// auditLog reads the audit log in a View.
func auditLog(t *testing.T, s rekey.Store, f rekey.AuditFilter) []rekey.AuditEntry {
	t.Helper()
	return inTx(t, s, view, fmt.Sprintf("AuditLog(%+v)", f), func(tx rekey.Tx) ([]rekey.AuditEntry, error) {
		return tx.AuditLog(f)
	})
}

// seqs lists the Seq of entries.
func seqs(es []rekey.AuditEntry) []int64 {
	out := make([]int64, 0, len(es))
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// verifyAudit fails unless VerifyAudit passes with want entries.
func verifyAudit(t *testing.T, s rekey.Store, want int) {
	t.Helper()
	n, err := s.VerifyAudit(ctx(t))
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if n != want {
		t.Errorf("VerifyAudit counted %d entries, want %d", n, want)
	}
}

// sorted returns a sorted copy of ss.
func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// rotationOpts compares rotations: times by instant, nil and empty maps and
// slices alike.
var rotationOpts = cmp.Options{cmpopts.EquateEmpty()}

// t0 is a fixed, nanosecond-precise instant the tests build times from.
var t0 = time.Date(2025, time.March, 14, 9, 26, 53, 589793238, time.UTC)

// errAbort is what an Update that must leave no trace returns.
var errAbort = errors.New("storetest: deliberate failure")
