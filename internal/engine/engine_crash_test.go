package engine_test

// Crash tests of the rotation engine with the real sqlite store, an
// in-memory target and an in-memory backing system (the "database" an
// Applier changes). A Fault hook that panics stands for the process dying at
// a step boundary; the test recovers the panic, closes and reopens the store
// and runs Recover with a fresh Engine, as the next rekey would. This reaches
// what the CLI cannot: a verification that fails after the target was
// written (the rollback must rewrite the old values), and the apply steps.

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

const ecEnv = "production"

// ecWorld is a store file, a target and a database that survive crashes.
type ecWorld struct {
	t      *testing.T
	path   string
	key    seal.Key
	st     *sqlite.DB
	target *ecTarget
	db     *ecDatabase
	specs  []rekey.Spec
	url    *rekey.Template
}

var ecNames = []string{"DB_PASSWORD", "JWT_SECRET"}

func ecNewWorld(t *testing.T) *ecWorld {
	t.Helper()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	url, err := rekey.ParseTemplate("postgres://app:{{ DB_PASSWORD | urlquery }}@db:5432/app")
	if err != nil {
		t.Fatal(err)
	}
	w := &ecWorld{
		t: t, path: filepath.Join(t.TempDir(), "rekey.db"), key: key, url: url,
		target: &ecTarget{vals: map[string]string{"RUST_LOG": "info"}},
		db:     &ecDatabase{accepted: map[string]string{}},
		specs: []rekey.Spec{
			{Name: "DB_PASSWORD", Kind: rekey.KindPostgresPassword, Generator: rekey.Generator{Bytes: 24, Encoding: rekey.EncBase64URLNoPad}},
			{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 64, Encoding: rekey.EncBase64}},
		},
	}
	w.st, err = sqlite.Create(t.Context(), w.path, key, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	// Version 1 of each secret, everywhere.
	v1 := map[string]rekey.Value{}
	for _, s := range w.specs {
		v, err := s.Generator.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		v1[s.Name] = v
	}
	err = w.st.Update(t.Context(), func(tx rekey.Tx) error {
		for _, name := range ecNames {
			if _, err := tx.AddVersion(ecEnv, name, rekey.NewVersion{Value: v1[name], Label: rekey.LabelCurrent, Source: rekey.SourceImported}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range v1 {
		w.target.vals[name] = v.RevealString()
	}
	w.target.vals["DATABASE_URL"] = w.render(v1["DB_PASSWORD"])
	w.db.accepted["DB_PASSWORD"] = v1["DB_PASSWORD"].RevealString()
	return w
}

func (w *ecWorld) render(pw rekey.Value) string {
	v, err := w.url.Render(map[string]rekey.Value{"DB_PASSWORD": pw})
	if err != nil {
		w.t.Fatal(err)
	}
	return v.RevealString()
}

// engine is what a fresh rekey process builds; fault may be nil.
func (w *ecWorld) engine(fault func(string)) *engine.Engine {
	return &engine.Engine{
		Store: w.st, Env: ecEnv, Specs: w.specs,
		Derived:  []rekey.Derived{{Name: "DATABASE_URL", Template: w.url}},
		Targets:  map[string]rekey.Target{"app": w.target},
		Appliers: map[rekey.Kind]rekey.Applier{rekey.KindPostgresPassword: w.db},
		Actor:    "engine-crash-test",
		Fault:    fault,
	}
}

// crashAt returns a Fault hook that "kills the process" at point.
func ecCrashAt(point string) func(string) {
	return func(p string) {
		if p == point {
			panic(ecCrash{p})
		}
	}
}

// run runs fn with an engine that crashes at point; it reports whether it
// crashed and what fn returned otherwise. After a crash the store is closed
// and reopened, as by a new process.
func (w *ecWorld) run(point string, fn func(e *engine.Engine) error) (crashed bool, err error) {
	w.t.Helper()
	func() {
		defer func() {
			if r := recover(); r != nil {
				c, ok := r.(ecCrash)
				if !ok {
					panic(r)
				}
				crashed = true
				if c.point != point {
					w.t.Fatalf("crashed at %s, want %s", c.point, point)
				}
			}
		}()
		err = fn(w.engine(ecCrashAt(point)))
	}()
	if crashed {
		w.restart()
	}
	return crashed, err
}

func (w *ecWorld) restart() {
	w.t.Helper()
	if err := w.st.Close(); err != nil {
		w.t.Fatal(err)
	}
	st, err := sqlite.Open(w.t.Context(), w.path, w.key)
	if err != nil {
		w.t.Fatalf("reopen the store after a crash: %v", err)
	}
	w.st = st
}

// ecState is the store's view of the secrets after recovery.
type ecState struct {
	cur     map[string]int
	val     map[string]string
	latest  map[string]int
	labels  map[string]map[int]rekey.Label
	history map[string]map[int]string
}

// consistent checks the invariants that must hold after Recover: no
// rotation left running, no pending label, the target and the database hold
// the store's current values (and the derived URL matches), every version's
// value is readable, and the audit chain verifies.
func (w *ecWorld) consistent() ecState {
	w.t.Helper()
	ctx := w.t.Context()
	s := ecState{cur: map[string]int{}, val: map[string]string{}, latest: map[string]int{}, labels: map[string]map[int]rekey.Label{}, history: map[string]map[int]string{}}
	err := w.st.View(ctx, func(tx rekey.Tx) error {
		open, err := tx.Rotations(ecEnv, true)
		if err != nil {
			return err
		}
		if len(open) > 0 {
			return fmt.Errorf("%d rotation(s) still running after recovery", len(open))
		}
		for _, name := range ecNames {
			vs, err := tx.Versions(ecEnv, name)
			if err != nil {
				return err
			}
			s.labels[name], s.history[name] = map[int]rekey.Label{}, map[int]string{}
			for _, v := range vs {
				if v.Label == rekey.LabelPending {
					return fmt.Errorf("%s v%d still pending after recovery", name, v.N)
				}
				val, err := tx.Value(ecEnv, name, v.N)
				if err != nil {
					return fmt.Errorf("%s v%d: %w", name, v.N, err)
				}
				s.labels[name][v.N], s.history[name][v.N] = v.Label, val.RevealString()
				s.latest[name] = max(s.latest[name], v.N)
			}
			cur, err := tx.Labeled(ecEnv, name, rekey.LabelCurrent)
			if err != nil {
				return fmt.Errorf("%s current: %w", name, err)
			}
			s.cur[name], s.val[name] = cur.N, s.history[name][cur.N]
		}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, name := range ecNames {
		if w.target.get(name) != s.val[name] {
			w.t.Fatalf("the target's %s is not the store's current v%d", name, s.cur[name])
		}
	}
	if w.target.get("DATABASE_URL") != w.render(rekey.NewValueString(s.val["DB_PASSWORD"])) {
		w.t.Fatalf("the target's DATABASE_URL does not embed the current DB_PASSWORD")
	}
	if w.db.get("DB_PASSWORD") != s.val["DB_PASSWORD"] {
		w.t.Fatalf("the database does not accept the store's current DB_PASSWORD v%d", s.cur["DB_PASSWORD"])
	}
	if w.target.get("RUST_LOG") != "info" {
		w.t.Fatalf("an unrelated key of the target changed")
	}
	if _, err := w.st.VerifyAudit(ctx); err != nil {
		w.t.Fatalf("audit chain: %v", err)
	}
	return s
}

// recover runs Recover with a fresh engine (crashing at point, if not "")
// and reports whether it crashed.
func (w *ecWorld) recover(point string) (bool, *engine.RecoverReport, error) {
	w.t.Helper()
	var rep *engine.RecoverReport
	crashed, err := w.run(point, func(e *engine.Engine) error {
		var err error
		rep, err = e.Recover(w.t.Context())
		return err
	})
	return crashed, rep, err
}

type ecOutcome string

const (
	ecNotCreated ecOutcome = "not created"
	ecRolledBack ecOutcome = "rolled back"
	ecCompleted  ecOutcome = "completed"
)

// outcome finds what became of a rotation of both secrets from v1, given
// the v1 values, and checks the history agrees with it.
func (w *ecWorld) outcome(s ecState, v1 map[string]string) ecOutcome {
	w.t.Helper()
	var got []ecOutcome
	for _, name := range ecNames {
		if s.history[name][1] != v1[name] {
			w.t.Fatalf("%s v1 lost its value", name)
		}
		switch {
		case s.latest[name] == 1 && s.cur[name] == 1:
			got = append(got, ecNotCreated)
		case s.latest[name] == 2 && s.cur[name] == 1 && s.labels[name][2] == rekey.LabelNone:
			got = append(got, ecRolledBack)
		case s.latest[name] == 2 && s.cur[name] == 2 && s.labels[name][1] == rekey.LabelPrevious && s.val[name] != v1[name]:
			got = append(got, ecCompleted)
		default:
			w.t.Fatalf("%s: unexpected history after recovery: labels %v, current v%d", name, s.labels[name], s.cur[name])
		}
	}
	if got[0] != got[1] {
		w.t.Fatalf("the secrets of one rotation ended differently: %v", got)
	}
	return got[0]
}

// ecPoints are the fault points of a rotation of ecNames (DB_PASSWORD has
// an applier), forward and on the rollback path: the engine's step table
// lists them, so a new step brings its crash cases here.
var ecPoints = engine.FaultPoints(engine.NeedApplier, engine.NeedFailure)

// ecWant is what a rotation that crashed at p must become once recovered.
func ecWant(p engine.FaultPoint) ecOutcome {
	switch p.Recovery {
	case engine.NotCreated:
		return ecNotCreated
	case engine.RolledBack:
		return ecRolledBack
	}
	// Created (the create commit journals the publish intent): complete;
	// apply is idempotent (the target no longer lies after the restart).
	return ecCompleted
}

func ecRotate(mode rekey.Mode) func(e *engine.Engine) error {
	return func(e *engine.Engine) error {
		_, err := e.Rotate(context.Background(), ecNames, mode, nil)
		return err
	}
}

// TestEngineCrashAtEveryPoint crashes a rotation of two secrets (one with an
// apply step, one with a derived value) at every fault point, on the path
// where everything works and on the path where verification fails after
// publishing, then recovers.
func TestEngineCrashAtEveryPoint(t *testing.T) {
	type tc struct {
		path  string // "ok" or "verify-fails"
		point string
		fp    engine.FaultPoint
		want  []ecOutcome
	}
	var cases []tc
	for _, path := range []string{"ok", "verify-fails"} {
		for _, fp := range ecPoints {
			cases = append(cases, tc{path, fp.Point, fp, []ecOutcome{ecWant(fp)}})
		}
	}
	reached := map[string]map[string]bool{"ok": {}, "verify-fails": {}}
	for _, c := range cases {
		t.Run(c.path+"/"+c.point, func(t *testing.T) {
			w := ecNewWorld(t)
			v1 := w.target.snapshot()
			w.target.arm(c.path == "verify-fails")
			crashed, err := w.run(c.point, ecRotate(rekey.ModeManual))
			w.target.arm(false)
			if !crashed {
				// Not on this path: the rotation ran to its end.
				switch c.path {
				case "ok":
					if err != nil {
						t.Fatalf("rotate: %v", err)
					}
				case "verify-fails":
					if rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
						t.Fatalf("want a verification failure, got %v", err)
					}
				}
				s := w.consistent()
				want := map[string]ecOutcome{"ok": ecCompleted, "verify-fails": ecRolledBack}[c.path]
				if got := w.outcome(s, v1); got != want {
					t.Fatalf("without a crash: %s, want %s", got, want)
				}
				return
			}
			reached[c.path][c.point] = true
			// Right after the crash: before publish, the target is untouched.
			if !c.fp.Published && c.fp.Needs != engine.NeedFailure {
				if !maps.Equal(w.target.snapshot(), v1) {
					t.Fatalf("the target changed before publish")
				}
			}
			if c.point == "rollback:before" && w.target.get("JWT_SECRET") == v1["JWT_SECRET"] {
				t.Fatalf("at rollback:before after a failed verification, the target should hold the new values")
			}
			if _, _, err := w.recover(""); err != nil {
				t.Fatalf("recover: %v", err)
			}
			s := w.consistent()
			if got := w.outcome(s, v1); !slices.Contains(c.want, got) {
				t.Fatalf("crash at %s: %s, want %v", c.point, got, c.want)
			}
			// Afterwards a rotation works.
			if _, err := w.engine(nil).Rotate(t.Context(), ecNames, rekey.ModeManual, nil); err != nil {
				t.Fatalf("rotate after recovery: %v", err)
			}
			s2 := w.consistent()
			for _, name := range ecNames {
				if s2.cur[name] != s.latest[name]+1 || s2.history[name][s.cur[name]] != s.val[name] {
					t.Fatalf("%s: want v%d current and v%d kept, got %v", name, s.latest[name]+1, s.cur[name], s2.labels[name])
				}
			}
		})
	}
	// Both paths must reach their own points: the way forward every point
	// but the rollback's; a failed verification every point up to
	// verify:before, then the rollback's.
	failed := false
	for _, p := range ecPoints {
		forward := p.Needs != engine.NeedFailure
		if forward && !reached["ok"][p.Point] {
			t.Errorf("path ok never reached %s", p.Point)
		}
		if (!forward || !failed) && !reached["verify-fails"][p.Point] {
			t.Errorf("path verify-fails never reached %s", p.Point)
		}
		failed = failed || p.Point == rekey.StepVerify+":before"
	}
}

// TestEngineCrashDuringRecover crashes again while Recover handles the first
// crash, then recovers for good.
func TestEngineCrashDuringRecover(t *testing.T) {
	type tc struct {
		path          string
		first, second string
		want          ecOutcome
	}
	var cases []tc
	var back, forward, again []string
	for _, p := range ecPoints {
		switch {
		case p.Recovery == engine.RolledBack:
			back = append(back, p.Point)
		case p.Recovery == engine.Completed:
			forward = append(forward, p.Point)
		}
		if p.Recovery != engine.NotCreated && p.Needs != engine.NeedFailure && p.Step != rekey.StepCreate {
			again = append(again, p.Point) // what completing a rotation runs again
		}
	}
	for _, second := range back {
		// Finishing a rollback that had put the old values back (or not yet).
		for _, first := range back {
			cases = append(cases, tc{"verify-fails", first, second, ecRolledBack})
		}
	}
	for _, first := range forward {
		for _, second := range again {
			cases = append(cases, tc{"ok", first, second, ecCompleted})
		}
	}
	for _, c := range cases {
		t.Run(c.path+"/"+c.first+"/"+c.second, func(t *testing.T) {
			w := ecNewWorld(t)
			v1 := w.target.snapshot()
			w.target.arm(c.path == "verify-fails")
			if crashed, err := w.run(c.first, ecRotate(rekey.ModeManual)); !crashed {
				t.Fatalf("%s not reached (rotate: %v)", c.first, err)
			}
			w.target.arm(false)
			if crashed, _, err := w.recover(c.second); !crashed {
				t.Fatalf("recovery did not reach %s (err %v)", c.second, err)
			}
			if _, _, err := w.recover(""); err != nil {
				t.Fatalf("recover: %v", err)
			}
			if got := w.outcome(w.consistent(), v1); got != c.want {
				t.Fatalf("%s", got)
			}
		})
	}
}

// TestEngineVerifyFailsDuringRecovery: a rotation that crashed after
// publishing is completed by recovery, and the verification of that
// completion fails (the target still does not hold what was written). A
// manual rotation then rolls back; an emergency one keeps the new values.
// Either way, one more Recover finds nothing left to do.
func TestEngineVerifyFailsDuringRecovery(t *testing.T) {
	for _, mode := range []rekey.Mode{rekey.ModeManual, rekey.ModeEmergency} {
		t.Run(string(mode), func(t *testing.T) {
			w := ecNewWorld(t)
			v1 := w.target.snapshot()
			if crashed, err := w.run("publish:after", ecRotate(mode)); !crashed {
				t.Fatalf("publish:after not reached: %v", err)
			}
			w.target.arm(true)
			_, _, err := w.recover("")
			w.target.arm(false)
			if rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
				t.Fatalf("recover: want a verification failure, got %v", err)
			}
			_, rep, err := w.recover("")
			if err != nil || len(rep.RolledBack)+len(rep.RolledForward) != 0 {
				t.Fatalf("a second recover should find nothing to do: %+v, %v", rep, err)
			}
			want := map[rekey.Mode]ecOutcome{rekey.ModeManual: ecRolledBack, rekey.ModeEmergency: ecCompleted}[mode]
			if got := w.outcome(w.consistent(), v1); got != want {
				t.Fatalf("%s, want %s", got, want)
			}
		})
	}
}
