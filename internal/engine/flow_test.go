package engine_test

// Tests of the steps around a rotation: restarting the consumers, checks
// (and the rollback they trigger), graceful previous values and the end of
// their grace, on_rotate hooks, and the migration (re-encryption) of a data
// key in online and maintenance mode, including crashes at its boundaries.
// The store is the real sqlite one; the services, checks and the rows of the
// data key are small in-memory systems that record what was done to them.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

type fwWorld struct {
	t      *testing.T
	path   string
	key    seal.Key
	st     *sqlite.DB
	target *ecTarget
	svc    *fwServices
	rows   *fwRows
	specs  []rekey.Spec
	now    time.Time
}

func fwNewWorld(t *testing.T, specs ...rekey.Spec) *fwWorld {
	t.Helper()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w := &fwWorld{t: t, path: filepath.Join(t.TempDir(), "rekey.db"), key: key, specs: specs,
		target: &ecTarget{vals: map[string]string{"PORT": "8080"}}, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	w.svc = &fwServices{target: w.target}
	w.rows = &fwRows{corrupt: map[int]bool{}}
	if w.st, err = sqlite.Create(t.Context(), w.path, key, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	err = w.st.Update(t.Context(), func(tx rekey.Tx) error {
		for _, s := range specs {
			v, err := s.Generator.Generate(nil)
			if err != nil {
				return err
			}
			if _, err := tx.AddVersion(ecEnv, s.Name, rekey.NewVersion{Value: v, Label: rekey.LabelCurrent, Source: rekey.SourceImported}); err != nil {
				return err
			}
			w.target.vals[s.Name] = v.RevealString()
			if s.Kind == rekey.KindDataKey {
				for i := 0; i < 20; i++ {
					w.rows.rows = append(w.rows.rows, v.RevealString())
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.svc.sees = w.target.snapshot()
	return w
}

func (w *fwWorld) engine(checks rekey.Checks, fault func(string)) *engine.Engine {
	e := &engine.Engine{
		Store: w.st, Env: ecEnv, Specs: w.specs,
		Targets:   map[string]rekey.Target{"app": w.target},
		Migrators: map[rekey.Kind]rekey.Migrator{rekey.KindDataKey: w.rows},
		Actor:     "flow-test", Services: w.svc, Checks: checks, Fault: fault,
		Now: func() time.Time { return w.now },
	}
	return e
}

func (w *fwWorld) current(name string) (rekey.Version, string) {
	w.t.Helper()
	var v rekey.Version
	var val rekey.Value
	err := w.st.View(w.t.Context(), func(tx rekey.Tx) error {
		var err error
		if v, err = tx.Labeled(ecEnv, name, rekey.LabelCurrent); err != nil {
			return err
		}
		val, err = tx.Value(ecEnv, name, v.N)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return v, val.RevealString()
}

func (w *fwWorld) labeled(name string, l rekey.Label) rekey.Version {
	w.t.Helper()
	var v rekey.Version
	if err := w.st.View(w.t.Context(), func(tx rekey.Tx) error {
		var err error
		v, err = tx.Labeled(ecEnv, name, l)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return v
}

// rowsOn fails the test unless every row is on key (what the failure says
// of the row: "is not on the new key" ...).
func (w *fwWorld) rowsOn(key, what string) {
	w.t.Helper()
	for i, r := range w.rows.rows {
		if r != key {
			w.t.Fatalf("row %d %s", i, what)
		}
	}
}

var (
	fwJWT = rekey.Spec{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 64, Encoding: rekey.EncBase64}}
	fwKey = rekey.Spec{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64},
		Reencrypt: &rekey.ReencryptSpec{Database: "DATABASE_URL", Codec: "aes-256-gcm", Columns: []string{"patients.email"}}}
)

func TestFlowRestartThenChecks(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	checks := &fwChecks{svc: w.svc, ok: func(sees map[string]string) bool { return sees["JWT_SECRET"] == w.target.get("JWT_SECRET") }}
	if _, err := w.engine(checks, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeManual, nil); err != nil {
		t.Fatal(err)
	}
	if got := w.svc.entries(); !slices.Equal(got, []string{"restart JWT_SECRET"}) {
		t.Errorf("services: %q, want one restart of the consumers of JWT_SECRET", got)
	}
	if checks.runs != 1 {
		t.Errorf("checks ran %d times, want 1", checks.runs)
	}
	if _, val := w.current("JWT_SECRET"); w.svc.sees["JWT_SECRET"] != val {
		t.Error("the app was not restarted on the new value")
	}
}

// A check that fails on the new values rolls a manual rotation back,
// restarts the app on the old values and checks again.
func TestFlowChecksFailRollBack(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	_, old := w.current("JWT_SECRET")
	checks := &fwChecks{svc: w.svc, ok: func(sees map[string]string) bool { return sees["JWT_SECRET"] == old }}
	_, err := w.engine(checks, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeManual, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(err.Error(), "rolled back; checks pass again on the previous values") {
		t.Fatalf("Rotate = %v, want a rollback that reports the checks pass again", err)
	}
	if v, val := w.current("JWT_SECRET"); v.N != 1 || val != old || w.target.get("JWT_SECRET") != old {
		t.Errorf("after rollback current is v%d and the target holds the old value: %v", v.N, w.target.get("JWT_SECRET") == old)
	}
	if got := w.svc.entries(); !slices.Equal(got, []string{"restart JWT_SECRET", "restart JWT_SECRET"}) {
		t.Errorf("services: %q, want a restart on the new values and one on the old", got)
	}
	if checks.runs != 2 || w.svc.sees["JWT_SECRET"] != old {
		t.Errorf("checks ran %d times (want 2); app on the old value: %v", checks.runs, w.svc.sees["JWT_SECRET"] == old)
	}
	// The same failure with checks that keep failing says so.
	w2 := fwNewWorld(t, fwJWT)
	never := &fwChecks{svc: w2.svc, ok: func(map[string]string) bool { return false }}
	_, err = w2.engine(never, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeScheduled, nil)
	if err == nil || !strings.Contains(err.Error(), "checks still fail on the previous values") {
		t.Fatalf("Rotate = %v, want the second check result reported", err)
	}
}

// After an emergency rotation the new values stay whatever the checks say.
func TestFlowEmergencyKeepsNewValues(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	_, old := w.current("JWT_SECRET")
	never := &fwChecks{svc: w.svc, ok: func(map[string]string) bool { return false }}
	_, err := w.engine(never, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeEmergency, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(err.Error(), "emergency") {
		t.Fatalf("Rotate = %v, want exit 7 naming the emergency", err)
	}
	if v, val := w.current("JWT_SECRET"); v.N != 2 || val == old || w.target.get("JWT_SECRET") != val {
		t.Errorf("emergency: current v%d, target holds it: %v; want the new value kept", v.N, w.target.get("JWT_SECRET") == val)
	}
	if len(w.svc.entries()) != 1 {
		t.Errorf("services after an emergency failure: %q, want only the restart on the new values", w.svc.entries())
	}
}

// Graceful sessions: the old value is published as JWT_SECRET_PREVIOUS until
// the grace ends; then any later run removes it and restarts its consumers.
func TestFlowGracefulPreviousAndExpiry(t *testing.T) {
	jwt := fwJWT
	jwt.Sessions = &rekey.SessionsSpec{Mode: rekey.SessionsGraceful, Grace: 24 * time.Hour}
	w := fwNewWorld(t, jwt)
	_, old := w.current("JWT_SECRET")
	e := w.engine(nil, nil)
	if _, err := e.Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeManual, nil); err != nil {
		t.Fatal(err)
	}
	_, cur := w.current("JWT_SECRET")
	if w.target.get("JWT_SECRET") != cur || w.target.get("JWT_SECRET_PREVIOUS") != old {
		t.Fatal("graceful rotation did not publish the new value with the old one as JWT_SECRET_PREVIOUS")
	}
	if got := w.svc.entries(); !slices.Equal(got, []string{"restart JWT_SECRET,JWT_SECRET_PREVIOUS"}) {
		t.Errorf("services: %q", got)
	}
	prev := w.labeled("JWT_SECRET", rekey.LabelPrevious)
	if prev.Attrs[rekey.AttrGraceUntil] != "2026-11-27T12:00:00Z" {
		t.Errorf("previous version's grace: %v", prev.Attrs)
	}
	w.now = w.now.Add(23 * time.Hour)
	if ends, err := w.engine(nil, nil).ExpireGrace(t.Context()); err != nil || len(ends) != 0 {
		t.Fatalf("ExpireGrace within the grace = %v, %v", ends, err)
	}
	if w.target.get("JWT_SECRET_PREVIOUS") != old {
		t.Fatal("JWT_SECRET_PREVIOUS removed before the grace ended")
	}
	w.now = w.now.Add(2 * time.Hour)
	ends, err := w.engine(nil, nil).ExpireGrace(t.Context())
	if err != nil || len(ends) != 1 || ends[0].Name != "JWT_SECRET" || ends[0].Version != 1 {
		t.Fatalf("ExpireGrace after the grace = %v, %v", ends, err)
	}
	if _, ok := w.target.snapshot()["JWT_SECRET_PREVIOUS"]; ok {
		t.Error("JWT_SECRET_PREVIOUS still published after the grace")
	}
	if w.target.get("JWT_SECRET") != cur || w.target.get("PORT") != "8080" {
		t.Error("ending the grace changed other keys")
	}
	if got := w.svc.entries(); got[len(got)-1] != "restart JWT_SECRET_PREVIOUS" {
		t.Errorf("services after the grace: %q", got)
	}
	if a := w.labeled("JWT_SECRET", rekey.LabelPrevious).Attrs; a[rekey.AttrExpired] == "" {
		t.Errorf("previous version not marked expired: %v", a)
	}
	// Idempotent: a second run finds nothing to do.
	if ends, err := w.engine(nil, nil).ExpireGrace(t.Context()); err != nil || len(ends) != 0 {
		t.Fatalf("second ExpireGrace = %v, %v", ends, err)
	}
	var audited bool
	w.st.View(t.Context(), func(tx rekey.Tx) error {
		log, err := tx.AuditLog(rekey.AuditFilter{Secret: "JWT_SECRET"})
		for _, e := range log {
			audited = audited || e.Action == "grace.expire"
		}
		return err
	})
	if !audited {
		t.Error("the end of the grace is not in the audit log")
	}
}

// Online re-encryption: while rows move, the app runs with both keys; then
// the old key leaves the .env and the app restarts on the new one alone.
func TestFlowDataKeyOnline(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	_, old := w.current("ENCRYPTION_KEY")
	var sawBoth bool
	w.rows.during = func() {
		sawBoth = w.svc.sees["ENCRYPTION_KEY_PREVIOUS"] == old && w.svc.sees["ENCRYPTION_KEY"] != old && w.svc.sees["ENCRYPTION_KEY"] != ""
	}
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); err != nil {
		t.Fatal(err)
	}
	if !sawBoth {
		t.Error("the app was not running with the new key and ENCRYPTION_KEY_PREVIOUS while rows moved")
	}
	_, cur := w.current("ENCRYPTION_KEY")
	w.rowsOn(cur, "is not on the new key")
	if _, ok := w.target.snapshot()["ENCRYPTION_KEY_PREVIOUS"]; ok || w.target.get("ENCRYPTION_KEY") != cur {
		t.Error("after re-encryption the .env should hold the new key alone")
	}
	if got := w.svc.entries(); !slices.Equal(got, []string{"restart ENCRYPTION_KEY,ENCRYPTION_KEY_PREVIOUS", "restart ENCRYPTION_KEY_PREVIOUS"}) {
		t.Errorf("services: %q", got)
	}
}

// Maintenance mode: the consumers stop, rows move, the new key is published,
// the consumers start; the app never sees two keys.
func TestFlowDataKeyMaintenance(t *testing.T) {
	key := fwKey
	key.Reencrypt = &rekey.ReencryptSpec{Database: "DATABASE_URL", Mode: rekey.ReencryptMaintenance, Columns: []string{"t.c"}}
	w := fwNewWorld(t, key)
	_, old := w.current("ENCRYPTION_KEY")
	var targetDuring string
	w.rows.during = func() { targetDuring = w.target.get("ENCRYPTION_KEY") }
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); err != nil {
		t.Fatal(err)
	}
	if targetDuring != old {
		t.Error("the new key was published before the rows moved")
	}
	got := w.svc.entries()
	if len(got) < 2 || got[0] != "stop ENCRYPTION_KEY" || got[1] != "start ENCRYPTION_KEY" {
		t.Errorf("services: %q, want stop, then start after publish", got)
	}
	if _, ok := w.target.snapshot()["ENCRYPTION_KEY_PREVIOUS"]; ok {
		t.Error("maintenance mode published ENCRYPTION_KEY_PREVIOUS")
	}
}

// Rows that open with neither key: the rotation ends non-zero, the new key is
// current, the old one stays published and sealed, and another rotation of
// the key is refused until the re-encryption is finished.
func TestFlowDataKeyIncomplete(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	_, old := w.current("ENCRYPTION_KEY")
	w.rows.corrupt[3] = true
	_, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !errors.Is(err, rekey.ErrIncomplete) {
		t.Fatalf("Rotate = %v, want exit 7 wrapping ErrIncomplete", err)
	}
	v, cur := w.current("ENCRYPTION_KEY")
	if v.N != 2 || v.Attrs[rekey.AttrReencrypt] != "incomplete" {
		t.Errorf("current v%d attrs %v, want v2 marked incomplete", v.N, v.Attrs)
	}
	if p := w.labeled("ENCRYPTION_KEY", rekey.LabelPrevious); p.N != 1 {
		t.Errorf("previous is v%d, want the old key v1 kept", p.N)
	}
	if w.target.get("ENCRYPTION_KEY") != cur || w.target.get("ENCRYPTION_KEY_PREVIOUS") != old {
		t.Error("the .env should hold the new key and the old one as ENCRYPTION_KEY_PREVIOUS")
	}
	_, err = w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil)
	if rekey.ErrorCode(err) != rekey.CodeConflict || !strings.Contains(err.Error(), "rows are still encrypted") {
		t.Fatalf("second Rotate = %v, want a refusal while rows are on the old key", err)
	}
}

// A crash at every boundary of the steps around the rotation (restart,
// migrate) and in the middle of the re-encryption: recovery completes the
// rotation, every row ends on the new key and the .env holds it alone.
func TestFlowDataKeyCrashes(t *testing.T) {
	// Every fault point of this rotation (an online data key: no applier, a
	// migrator; services)
	// after which recovery completes it, from the engine's step table, and
	// one in the middle of the rows.
	points := []string{"row:7"}
	for _, p := range engine.FaultPoints(engine.NeedServices, engine.NeedOnline) {
		if p.Recovery == engine.Completed {
			points = append(points, p.Point)
		}
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			w := fwNewWorld(t, fwKey)
			crash := func(p string) {
				if p == point {
					panic(ecCrash{p})
				}
			}
			w.rows.fault = func(i int) { crash(fmt.Sprintf("row:%d", i)) }
			crashed := func() (c bool) {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(ecCrash); !ok {
							panic(r)
						}
						c = true
					}
				}()
				w.engine(nil, crash).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil)
				return false
			}()
			if !crashed {
				t.Fatalf("no crash at %s", point)
			}
			w.rows.fault = nil
			w.st.Close()
			var err error
			if w.st, err = sqlite.Open(t.Context(), w.path, w.key); err != nil {
				t.Fatal(err)
			}
			rep, err := w.engine(nil, nil).Recover(t.Context())
			if err != nil || len(rep.RolledForward) != 1 {
				t.Fatalf("Recover = %+v, %v; want the rotation completed", rep, err)
			}
			v, cur := w.current("ENCRYPTION_KEY")
			if v.N != 2 {
				t.Fatalf("current is v%d after recovery", v.N)
			}
			if point == "migrate:after" && w.rows.calls != 1 {
				t.Errorf("recovery after a finished migration migrated again (%d calls)", w.rows.calls)
			}
			w.rowsOn(cur, "is not on the new key after recovery")
			if snap := w.target.snapshot(); snap["ENCRYPTION_KEY"] != cur || snap["ENCRYPTION_KEY_PREVIOUS"] != "" {
				t.Fatalf("the .env after recovery: new key %v, previous still there %v", snap["ENCRYPTION_KEY"] == cur, snap["ENCRYPTION_KEY_PREVIOUS"] != "")
			}
		})
	}
}

// DeferOnline (an incident's emergency rotation): the new key is published
// with the old one as ENCRYPTION_KEY_PREVIOUS and no row moves; the finish
// step marks the new version incomplete in its own transaction, so a later
// rotation of the key is refused until FinishMigration moves the rows,
// which then drops ENCRYPTION_KEY_PREVIOUS. A crash in the middle is
// completed by Recover, which moves the rows (it does not defer).
func TestFlowDataKeyDeferred(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	_, old := w.current("ENCRYPTION_KEY")
	e := w.engine(nil, nil)
	e.DeferOnline = true
	res, err := e.Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeEmergency, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Deferred, []string{"ENCRYPTION_KEY"}) || w.rows.calls != 0 {
		t.Fatalf("Deferred %v, %d migrations; want the key deferred and no row moved", res.Deferred, w.rows.calls)
	}
	v, cur := w.current("ENCRYPTION_KEY")
	if v.Attrs[rekey.AttrReencrypt] != "incomplete" {
		t.Errorf("current v%d attrs %v, want it marked incomplete", v.N, v.Attrs)
	}
	if w.target.get("ENCRYPTION_KEY") != cur || w.target.get("ENCRYPTION_KEY_PREVIOUS") != old {
		t.Error("the .env should hold the new key and the exposed one as ENCRYPTION_KEY_PREVIOUS")
	}
	w.rowsOn(old, "moved although the re-encryption was deferred")
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); rekey.ErrorCode(err) != rekey.CodeConflict {
		t.Fatalf("rotating again before the rows moved = %v, want a refusal", err)
	}
	if did, err := w.engine(nil, nil).FinishMigration(t.Context(), "ENCRYPTION_KEY"); !did || err != nil {
		t.Fatalf("FinishMigration = %v, %v", did, err)
	}
	w.rowsOn(cur, "not on the new key after FinishMigration")
	if _, ok := w.target.snapshot()["ENCRYPTION_KEY_PREVIOUS"]; ok {
		t.Error("ENCRYPTION_KEY_PREVIOUS still published")
	}

	// Killed after publish: Recover completes the rotation and moves the rows.
	w = fwNewWorld(t, fwKey)
	e = w.engine(nil, func(p string) {
		if p == rekey.StepPublish+":after" {
			panic(ecCrash{p})
		}
	})
	e.DeferOnline = true
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("no crash after publish")
			}
		}()
		e.Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeEmergency, nil)
	}()
	if rep, err := w.engine(nil, nil).Recover(t.Context()); err != nil || len(rep.RolledForward) != 1 {
		t.Fatalf("Recover = %+v, %v", rep, err)
	}
	v, cur = w.current("ENCRYPTION_KEY")
	w.rowsOn(cur, "not on the new key after recovery")
	if v.Attrs[rekey.AttrReencrypt] != "" || w.target.get("ENCRYPTION_KEY_PREVIOUS") != "" {
		t.Errorf("after recovery: attrs %v, ENCRYPTION_KEY_PREVIOUS published %v", v.Attrs, w.target.get("ENCRYPTION_KEY_PREVIOUS") != "")
	}
}

// After an incomplete re-encryption is fixed, FinishMigration moves the rest
// of the rows, clears the mark, drops ENCRYPTION_KEY_PREVIOUS, and rotating
// the key is allowed again.
func TestFlowFinishMigration(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	w.rows.corrupt[3] = true
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); !errors.Is(err, rekey.ErrIncomplete) {
		t.Fatalf("Rotate = %v, want ErrIncomplete", err)
	}
	// Still broken: FinishMigration reports it and keeps everything.
	if did, err := w.engine(nil, nil).FinishMigration(t.Context(), "ENCRYPTION_KEY"); !did || !errors.Is(err, rekey.ErrIncomplete) {
		t.Fatalf("FinishMigration with the bad row = %v, %v", did, err)
	}
	if w.target.get("ENCRYPTION_KEY_PREVIOUS") == "" {
		t.Fatal("ENCRYPTION_KEY_PREVIOUS removed while a row still needs the old key")
	}
	// The operator repairs the row (restores it under the old key).
	_, old := func() (rekey.Version, string) {
		var v rekey.Version
		var val rekey.Value
		w.st.View(t.Context(), func(tx rekey.Tx) error {
			v, _ = tx.Labeled(ecEnv, "ENCRYPTION_KEY", rekey.LabelPrevious)
			val, _ = tx.Value(ecEnv, "ENCRYPTION_KEY", v.N)
			return nil
		})
		return v, val.RevealString()
	}()
	w.rows.rows[3], w.rows.corrupt[3] = old, false
	did, err := w.engine(nil, nil).FinishMigration(t.Context(), "ENCRYPTION_KEY")
	if !did || err != nil {
		t.Fatalf("FinishMigration = %v, %v", did, err)
	}
	v, cur := w.current("ENCRYPTION_KEY")
	if v.Attrs[rekey.AttrReencrypt] != "" {
		t.Errorf("mark not cleared: %v", v.Attrs)
	}
	w.rowsOn(cur, "not on the new key")
	if _, ok := w.target.snapshot()["ENCRYPTION_KEY_PREVIOUS"]; ok {
		t.Error("ENCRYPTION_KEY_PREVIOUS still published")
	}
	if did, err := w.engine(nil, nil).FinishMigration(t.Context(), "ENCRYPTION_KEY"); did || err != nil {
		t.Errorf("second FinishMigration = %v, %v, want nothing to do", did, err)
	}
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); err != nil {
		t.Errorf("rotating after the re-encryption finished: %v", err)
	}
}

// A check that fails after the rows moved to the new key does not roll back
// (the old key alone would not read them): the new values are kept, exit 7.
func TestFlowDataKeyChecksFailAfterMigration(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	never := &fwChecks{svc: w.svc, ok: func(map[string]string) bool { return false }}
	_, err := w.engine(never, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(err.Error(), "after the data moved to the new key") {
		t.Fatalf("Rotate = %v", err)
	}
	v, cur := w.current("ENCRYPTION_KEY")
	if v.N != 2 || w.target.get("ENCRYPTION_KEY") != cur || v.Attrs[rekey.AttrReencrypt] != "" {
		t.Fatalf("want v2 current, published and not marked (rows moved): v%d %v", v.N, v.Attrs)
	}
	w.rowsOn(cur, "not on the kept key")
}

// An emergency rotation whose restart fails before the rows moved keeps the
// new key, keeps the old one published as ENCRYPTION_KEY_PREVIOUS, marks the
// version so no later rotation strands the rows, and FinishMigration moves
// them; the hint carries the service's output.
func TestFlowEmergencyRestartFailsBeforeMigration(t *testing.T) {
	w := fwNewWorld(t, fwKey)
	_, old := w.current("ENCRYPTION_KEY")
	w.svc.failRestarts = 1
	_, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeEmergency, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(rekey.ErrorHint(err), "config invalid") {
		t.Fatalf("Rotate = %v (hint %q)", err, rekey.ErrorHint(err))
	}
	v, cur := w.current("ENCRYPTION_KEY")
	if v.Attrs[rekey.AttrReencrypt] != "incomplete" || w.target.get("ENCRYPTION_KEY_PREVIOUS") != old || w.target.get("ENCRYPTION_KEY") != cur {
		t.Fatalf("after the failed emergency: attrs %v, previous published %v", v.Attrs, w.target.get("ENCRYPTION_KEY_PREVIOUS") == old)
	}
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"ENCRYPTION_KEY"}, rekey.ModeManual, nil); rekey.ErrorCode(err) != rekey.CodeConflict {
		t.Fatalf("a rotation before the rows moved = %v, want refused", err)
	}
	if did, err := w.engine(nil, nil).FinishMigration(t.Context(), "ENCRYPTION_KEY"); !did || err != nil {
		t.Fatalf("FinishMigration = %v, %v", did, err)
	}
	w.rowsOn(cur, "not moved")
}

// A rotation of a signing secret and a data key whose check fails after the
// rows moved: the signing secret rolls back, the data key stays on its new
// value (its rows need it), and the report of the error says so.
func TestFlowPartialRollbackKeepsMovedDataKey(t *testing.T) {
	w := fwNewWorld(t, fwJWT, fwKey)
	_, oldJWT := w.current("JWT_SECRET")
	_, oldKey := w.current("ENCRYPTION_KEY")
	never := &fwChecks{svc: w.svc, ok: func(map[string]string) bool { return false }}
	_, err := w.engine(never, nil).Rotate(t.Context(), []string{"JWT_SECRET", "ENCRYPTION_KEY"}, rekey.ModeManual, nil)
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed || !strings.Contains(rekey.ErrorHint(err), "except ENCRYPTION_KEY") {
		t.Fatalf("Rotate = %v (hint %q)", err, rekey.ErrorHint(err))
	}
	if v, val := w.current("JWT_SECRET"); v.N != 1 || val != oldJWT || w.target.get("JWT_SECRET") != oldJWT {
		t.Errorf("JWT_SECRET not rolled back: current v%d", v.N)
	}
	v, key := w.current("ENCRYPTION_KEY")
	if v.N != 2 || key == oldKey || w.target.get("ENCRYPTION_KEY") != key {
		t.Errorf("ENCRYPTION_KEY should stay on v2: current v%d, published %v", v.N, w.target.get("ENCRYPTION_KEY") == key)
	}
	if p := w.labeled("ENCRYPTION_KEY", rekey.LabelPrevious); p.N != 1 {
		t.Errorf("the old key should be previous, is v%d", p.N)
	}
	w.rowsOn(key, "is not on the kept key")
	if _, ok := w.target.snapshot()["ENCRYPTION_KEY_PREVIOUS"]; ok {
		t.Error("ENCRYPTION_KEY_PREVIOUS left behind")
	}
}

// An emergency rotation of a graceful signing secret gives the old value no
// grace: it is not published as JWT_SECRET_PREVIOUS and its grace is over.
func TestFlowEmergencyNoGrace(t *testing.T) {
	jwt := fwJWT
	jwt.Sessions = &rekey.SessionsSpec{Mode: rekey.SessionsGraceful, Grace: 24 * time.Hour}
	w := fwNewWorld(t, jwt)
	if _, err := w.engine(nil, nil).Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeEmergency, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.target.snapshot()["JWT_SECRET_PREVIOUS"]; ok {
		t.Error("an emergency published the exposed value as JWT_SECRET_PREVIOUS")
	}
	if a := w.labeled("JWT_SECRET", rekey.LabelPrevious).Attrs; a[rekey.AttrExpired] == "" {
		t.Errorf("the exposed value's grace is not over: %v", a)
	}
}

// keep_versions prunes old versions of other secrets, never a data key's:
// rows may still need one.
func TestFlowDataKeyVersionsNeverPruned(t *testing.T) {
	w := fwNewWorld(t, fwJWT, fwKey)
	for range 3 {
		e := w.engine(nil, nil)
		e.KeepVersions = 1
		if _, err := e.Rotate(t.Context(), []string{"JWT_SECRET", "ENCRYPTION_KEY"}, rekey.ModeManual, nil); err != nil {
			t.Fatal(err)
		}
	}
	count := func(name string) int {
		var n int
		w.st.View(t.Context(), func(tx rekey.Tx) error {
			vs, err := tx.Versions(ecEnv, name)
			n = len(vs)
			return err
		})
		return n
	}
	if n := count("JWT_SECRET"); n != 3 {
		t.Errorf("JWT_SECRET keeps %d versions, want 3 (current, previous, one more)", n)
	}
	if n := count("ENCRYPTION_KEY"); n != 4 {
		t.Errorf("ENCRYPTION_KEY keeps %d versions, want all 4", n)
	}
}

// orderTarget records, in log, each write to the target it wraps.
type orderTarget struct {
	*ecTarget
	name string
	log  *[]string
}

func (o orderTarget) Name() string { return o.name }

func (o orderTarget) Write(ctx context.Context, set map[string]rekey.Value, del []string) error {
	*o.log = append(*o.log, o.name+" "+set["JWT_SECRET"].RevealString())
	return o.ecTarget.Write(ctx, set, del)
}

// Targets are written in the order given and, when the rotation rolls
// back, restored in reverse: the last to get the new value is the first to
// lose it.
func TestFlowTargetOrderAndReverseRollback(t *testing.T) {
	w := fwNewWorld(t, fwJWT)
	_, old := w.current("JWT_SECRET")
	var log []string
	second := &ecTarget{vals: map[string]string{"JWT_SECRET": old}}
	e := w.engine(&fwChecks{svc: w.svc, ok: func(map[string]string) bool { return false }}, nil)
	e.Targets = map[string]rekey.Target{"app": orderTarget{w.target, "app", &log}, "vault": orderTarget{second, "vault", &log}}
	e.TargetOrder = []string{"app", "vault"}
	if _, err := e.Rotate(t.Context(), []string{"JWT_SECRET"}, rekey.ModeManual, nil); rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Fatalf("Rotate = %v, want the checks to fail it", err)
	}
	if len(log) != 4 {
		t.Fatalf("writes: %q", log)
	}
	newV := strings.TrimPrefix(log[0], "app ")
	want := []string{"app " + newV, "vault " + newV, "vault " + old, "app " + old}
	if !slices.Equal(log, want) || newV == old {
		t.Errorf("writes %q, want publish app then vault, restore vault then app", log)
	}
}
