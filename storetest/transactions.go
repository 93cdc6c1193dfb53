package storetest

// This file holds the tests of transactions: an update sees its own writes
// and is all or nothing, a view cannot write, a panic rolls back.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
)

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
