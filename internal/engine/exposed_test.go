package engine_test

// Exposed values (issue 10, item 8): an emergency rotation marks the value it
// retires exposed, and Rotate refuses to publish it again (rollback, set)
// unless a person gives a reason, which is audited. Real sqlite store.

import (
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
)

// rollbackTo republishes version n's value as a rollback rotation.
func (w *fwWorld) rollbackTo(n int, force string) (*engine.Result, error) {
	w.t.Helper()
	var val rekey.Value
	if err := w.st.View(w.t.Context(), func(tx rekey.Tx) error {
		var err error
		val, err = tx.Value(ecEnv, "JWT_SECRET", n)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return w.engine(nil, nil).Rotate(w.t.Context(), []string{"JWT_SECRET"}, rekey.ModeRollback,
		&engine.NewValues{Values: map[string]rekey.Value{"JWT_SECRET": val}, Source: rekey.SourceRollback, Force: force})
}

// The emergency marks v1 in the commit that creates v2; republishing v1's
// value is refused, then allowed with a reason that lands in the audit log.
func TestExposedEmergencyMarkRefusesRollback(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	_, old := w.current("JWT_SECRET")
	res, err := w.engine(nil, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeEmergency, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.labeled("JWT_SECRET", rekey.LabelPrevious).Attrs[rekey.AttrExposed], "emergency "+res.Rotation.ID; got != want {
		t.Fatalf("v1's exposed mark = %q, want %q", got, want)
	}
	_, cur := w.current("JWT_SECRET")

	_, err = w.rollbackTo(1, "")
	if rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "superseded by emergency rotation "+res.Rotation.ID) {
		t.Fatalf("rollback to the exposed v1 = %v, want CodeUnsafe naming the emergency", err)
	}
	if w.target.get("JWT_SECRET") != cur {
		t.Fatal("the refused rollback changed the target")
	}
	if v, _ := w.current("JWT_SECRET"); v.N != 2 {
		t.Fatalf("current is v%d after a refused rollback, want v2", v.N)
	}

	res, err = w.rollbackTo(1, "false alarm, INC-42")
	if err != nil {
		t.Fatal(err)
	}
	if w.target.get("JWT_SECRET") != old {
		t.Fatal("the forced rollback did not publish v1's value")
	}
	var forced []rekey.AuditEntry
	w.st.View(t.Context(), func(tx rekey.Tx) error {
		es, err := tx.AuditLog(rekey.AuditFilter{Secret: "JWT_SECRET"})
		for _, e := range es {
			if e.Action == "rotate.force" {
				forced = append(forced, e)
			}
		}
		return err
	})
	if len(forced) != 1 || forced[0].Version != res.Versions["JWT_SECRET"].N || !strings.Contains(forced[0].Detail, "reason: false alarm, INC-42") || strings.Contains(forced[0].Detail, old) {
		t.Fatalf("audit of the forced rollback: %+v", forced)
	}
}

// A store written before the mark existed: the emergency rotation's record
// is enough. A manual rotation that was rolled back in between (its version
// never current) does not hide which version the emergency superseded.
func TestExposedLegacyEmergencyRecord(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	never := &fwChecks{svc: w.svc, ok: func(map[string]string) bool { return false }}
	if _, err := w.engine(never, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeManual, nil); rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Fatalf("manual rotation with failing checks = %v, want it rolled back", err)
	}
	res, err := w.engine(nil, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeEmergency, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Versions["JWT_SECRET"].N; n != 3 {
		t.Fatalf("the emergency created v%d, want v3", n)
	}
	// Remove the mark, as a store from before it would be.
	v1 := w.labeled("JWT_SECRET", rekey.LabelPrevious)
	delete(v1.Attrs, rekey.AttrExposed)
	if err := w.st.Update(t.Context(), func(tx rekey.Tx) error {
		return tx.SetAttrs(ecEnv, "JWT_SECRET", v1.N, v1.Attrs)
	}); err != nil {
		t.Fatal(err)
	}
	if a := w.labeled("JWT_SECRET", rekey.LabelPrevious).Attrs; a[rekey.AttrExposed] != "" {
		t.Fatalf("mark not removed: %v", a)
	}
	_, err = w.rollbackTo(1, "")
	if rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "v1 was exposed: superseded by emergency rotation "+res.Rotation.ID) {
		t.Fatalf("rollback to v1 superseded by an emergency (no mark) = %v, want CodeUnsafe", err)
	}
	// v2 (the rolled-back rotation's value) was never current, so never exposed by it.
	w.st.View(t.Context(), func(tx rekey.Tx) error {
		xs, err := rekey.Exposures(tx, ecEnv, "JWT_SECRET")
		if xs[2] != nil || xs[1] == nil {
			t.Errorf("exposures %v, want v1 only", xs)
		}
		return err
	})
}
