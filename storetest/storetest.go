// Package storetest is the conformance suite that every [rekey.Store]
// implementation passes. It checks the contracts written in rekey's store.go:
// version numbering and namespaces, labels, exact value round trips and
// fingerprints, version metadata, pruning, all-or-nothing updates (also when
// fn panics) and read-only views, rotations, the hash-chained audit log,
// master key rotation, incidents and the notification outbox.
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
	{"IncidentRoundTrip", testIncidentRoundTrip},
	{"Incidents", testIncidents},
	{"OutboxEnqueue", testOutboxEnqueue},
	{"OutboxFilters", testOutboxFilters},
	{"OutboxMarkAttempt", testOutboxMarkAttempt},
	{"IncidentWritesInView", testIncidentWritesInView},
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

// The tests of transactions: an update sees its own writes
// and is all or nothing, a view cannot write, a panic rolls back.

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
