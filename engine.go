package rekey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Step names of the rotation journal, in order.
const (
	StepCreate   = "create"
	StepApply    = "apply"
	StepPublish  = "publish"
	StepVerify   = "verify"
	StepFinish   = "finish"
	StepRollback = "rollback"
	StepStop     = "stop"    // maintenance mode: consumers stopped
	StepMigrate  = "migrate" // data moved to the new key (re-encryption)
)

// VersionValue is one version of a secret with its value, as appliers see
// it: the value and the version's number and attributes (the login role of an
// alternating PostgreSQL password). Zero when there is no such version.
type VersionValue struct {
	Version
	Value Value
}

// Applier adds kind-specific work to a rotation (PostgreSQL role passwords,
// re-encryption). Every method must be idempotent: recovery may call it again
// after a crash at any point.
type Applier interface {
	// Apply makes the backing system accept the pending value.
	Apply(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
	// Revert makes the backing system accept current again (rollback).
	Revert(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
}

// Preflighter is an Applier that can tell, before a rotation, whether its
// backing system is reachable with the current value.
type Preflighter interface {
	Preflight(ctx context.Context, env string, spec *Spec, current VersionValue) error
}

// Attributer is an Applier that chooses the attributes of a new version from
// the current one's (the idle role of an alternating pair). It does no I/O:
// it runs inside the transaction that seals the new version.
type Attributer interface {
	Attrs(spec *Spec, current Version) map[string]string
}

// Expirer is an Applier whose superseded version stays valid for a grace
// period after a rotation (the previous role of an alternating pair). Expire
// ends it (a fresh random password nobody knows); it must be idempotent.
type Expirer interface {
	Expire(ctx context.Context, env string, spec *Spec, old VersionValue) error
}

// Preflight checks the backing system of one secret, if its applier can.
func (e *Engine) Preflight(ctx context.Context, name string) error {
	s, ok := e.Spec(name)
	if !ok {
		return nil
	}
	pf, ok := e.Appliers[s.Kind].(Preflighter)
	if !ok {
		return nil
	}
	var cur VersionValue
	err := e.Store.View(ctx, func(tx Tx) error {
		v, err := tx.Labeled(e.Env, name, LabelCurrent)
		if err != nil {
			return err
		}
		cur.Version = v
		cur.Value, err = tx.Value(e.Env, name, v.N)
		return err
	})
	if err != nil {
		return err
	}
	return pf.Preflight(ctx, e.Env, s, cur)
}

// Verifier is an Applier that checks its backing system after publish (a
// login with the new value; the old one refused).
type Verifier interface {
	Verify(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
}

// Prober is an Applier that can tell whether the backing system accepts a
// candidate value (a PostgreSQL login), for `rekey recover --probe`.
type Prober interface {
	Accepts(ctx context.Context, env string, spec *Spec, candidate VersionValue) (bool, error)
}

// ProbeResult says which stored version the backing system accepts.
type ProbeResult struct {
	Name     string
	Accepted int // version number, 0 if none
	Current  int
	Repaired bool
}

// ProbeRepair asks the backing system of each named secret (all whose
// applier can probe, when names is empty) which stored version it accepts:
// pending, current, previous, then older ones, newest first (AWS setSecret's
// order). When it is not the current one, the labels move so that it is
// (current becomes previous), the targets get it again, and the repair is
// audited. When no stored version is accepted, it says so and changes nothing.
// Callers hold the environment lock and have run Recover.
func (e *Engine) ProbeRepair(ctx context.Context, names []string) ([]ProbeResult, error) {
	if len(names) == 0 {
		for _, s := range e.Specs {
			if _, ok := e.Appliers[s.Kind].(Prober); ok {
				names = append(names, s.Name)
			}
		}
	}
	var out []ProbeResult
	for _, name := range names {
		s, ok := e.Spec(name)
		if !ok {
			return out, Errorf(CodeNotFound, "no secret %s in rekey.yaml", name)
		}
		pr, ok := e.Appliers[s.Kind].(Prober)
		if !ok {
			return out, Errorf(CodeInvalid, "%s (%s) has no backing system to probe", name, s.Kind)
		}
		var vs []Version
		vals := map[int]Value{}
		byN := map[int]Version{}
		cur := 0
		err := e.Store.View(ctx, func(tx Tx) error {
			var err error
			if vs, err = tx.Versions(e.Env, name); err != nil {
				return err
			}
			for _, v := range vs {
				byN[v.N] = v
				if v.Label == LabelCurrent {
					cur = v.N
				}
				if vals[v.N], err = tx.Value(e.Env, name, v.N); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		order := probeOrder(vs)
		res := ProbeResult{Name: name, Current: cur}
		for _, n := range order {
			ok, err := pr.Accepts(ctx, e.Env, s, VersionValue{byN[n], vals[n]})
			if err != nil {
				return out, Wrap(ErrorCode(err), err, "probe %s v%d", name, n)
			}
			if ok {
				res.Accepted = n
				break
			}
		}
		if res.Accepted == 0 {
			out = append(out, res)
			return out, Errorf(CodeConflict, "no stored version of %s is accepted by its database", name).
				WithHint("set a known password with ALTER ROLE as an administrator, then record it with `rekey set %s`", name)
		}
		if res.Accepted != cur {
			err := e.Store.Update(ctx, func(tx Tx) error {
				if cur != 0 {
					if err := tx.SetLabel(e.Env, name, cur, LabelPrevious); err != nil {
						return err
					}
				}
				if p, err := tx.Labeled(e.Env, name, LabelPending); err == nil && p.N == res.Accepted {
					if err := tx.SetLabel(e.Env, name, 0, LabelPending); err != nil {
						return err
					}
				}
				if err := tx.SetLabel(e.Env, name, res.Accepted, LabelCurrent); err != nil {
					return err
				}
				_, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "recover.probe", Env: e.Env, Secret: name, Version: res.Accepted, Fingerprint: e.Store.Fingerprint(vals[res.Accepted]), Outcome: "repaired", Detail: fmt.Sprintf("the database accepts v%d, not v%d: labels moved", res.Accepted, cur)})
				return err
			})
			if err != nil {
				return out, err
			}
			if err := e.publishValues(ctx, []string{name}, nil, nil); err != nil {
				return out, err
			}
			res.Repaired = true
		}
		out = append(out, res)
	}
	return out, nil
}

// probeOrder is pending, current, previous, then the others newest first.
func probeOrder(vs []Version) []int {
	var out []int
	for _, l := range []Label{LabelPending, LabelCurrent, LabelPrevious} {
		for _, v := range vs {
			if v.Label == l {
				out = append(out, v.N)
			}
		}
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Label == LabelNone {
			out = append(out, vs[i].N)
		}
	}
	return out
}

// KeepRotations is how many finished rotation journals an environment keeps
// (the audit log is the permanent record of every rotation).
const KeepRotations = 100

// Engine drives rotations of one environment through the journaled steps
// create → apply → publish → verify → finish, and recovers unfinished ones.
//
// Invariants:
//   - a new value is sealed in the store (durably) before any other system sees it;
//   - each step is recorded in the journal before and after it runs;
//   - after a crash, Recover brings the store's current label and the targets into agreement.
type Engine struct {
	Store   Store
	Env     string
	Specs   []Spec
	Derived []Derived
	// Targets of the environment by name; a secret goes to its Spec.Targets (all when empty).
	Targets map[string]Target
	// TargetOrder is the order targets are written in (defaults to sorted names).
	TargetOrder []string
	Appliers    map[Kind]Applier
	Actor       string
	Now         func() time.Time
	Rand        io.Reader
	// KeepVersions prunes unlabeled versions beyond this many after a rotation (0 = keep all).
	KeepVersions int
	// Fault is called at every step boundary with its name ("create:after" ...);
	// tests use it to crash the process there. Nil in production.
	Fault func(point string)
	// Progress receives one line per step for narration; nil discards.
	Progress func(format string, args ...any)
	// Services restarts what consumes changed keys; nil: none configured.
	Services Services
	// Checks verifies the application after publish; nil: none configured.
	Checks Checks
	// Hooks runs on_rotate hooks; nil: none configured.
	Hooks Hooks

	specIndex map[string]int
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) fault(point string) {
	if e.Fault != nil {
		e.Fault(point)
	}
}

func (e *Engine) say(format string, args ...any) {
	if e.Progress != nil {
		e.Progress(format, args...)
	}
}

// Spec returns the spec of a secret.
func (e *Engine) Spec(name string) (*Spec, bool) {
	if len(e.specIndex) != len(e.Specs) {
		e.specIndex = make(map[string]int, len(e.Specs))
		for i := range e.Specs {
			e.specIndex[e.Specs[i].Name] = i
		}
	}
	i, ok := e.specIndex[name]
	if !ok {
		return nil, false
	}
	return &e.Specs[i], true
}

func newID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Plan describes what a rotation would do, for --dry-run and narration.
type Plan struct {
	Env     string
	Mode    Mode
	Secrets []PlanSecret
}

// PlanSecret is one secret of a Plan.
type PlanSecret struct {
	Name        string
	Kind        Kind
	FromVersion int
	ToVersion   int
	Generator   Generator
	Targets     []string // target names
	Derived     []string // derived values rewritten with it
	Steps       []string
	Warnings    []string // what the user should know before it runs
}

// refusal says why a secret cannot be rotated by Rotate, or "".
func (e *Engine) refusal(s *Spec, given bool) *Error {
	switch s.Kind {
	case KindManual:
		if given {
			return nil
		}
		return Errorf(CodeUnsafe, "%s is user-managed: rekey cannot generate it", s.Name).
			WithHint("rotate it at the provider, then record it with `rekey set %s` (value on stdin)", s.Name)
	case KindDataKey:
		if _, ok := e.Appliers[KindDataKey].(Migrator); !ok || s.Reencrypt == nil {
			return Errorf(CodeUnsafe, "refusing to rotate %s: it is a data-encryption key and rekey.yaml does not say what it encrypts", s.Name).
				WithHint("a new %s without re-encrypting the existing rows makes every encrypted row unreadable: add reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [table.column]} to %s", s.Name, s.Name)
		}
	case KindPostgresPassword:
		if e.Appliers[KindPostgresPassword] == nil {
			return Errorf(CodeUnsafe, "refusing to rotate %s: changing the PostgreSQL role password is not available", s.Name).
				WithHint("a new %s in the .env without ALTER ROLE would lock the application out of its database", s.Name)
		}
	}
	return nil
}

// Plan checks that names can be rotated and describes the rotation.
func (e *Engine) Plan(ctx context.Context, names []string, mode Mode) (*Plan, error) {
	return e.plan(ctx, names, mode, false)
}

func (e *Engine) plan(ctx context.Context, names []string, mode Mode, given bool) (*Plan, error) {
	p := &Plan{Env: e.Env, Mode: mode}
	seen := map[string]bool{}
	err := e.Store.View(ctx, func(tx Tx) error {
		for _, name := range names {
			if seen[name] {
				continue
			}
			seen[name] = true
			s, ok := e.Spec(name)
			if !ok {
				return Errorf(CodeNotFound, "no secret %s in rekey.yaml", name).WithHint("`rekey status` lists the managed secrets")
			}
			if r := e.refusal(s, given); r != nil {
				return r
			}
			ps := PlanSecret{Name: name, Kind: s.Kind, Generator: s.Generator, Targets: e.targetNames(s)}
			cur, err := tx.Labeled(e.Env, name, LabelCurrent)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			ps.FromVersion = cur.N
			if cur.Attrs[AttrReencrypt] == "incomplete" {
				return Errorf(CodeConflict, "refusing to rotate %s: rows are still encrypted under v%d's predecessor", name, cur.N).
					WithHint("finish the last re-encryption first with `rekey reencrypt`; rotating now could strand those rows")
			}
			vs, err := tx.Versions(e.Env, name)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			ps.ToVersion = len(vs) + 1
			if len(vs) > 0 {
				ps.ToVersion = vs[len(vs)-1].N + 1
			}
			for _, d := range e.Derived {
				for _, ref := range d.Template.Refs() {
					if base, _ := SplitRef(ref); base == name {
						ps.Derived = append(ps.Derived, d.Name)
						break
					}
				}
			}
			ps.Steps = []string{"create v" + fmt.Sprint(ps.ToVersion) + " (sealed, pending)"}
			if s.Grace() > 0 {
				if pv, err := tx.Labeled(e.Env, name, LabelPrevious); err == nil && pv.Attrs[AttrExpired] == "" {
					if until, err := time.Parse(time.RFC3339, pv.Attrs[AttrGraceUntil]); err == nil && e.now().Before(until) {
						ps.Warnings = append(ps.Warnings, fmt.Sprintf("%s v%d is still in its grace period (until %s): this rotation ends it early, so what still uses it stops working now", name, pv.N, until.UTC().Format(time.RFC3339)))
					}
				}
			}
			if e.Appliers[s.Kind] != nil {
				ps.Steps = append(ps.Steps, "apply to "+string(s.Kind))
			}
			pub := "publish to " + strings.Join(ps.Targets, ", ")
			if len(ps.Derived) > 0 {
				pub += " (with " + strings.Join(ps.Derived, ", ") + ")"
			}
			maint := s.Reencrypt != nil && s.Reencrypt.Mode == ReencryptMaintenance
			if maint {
				ps.Steps = append(ps.Steps, "stop the services that consume it", "re-encrypt "+strings.Join(s.Reencrypt.Columns, ", ")+" from v"+fmt.Sprint(ps.FromVersion))
			}
			if k := s.PreviousKey(); k != "" && ps.FromVersion != 0 && (mode != ModeEmergency || s.Kind == KindDataKey) {
				pub += "; v" + fmt.Sprint(ps.FromVersion) + " as " + k
				if g := s.Grace(); g > 0 {
					pub += " for " + FormatDays(g)
				}
			}
			ps.Steps = append(ps.Steps, pub)
			if e.Services != nil {
				ps.Steps = append(ps.Steps, "restart the services that consume it")
			}
			if s.Reencrypt != nil && !maint {
				ps.Steps = append(ps.Steps, "re-encrypt "+strings.Join(s.Reencrypt.Columns, ", ")+" from v"+fmt.Sprint(ps.FromVersion)+" (online), then remove "+s.PreviousKey())
			}
			if s.Sessions != nil && len(s.Sessions.OnRotate) > 0 {
				ps.Steps = append(ps.Steps, fmt.Sprintf("run %d on_rotate hooks", len(s.Sessions.OnRotate)))
			}
			verify := "verify"
			if e.Checks != nil {
				verify += " (targets, then the checks)"
			}
			ps.Steps = append(ps.Steps, verify, "finish (v"+fmt.Sprint(ps.ToVersion)+" current)")
			p.Secrets = append(p.Secrets, ps)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.Secrets) == 0 {
		return nil, Errorf(CodeInvalid, "nothing to rotate")
	}
	return p, nil
}

func (e *Engine) targetNames(s *Spec) []string {
	if len(s.Targets) > 0 {
		return s.Targets
	}
	return e.targetOrder()
}

func (e *Engine) targetOrder() []string {
	if len(e.TargetOrder) > 0 {
		return e.TargetOrder
	}
	var out []string
	for n := range e.Targets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Result is what a rotation did.
type Result struct {
	Rotation *Rotation
	// Versions are the new versions by secret name.
	Versions map[string]Version
	// VerifyErr is set when verification failed: after rollback (scheduled, manual)
	// or with the new values kept (emergency).
	VerifyErr  error
	RolledBack bool
}

// NewValues supplies values for Rotate instead of the generator (rekey set, rekey rollback).
type NewValues struct {
	Values map[string]Value
	Source Source
	Note   string
	// SkipDrift publishes even over values the store does not know (set --from-target).
	SkipDrift bool
	// Force is a person's reason to publish a value that was exposed (an
	// emergency rotation superseded it: AttrExposed). Without one Rotate
	// refuses such a value (CodeUnsafe); with one it is audited.
	Force string
}

// Rotate rotates the named secrets together as one journaled rotation.
// Callers hold the environment lock and have run Recover.
func (e *Engine) Rotate(ctx context.Context, names []string, mode Mode, given *NewValues) (*Result, error) {
	plan, err := e.plan(ctx, names, mode, given != nil)
	if err != nil {
		return nil, err
	}
	// Generate before touching anything.
	values := map[string]Value{}
	source, note := SourceGenerated, ""
	for _, ps := range plan.Secrets {
		if given != nil {
			v, ok := given.Values[ps.Name]
			if !ok {
				return nil, Errorf(CodeInternal, "no value given for %s", ps.Name)
			}
			values[ps.Name] = v
			source, note = given.Source, given.Note
			continue
		}
		v, err := ps.Generator.Generate(e.Rand)
		if err != nil {
			return nil, err
		}
		values[ps.Name] = v
	}
	if given == nil || !given.SkipDrift {
		if err := e.checkDrift(ctx, plan); err != nil {
			return nil, err
		}
	}
	// A given value (rollback, set) must not be one an emergency rotation retired.
	exposed := map[string]*Exposure{}
	if given != nil {
		err := e.Store.View(ctx, func(tx Tx) error {
			for _, ps := range plan.Secrets {
				x, err := Exposed(tx, e.Env, ps.Name, e.Store.Fingerprint(values[ps.Name]))
				if err != nil {
					return err
				}
				if x != nil && strings.TrimSpace(given.Force) == "" {
					return exposureError(ps.Name, mode, x)
				}
				if x != nil {
					exposed[ps.Name] = x
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	now := e.now()
	r := &Rotation{ID: newID(now), Env: e.Env, Mode: mode, State: StateRunning, Actor: e.Actor, Secrets: map[string]int{}, Started: now}
	res := &Result{Rotation: r, Versions: map[string]Version{}}

	// create: the pending values are sealed and durable before anything else sees them.
	e.fault("create:before")
	err = e.Store.Update(ctx, func(tx Tx) error {
		r.Steps = append(r.Steps, Step{Name: StepCreate, Started: now})
		for _, ps := range plan.Secrets {
			if mode == ModeEmergency {
				// The value being replaced may be known to others: never publish it again.
				if err := markExposed(tx, e.Env, ps.Name, r.ID); err != nil {
					return err
				}
			}
			nv := NewVersion{Value: values[ps.Name], Label: LabelPending, Source: source, RotationID: r.ID, Note: note}
			if at, ok := e.Appliers[ps.Kind].(Attributer); ok {
				spec, _ := e.Spec(ps.Name)
				cur, err := tx.Labeled(e.Env, ps.Name, LabelCurrent)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				nv.Attrs = at.Attrs(spec, cur)
			}
			v, err := tx.AddVersion(e.Env, ps.Name, nv)
			if err != nil {
				return err
			}
			r.Secrets[ps.Name] = v.N
			res.Versions[ps.Name] = v
			if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "rotate.create", Env: e.Env, Secret: ps.Name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok", Detail: "rotation " + r.ID + " (" + string(mode) + ")"}); err != nil {
				return err
			}
			if x := exposed[ps.Name]; x != nil {
				detail := fmt.Sprintf("rotation %s (%s) publishes the value of v%d, which was exposed: %s; reason: %s", r.ID, mode, x.Version, x, truncate(strings.TrimSpace(given.Force), 200))
				if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "rotate.force", Env: e.Env, Secret: ps.Name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "forced", Detail: detail}); err != nil {
					return err
				}
			}
		}
		r.Steps[0].Ended, r.Steps[0].Outcome = e.now(), "ok"
		// The values are durable from this commit on, so the rotation is
		// committed to going forward here: after a crash, recovery applies
		// (idempotently) and publishes. No commit sits between ALTER ROLE and
		// the .env write, which keeps the window in which a fresh connection
		// with the old password fails as short as it can be.
		r.Steps = append(r.Steps, Step{Name: StepPublish, Started: e.now()})
		return tx.PutRotation(r)
	})
	if err != nil {
		return nil, Wrap(ErrorCode(err), err, "create new versions")
	}
	for _, ps := range plan.Secrets {
		e.say("created %s v%d (sealed, pending) %s", ps.Name, r.Secrets[ps.Name], res.Versions[ps.Name].Fingerprint)
	}
	e.fault("create:after")
	return res, e.drive(ctx, r, res)
}

// checkDrift refuses to publish over a target value that the store does not
// know: overwriting it would lose a secret nobody recorded.
func (e *Engine) checkDrift(ctx context.Context, plan *Plan) error {
	names := make([]string, 0, len(plan.Secrets))
	for _, ps := range plan.Secrets {
		names = append(names, ps.Name)
	}
	drift, err := e.Drift(ctx, names)
	if err != nil {
		return err
	}
	if len(drift) > 0 {
		d := drift[0]
		return Errorf(CodeConflict, "%s in %s holds a value rekey does not know (edited by hand?)", d.Key, d.Target).
			WithHint("record it first with `rekey set %s --from-target`, or restore the stored one with `rekey publish %s`", d.Key, d.Key)
	}
	return nil
}

// DriftItem is a target key whose value is not the store's current one.
type DriftItem struct {
	Target, Key string
	Missing     bool
}

// Drift compares what the targets hold for names (all managed secrets when
// empty) with the store's current values. Each target is read once.
func (e *Engine) Drift(ctx context.Context, names []string) ([]DriftItem, error) {
	if len(names) == 0 {
		for _, s := range e.Specs {
			names = append(names, s.Name)
		}
	}
	want := map[string]Value{}
	byTarget := map[string][]string{}
	err := e.Store.View(ctx, func(tx Tx) error {
		cur, err := currentOf(tx, e.Env, names)
		if err != nil {
			return err
		}
		for _, name := range names {
			s, ok := e.Spec(name)
			if !ok {
				continue
			}
			v, ok := cur[name]
			if !ok {
				continue
			}
			val, err := tx.Value(e.Env, name, v.N)
			if err != nil {
				return err
			}
			want[name] = val
			for _, tn := range e.targetNames(s) {
				byTarget[tn] = append(byTarget[tn], name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []DriftItem
	for _, tn := range e.targetOrder() {
		keys := byTarget[tn]
		t := e.Targets[tn]
		if len(keys) == 0 || t == nil {
			continue
		}
		got, err := t.Read(ctx, keys)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			g, ok := got[k]
			if !ok {
				out = append(out, DriftItem{Target: t.Name(), Key: k, Missing: true})
			} else if !g.Equal(want[k]) {
				out = append(out, DriftItem{Target: t.Name(), Key: k})
			}
		}
	}
	return out, nil
}

// currentOf returns the current version of each of names that has one: one
// read per name for a few (a rotation's own secrets), else the whole
// environment at once (recovery checks every secret).
func currentOf(tx Tx, env string, names []string) (map[string]Version, error) {
	if len(names) > 16 {
		return tx.AllLabeled(env, LabelCurrent)
	}
	out := map[string]Version{}
	for _, n := range names {
		v, err := tx.Labeled(env, n, LabelCurrent)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}

// step journals a step start, runs fn, journals its end.
func (e *Engine) step(ctx context.Context, r *Rotation, name string, fn func() error) error {
	r.Steps = append(r.Steps, Step{Name: name, Started: e.now()})
	i := len(r.Steps) - 1
	if err := e.Store.Update(ctx, func(tx Tx) error { return tx.PutRotation(r) }); err != nil {
		return Wrap(ErrorCode(err), err, "journal %s", name)
	}
	e.fault(name + ":before")
	ferr := fn()
	r.Steps[i].Ended = e.now()
	if ferr != nil {
		r.Steps[i].Outcome, r.Steps[i].Detail = "error", ferr.Error()
	} else {
		r.Steps[i].Outcome = "ok"
	}
	if err := e.Store.Update(ctx, func(tx Tx) error { return tx.PutRotation(r) }); err != nil {
		if ferr != nil {
			return ferr
		}
		return Wrap(ErrorCode(err), err, "journal %s", name)
	}
	if ferr == nil {
		e.fault(name + ":after")
	}
	return ferr
}

// rotationValues loads the pending and current values of a rotation's secrets.
func (e *Engine) rotationValues(ctx context.Context, r *Rotation) (pending, current map[string]Value, err error) {
	pending, current = map[string]Value{}, map[string]Value{}
	err = e.Store.View(ctx, func(tx Tx) error {
		for name, n := range r.Secrets {
			v, err := tx.Value(e.Env, name, n)
			if err != nil {
				return err
			}
			pending[name] = v
			cur, err := tx.Labeled(e.Env, name, LabelCurrent)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if cur.N == n { // already finished for this secret
				continue
			}
			cv, err := tx.Value(e.Env, name, cur.N)
			if err != nil {
				return err
			}
			current[name] = cv
		}
		return nil
	})
	return pending, current, err
}

// rotationVersions loads the versions (numbers and attributes) behind
// rotationValues: the pending one of each secret and its current, if any.
func (e *Engine) rotationVersions(ctx context.Context, r *Rotation) (pending, current map[string]Version, err error) {
	pending, current = map[string]Version{}, map[string]Version{}
	err = e.Store.View(ctx, func(tx Tx) error {
		for name, n := range r.Secrets {
			// By label (indexed); the whole history only when the rotation's
			// version holds no label any more (a rollback being finished).
			cur, err := tx.Labeled(e.Env, name, LabelCurrent)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err == nil && cur.N != n {
				current[name] = cur
			}
			if err == nil && cur.N == n {
				pending[name] = cur
				continue
			}
			if p, err := tx.Labeled(e.Env, name, LabelPending); err == nil && p.N == n {
				pending[name] = p
				continue
			}
			vs, err := tx.Versions(e.Env, name)
			if err != nil {
				return err
			}
			for _, v := range vs {
				if v.N == n {
					pending[name] = v
				}
			}
		}
		return nil
	})
	return pending, current, err
}

// withAttrs adds each version's attributes to vals as "NAME.attr" entries,
// for templates such as {{ DATABASE_PASSWORD.role }}.
func withAttrs(vals map[string]Value, vs map[string]Version) {
	for name, v := range vs {
		if _, ok := vals[name]; !ok {
			continue
		}
		for k, a := range v.Attrs {
			vals[name+"."+k] = NewValueString(a)
		}
	}
}

// needsApply reports whether any secret of r has a kind-specific apply step.
func (e *Engine) needsApply(r *Rotation) bool {
	for name := range r.Secrets {
		if s, ok := e.Spec(name); ok && e.Appliers[s.Kind] != nil {
			return true
		}
	}
	return false
}

// drive runs apply → publish → verify → finish for a created rotation. It is
// also how Recover completes an interrupted one: every step is idempotent.
func (e *Engine) drive(ctx context.Context, r *Rotation, res *Result) error {
	pending, current, err := e.rotationValues(ctx, r)
	if err != nil {
		return err
	}
	names := sortedKeys(r.Secrets)
	if !r.Reached(StepPublish) { // a rotation journaled by an older rekey
		r.Steps = append(r.Steps, Step{Name: StepPublish, Started: e.now()})
		if err := e.Store.Update(ctx, func(tx Tx) error { return tx.PutRotation(r) }); err != nil {
			return Wrap(ErrorCode(err), err, "journal publish")
		}
	}
	pv, cv, err := e.rotationVersions(ctx, r)
	if err != nil {
		return err
	}
	withAttrs(pending, pv)
	if e.needsApply(r) {
		// Apply is idempotent (it first checks whether the new value is already
		// accepted), so it runs again when recovery completes a rotation.
		e.fault("apply:before")
		st := Step{Name: StepApply, Started: e.now()}
		var aerr error
		for _, name := range names {
			s, ok := e.Spec(name)
			if !ok {
				continue
			}
			if a := e.Appliers[s.Kind]; a != nil {
				if err := a.Apply(ctx, e.Env, s, VersionValue{pv[name], pending[name]}, VersionValue{cv[name], current[name]}); err != nil {
					aerr = Wrap(ErrorCode(err), err, "apply %s", name)
					break
				}
				e.say("applied %s", name)
			}
		}
		st.Ended, st.Outcome = e.now(), "ok"
		if aerr != nil {
			st.Outcome, st.Detail = "error", aerr.Error()
		}
		// Journaled with the next commit (finish or rollback), before publish.
		pi := lastIndex(r, StepPublish)
		r.Steps = append(r.Steps[:pi], append([]Step{st}, r.Steps[pi:]...)...)
		if aerr != nil {
			return e.fail(ctx, r, res, aerr, pending, current, false)
		}
		e.fault("apply:after")
	}
	// Maintenance-mode data keys: the consumers stop and the data moves to the
	// new key before anyone sees it.
	maint := e.migrating(r, ReencryptMaintenance)
	if len(maint) > 0 {
		if err := e.step(ctx, r, StepStop, func() error { return e.services().Stop(ctx, e.consumedKeys(maint, false)) }); err != nil {
			return e.fail(ctx, r, res, err, pending, current, false)
		}
		if !e.migrated(r) { // recovery after a finished migration moves on
			if err := e.step(ctx, r, StepMigrate, func() error { return e.migrate(ctx, r, maint, pending, current, pv, cv) }); err != nil {
				return e.keepIncomplete(ctx, r, res, err, pending, current, maint)
			}
		}
	}
	// The publish step is journaled as started; from here a crash rolls forward.
	pi := lastIndex(r, StepPublish)
	e.fault("publish:before")
	prev := e.previousWrites(r, current)
	if err := e.writeValues(ctx, "published to", names, pending, prev, nil); err != nil {
		r.Steps[pi].Ended, r.Steps[pi].Outcome, r.Steps[pi].Detail = e.now(), "error", err.Error()
		return e.fail(ctx, r, res, err, pending, current, true)
	}
	r.Steps[pi].Ended, r.Steps[pi].Outcome = e.now(), "ok"
	e.fault("publish:after")
	if len(maint) > 0 {
		if err := e.services().Start(ctx, e.consumedKeys(maint, false)); err != nil {
			return e.fail(ctx, r, res, err, pending, current, true)
		}
	}
	if err := e.restart(ctx, r, names, prev); err != nil {
		return e.fail(ctx, r, res, err, pending, current, true)
	}
	// Online data keys: the app now reads both keys; move the data, then stop
	// publishing the old key.
	if online := e.migrating(r, ReencryptOnline); len(online) > 0 {
		if !e.migrated(r) { // recovery after a finished migration moves on
			if err := e.step(ctx, r, StepMigrate, func() error { return e.migrate(ctx, r, online, pending, current, pv, cv) }); err != nil {
				return e.keepIncomplete(ctx, r, res, err, pending, current, online)
			}
		}
		var del []string
		for _, name := range online {
			if sp, ok := e.Spec(name); ok {
				del = append(del, sp.PreviousKey())
			}
		}
		if err := e.deleteKeys(ctx, online, del); err != nil {
			return e.fail(ctx, r, res, err, pending, current, true)
		}
		for _, name := range online {
			delete(prev, name)
		}
		if err := e.services().Restart(ctx, del); err != nil {
			return e.fail(ctx, r, res, err, pending, current, true)
		}
	}
	if err := e.runHooks(ctx, names); err != nil {
		return e.fail(ctx, r, res, err, pending, current, true)
	}
	e.fault("verify:before")
	vs := Step{Name: StepVerify, Started: e.now()}
	verr := e.verifyTargets(ctx, r, pending, prev)
	for _, name := range names {
		if verr != nil {
			break
		}
		if s, ok := e.Spec(name); ok {
			if v, ok := e.Appliers[s.Kind].(Verifier); ok {
				if err := v.Verify(ctx, e.Env, s, VersionValue{pv[name], pending[name]}, VersionValue{cv[name], current[name]}); err != nil {
					verr = Wrap(ErrorCode(err), err, "verify %s", name)
				} else {
					e.say("verified %s against its backing system", name)
				}
			}
		}
	}
	if verr == nil && e.Checks != nil {
		if err := e.Checks.Run(ctx); err != nil {
			verr = Wrap(CodeVerifyFailed, err, "checks")
		} else {
			e.say("checks passed")
		}
	}
	vs.Ended, vs.Outcome = e.now(), "ok"
	if verr != nil {
		vs.Outcome, vs.Detail = "error", verr.Error()
	}
	r.Steps = append(r.Steps, vs)
	if verr != nil {
		return e.fail(ctx, r, res, verr, pending, current, true)
	}
	e.fault("verify:after")
	if err := e.finish(ctx, r, StateDone, "", pending); err != nil {
		return err
	}
	if r.Mode == ModeEmergency {
		// The old values may be exposed: end their grace now (the idle role
		// of an alternating pair gets a random password).
		if _, err := e.ExpireGrace(ctx); err != nil {
			return Wrap(ErrorCode(err), err, "end the grace of the exposed values")
		}
	}
	return nil
}

func lastIndex(r *Rotation, step string) int {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Name == step {
			return i
		}
	}
	return -1
}

// fail handles a failed apply, publish or verify: roll back for scheduled and
// manual rotations; keep the new values for an emergency.
func (e *Engine) fail(ctx context.Context, r *Rotation, res *Result, cause error, pending, current map[string]Value, published bool) error {
	if res != nil {
		res.VerifyErr = cause
	}
	if published && (r.Mode == ModeEmergency || len(e.keptOnRollback(r)) == len(r.Secrets)) {
		msg, hint := "emergency rotation kept the new values but verification failed",
			"the old values may be exposed, so rekey did not go back to them: fix what is broken, then run `rekey verify`"
		if r.Mode == ModeEmergency {
			e.say("EMERGENCY: keeping the new values although %v", cause)
		} else {
			msg, hint = "verification failed after the data moved to the new key: the new values are kept",
				"going back to the old key would make the re-encrypted rows unreadable: fix what is broken, then run `rekey verify`"
			e.say("keeping the new values although %v: the data is already on the new key", cause)
		}
		if h := ErrorHint(cause); h != "" {
			hint = h + "\n" + hint
		}
		if err := e.finish(ctx, r, StateFailed, cause.Error(), pending); err != nil {
			return err
		}
		// A data key whose rows did not move yet: the old key stays published
		// (NAME_PREVIOUS) and the version is marked, so `rekey reencrypt`
		// moves them and no later rotation strands them.
		if err := e.markUnmigrated(ctx, r); err != nil {
			return err
		}
		if r.Mode == ModeEmergency {
			if _, err := e.ExpireGrace(ctx); err != nil {
				e.say("ending the grace of the exposed values failed: %v", err)
			}
		}
		return &Error{Code: CodeVerifyFailed, Msg: msg, Err: cause, Hint: hint}
	}
	if err := e.rollback(ctx, r, pending, current, cause.Error()); err != nil {
		return fmt.Errorf("%w; then rollback failed: %v", cause, err)
	}
	if res != nil {
		res.RolledBack = true
	}
	after := ""
	if published && (e.Services != nil || e.Checks != nil) {
		// The consumers saw the new values: restart them on the old ones and
		// check again, so the report says whether the rollback healed them.
		names := sortedKeys(r.Secrets)
		if err := e.services().Restart(ctx, append(e.consumedKeys(names, false), e.previousKeys(names)...)); err != nil {
			after = "; restarting the services on the previous values failed: " + err.Error()
		} else if e.Checks != nil {
			if err := e.Checks.Run(ctx); err != nil {
				after = "; checks still fail on the previous values: " + err.Error()
			} else {
				after = "; checks pass again on the previous values"
			}
		}
		e.say("after rollback%s", strings.TrimPrefix(after, ";"))
	}
	hint := "the previous values are in place again; nothing was lost"
	if kept := e.keptOnRollback(r); len(kept) > 0 {
		hint = "the previous values are in place again, except " + strings.Join(kept, ", ") + ": the data had already moved to its new value, which stays current; nothing was lost"
	}
	if h := ErrorHint(cause); h != "" {
		hint = h + " (" + hint + ")"
	}
	return &Error{Code: CodeVerifyFailed, Msg: "rotation rolled back" + after, Err: cause, Hint: hint}
}

// rollback puts the current values back on the targets and backing systems and
// abandons the pending versions (they stay in history, unlabeled).
func (e *Engine) rollback(ctx context.Context, r *Rotation, pending, current map[string]Value, why string) error {
	pv, cv, err := e.rotationVersions(ctx, r)
	if err != nil {
		return err
	}
	kept := e.keptOnRollback(r)
	err = e.step(ctx, r, StepRollback, func() error {
		var names []string
		for _, n := range sortedKeys(r.Secrets) {
			if !slices.Contains(kept, n) {
				names = append(names, n)
			}
		}
		var set = map[string]Value{}
		for _, name := range names {
			if v, ok := current[name]; ok {
				set[name] = v
			}
		}
		withAttrs(set, cv)
		if err := e.writeValues(ctx, "restored the previous values on", names, set, nil, e.previousKeys(names)); err != nil {
			return err
		}
		for _, name := range names {
			s, _ := e.Spec(name)
			if a := e.Appliers[s.Kind]; a != nil {
				if _, ok := current[name]; ok {
					if err := a.Revert(ctx, e.Env, s, VersionValue{pv[name], pending[name]}, VersionValue{cv[name], current[name]}); err != nil {
						return Wrap(ErrorCode(err), err, "revert %s", name)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e.Store.Update(ctx, func(tx Tx) error {
		for _, name := range sortedKeys(r.Secrets) {
			n := r.Secrets[name]
			if slices.Contains(kept, name) {
				// Its data is on the new value already: it becomes current.
				if cur, err := tx.Labeled(e.Env, name, LabelCurrent); err == nil && cur.N != n {
					if err := tx.SetLabel(e.Env, name, cur.N, LabelPrevious); err != nil {
						return err
					}
				}
				if err := tx.SetLabel(e.Env, name, n, LabelCurrent); err != nil {
					return err
				}
				if err := tx.SetLabel(e.Env, name, 0, LabelPending); err != nil {
					return err
				}
				if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "rotate.finish", Env: e.Env, Secret: name, Version: n, Fingerprint: pv[name].Fingerprint, Outcome: "kept", Detail: "rotation " + r.ID + ": its data already moved to this version, so it was not rolled back with the others"}); err != nil {
					return err
				}
				continue
			}
			p, err := tx.Labeled(e.Env, name, LabelPending)
			if err == nil && p.N == n {
				if err := tx.SetLabel(e.Env, name, 0, LabelPending); err != nil {
					return err
				}
			}
			if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "rotate.rollback", Env: e.Env, Secret: name, Version: n, Outcome: "rolled-back", Detail: truncate(why, 200)}); err != nil {
				return err
			}
		}
		if len(kept) > 0 {
			why += " (kept " + strings.Join(kept, ", ") + ": its data already moved to the new value)"
		}
		r.State, r.Ended, r.Error = StateRolledBack, e.now(), truncate(why, 500)
		if err := tx.PutRotation(r); err != nil {
			return err
		}
		_, err := tx.PruneRotations(e.Env, KeepRotations)
		return err
	})
}

func (e *Engine) targetNamesFor(name string) []string {
	s, ok := e.Spec(name)
	if !ok {
		return nil
	}
	return e.targetNames(s)
}

// publishValues writes names (with override values, else current) and every
// derived value that references one of them to their targets.
func (e *Engine) publishValues(ctx context.Context, names []string, override map[string]Value, del []string) error {
	return e.writeValues(ctx, "published to", names, override, nil, del)
}

// writeValues is publishValues with the verb used in narration.
func (e *Engine) writeValues(ctx context.Context, verb string, names []string, override map[string]Value, extra map[string]extraKey, del []string) error {
	writes, err := e.renderWrites(ctx, names, override, extra)
	if err != nil {
		return err
	}
	for _, tn := range e.targetOrder() {
		set := writes[tn]
		if len(set) == 0 && len(del) == 0 {
			continue
		}
		t := e.Targets[tn]
		if t == nil {
			return Errorf(CodeInvalid, "no target %s in environment %s", tn, e.Env)
		}
		if err := t.Write(ctx, set, del); err != nil {
			return Wrap(ErrorCode(err), err, "write %s", t.Name())
		}
		e.say("%s %s: %s", verb, t.Name(), strings.Join(sortedKeys(set), ", "))
	}
	return nil
}

// renderWrites computes, per target, the keys to set: the named secrets and the
// derived values that use them, rendered with override values where given and
// the store's current values otherwise.
func (e *Engine) renderWrites(ctx context.Context, names []string, override map[string]Value, extra map[string]extraKey) (map[string]map[string]Value, error) {
	values := map[string]Value{}
	for k, v := range override {
		values[k] = v
	}
	touched := map[string]bool{}
	for _, n := range names {
		touched[n] = true
	}
	var needed []string
	for _, d := range e.Derived {
		for _, ref := range d.Template.Refs() {
			if base, _ := SplitRef(ref); touched[base] {
				needed = append(needed, d.Template.Refs()...)
				break
			}
		}
	}
	err := e.Store.View(ctx, func(tx Tx) error {
		for _, n := range append(append([]string(nil), names...), needed...) {
			if _, ok := values[n]; ok {
				continue
			}
			base, attr := SplitRef(n)
			if _, given := override[base]; given && attr != "" {
				continue // the given version has no such attribute: Render says so
			}
			cur, err := tx.Labeled(e.Env, base, LabelCurrent)
			if err != nil {
				return Wrap(ErrorCode(err), err, "value of %s", base)
			}
			if attr != "" {
				if a, ok := cur.Attrs[attr]; ok {
					values[n] = NewValueString(a)
				}
				continue
			}
			v, err := tx.Value(e.Env, n, cur.N)
			if err != nil {
				return err
			}
			values[n] = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	writes := map[string]map[string]Value{}
	add := func(tn, key string, v Value) {
		if writes[tn] == nil {
			writes[tn] = map[string]Value{}
		}
		writes[tn][key] = v
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			continue
		}
		s, ok := e.Spec(n)
		if !ok {
			continue
		}
		for _, tn := range e.targetNames(s) {
			add(tn, n, values[n])
			if x, ok := extra[n]; ok {
				add(tn, x.Key, x.Value)
			}
		}
	}
	for _, d := range e.Derived {
		use := false
		var tns []string
		for _, ref := range d.Template.Refs() {
			ref, _ = SplitRef(ref)
			if touched[ref] {
				use = true
			}
			if s, ok := e.Spec(ref); ok {
				tns = append(tns, e.targetNames(s)...)
			}
		}
		if !use {
			continue
		}
		v, err := d.Template.Render(values)
		if err != nil {
			return nil, err
		}
		for _, tn := range uniq(tns) {
			add(tn, d.Name, v)
		}
	}
	return writes, nil
}

// verifyTargets reads every target back and compares it with what was published.
func (e *Engine) verifyTargets(ctx context.Context, r *Rotation, pending map[string]Value, extra map[string]extraKey) error {
	names := sortedKeys(r.Secrets)
	writes, err := e.renderWrites(ctx, names, pending, extra)
	if err != nil {
		return err
	}
	for _, tn := range e.targetOrder() {
		want := writes[tn]
		if len(want) == 0 {
			continue
		}
		t := e.Targets[tn]
		got, err := t.Read(ctx, sortedKeys(want))
		if err != nil {
			return Wrap(ErrorCode(err), err, "read back %s", t.Name())
		}
		for _, k := range sortedKeys(want) {
			if g, ok := got[k]; !ok || !g.Equal(want[k]) {
				return Errorf(CodeVerifyFailed, "%s does not hold the new %s", t.Name(), k)
			}
		}
	}
	e.say("verified: every target holds the new values")
	return nil
}

// finish moves the labels (pending → current → previous) in one transaction.
func (e *Engine) finish(ctx context.Context, r *Rotation, state RotationState, why string, published map[string]Value) error {
	r.Steps = append(r.Steps, Step{Name: StepFinish, Started: e.now()})
	e.fault("finish:before")
	err := e.Store.Update(ctx, func(tx Tx) error {
		for _, name := range sortedKeys(r.Secrets) {
			n := r.Secrets[name]
			cur, err := tx.Labeled(e.Env, name, LabelCurrent)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err == nil && cur.N != n {
				if err := tx.SetLabel(e.Env, name, cur.N, LabelPrevious); err != nil {
					return err
				}
				if sp, ok := e.Spec(name); ok && sp.Grace() > 0 {
					until := e.now().Add(sp.Grace())
					if r.Mode == ModeEmergency {
						until = e.now() // the old value may be exposed: no grace
					}
					if err := tx.SetAttrs(e.Env, name, cur.N, withAttr(cur.Attrs, AttrGraceUntil, until.UTC().Format(time.RFC3339))); err != nil {
						return err
					}
				}
			}
			if err := tx.SetLabel(e.Env, name, n, LabelCurrent); err != nil {
				return err
			}
			if p, err := tx.Labeled(e.Env, name, LabelPending); err == nil && p.N == n {
				if err := tx.SetLabel(e.Env, name, 0, LabelPending); err != nil {
					return err
				}
			}
			// A data key's old versions are never pruned here: rows written
			// under one may still exist (an app instance that wrote with an
			// old key, a restored backup); `rekey reencrypt --verify` counts
			// them.
			if sp, ok := e.Spec(name); e.KeepVersions > 0 && !(ok && sp.Kind == KindDataKey) {
				if _, err := tx.Prune(e.Env, name, e.KeepVersions); err != nil {
					return err
				}
			}
			v, err := tx.Labeled(e.Env, name, LabelCurrent)
			if err != nil {
				return err
			}
			outcome := "ok"
			if state == StateFailed {
				outcome = "kept-unverified"
			}
			detail := "rotation " + r.ID
			if _, ok := published[name]; ok {
				// One record for publish and finish: they commit together.
				detail += "; published to " + strings.Join(e.targetNamesFor(name), ", ")
			}
			if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "rotate.finish", Env: e.Env, Secret: name, Version: n, Fingerprint: v.Fingerprint, Outcome: outcome, Detail: detail}); err != nil {
				return err
			}
		}
		i := len(r.Steps) - 1
		r.Steps[i].Ended, r.Steps[i].Outcome = e.now(), "ok"
		r.State, r.Ended, r.Error = state, e.now(), truncate(why, 500)
		if err := tx.PutRotation(r); err != nil {
			return err
		}
		_, err := tx.PruneRotations(e.Env, KeepRotations)
		return err
	})
	if err != nil {
		return Wrap(ErrorCode(err), err, "finish rotation")
	}
	e.fault("finish:after")
	for _, name := range sortedKeys(r.Secrets) {
		e.say("%s v%d is current", name, r.Secrets[name])
	}
	return nil
}

// RecoverReport says what Recover did.
type RecoverReport struct {
	RolledForward []string // rotation IDs completed
	RolledBack    []string // rotation IDs abandoned
	Drift         []DriftItem
}

// Recover completes or rolls back every unfinished rotation of the
// environment so that the store's current values and the targets agree:
//   - one that was rolling back finishes rolling back;
//   - one whose create commit journaled the publish intent (every rotation now)
//     is completed: apply and publish are idempotent;
//   - one journaled without it (none are written so) is abandoned.
//
// Callers hold the environment lock.
func (e *Engine) Recover(ctx context.Context) (*RecoverReport, error) {
	rep := &RecoverReport{}
	var open []*Rotation
	err := e.Store.View(ctx, func(tx Tx) error {
		var err error
		open, err = tx.Rotations(e.Env, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	// oldest first
	for i := len(open) - 1; i >= 0; i-- {
		r := open[i]
		pending, current, err := e.rotationValues(ctx, r)
		if err != nil {
			return rep, err
		}
		switch {
		case r.Reached(StepRollback):
			e.say("recover: finishing the rollback of rotation %s", r.ID)
			if err := e.rollback(ctx, r, pending, current, "recovered: "+r.Error); err != nil {
				return rep, err
			}
			rep.RolledBack = append(rep.RolledBack, r.ID)
		case r.Reached(StepPublish) || r.Reached(StepApply):
			e.say("recover: completing rotation %s", r.ID)
			if err := e.drive(ctx, r, nil); err != nil {
				return rep, Wrap(ErrorCode(err), err, "complete rotation %s", r.ID)
			}
			rep.RolledForward = append(rep.RolledForward, r.ID)
		default:
			e.say("recover: abandoning rotation %s (no target saw its values)", r.ID)
			if err := e.rollback(ctx, r, pending, current, "interrupted before publish"); err != nil {
				return rep, err
			}
			rep.RolledBack = append(rep.RolledBack, r.ID)
		}
		if err := e.Store.Update(ctx, func(tx Tx) error {
			_, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "recover", Env: e.Env, Outcome: string(r.State), Detail: "rotation " + r.ID})
			return err
		}); err != nil {
			return rep, err
		}
	}
	drift, err := e.Drift(ctx, nil)
	if err != nil {
		return rep, err
	}
	rep.Drift = drift
	return rep, nil
}

// Publish writes the store's current values of names (and their derived
// values) to the targets, with an audit record: the repair for drift.
func (e *Engine) Publish(ctx context.Context, names []string) error {
	if err := e.Store.Update(ctx, func(tx Tx) error {
		for _, n := range names {
			if _, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "publish", Env: e.Env, Secret: n, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return e.publishValues(ctx, names, nil, nil)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
