package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
)

// Result is what a rotation did.
type Result struct {
	Rotation *rekey.Rotation
	// Versions are the new versions by secret name.
	Versions map[string]rekey.Version
	// VerifyErr is set when verification failed: after rollback (scheduled, manual)
	// or with the new values kept (emergency).
	VerifyErr  error
	RolledBack bool
	// Deferred are the data keys whose rows move after the rotation
	// (Engine.DeferOnline): marked incomplete, NAME_PREVIOUS published.
	Deferred []string
}

// NewValues supplies values for Rotate instead of the generator (rekey set, rekey rollback).
type NewValues struct {
	Values map[string]rekey.Value
	Source rekey.Source
	Note   string
	// SkipDrift publishes even over values the store does not know (set --from-target).
	SkipDrift bool
	// Force is a person's reason to publish a value that was exposed (an
	// emergency rotation superseded it: AttrExposed). Without one Rotate
	// refuses such a value (CodeUnsafe); with one it is audited.
	Force string
	// Attrs are attributes of the new versions by secret name (a rollback's
	// rekey.RollbackAttrs), added to those the appliers give.
	Attrs map[string]map[string]string
}

// run is the state of one rotation while the engine drives it.
type run struct {
	r   *rekey.Rotation
	res *Result // nil when Recover completes a rotation
	// names are the rotation's secrets, sorted.
	names []string
	// pending are the new values, with their versions' attributes as
	// "NAME.attr" entries (for templates); current the values they replace
	// (none for a first version); pv and cv the versions behind them.
	pending, current map[string]rekey.Value
	pv, cv           map[string]rekey.Version
	// prev is what is published next to the new values (NAME_PREVIOUS).
	prev map[string]extraKey
	// maint and online are the data keys re-encrypted in each mode;
	// deferred the online ones whose rows move after the rotation
	// (Engine.DeferOnline).
	maint, online, deferred []string
	// published: the targets may hold the new values.
	published bool
	// create is what the create step seals (Rotate only).
	create *creation
	// state and why are how the finish step ends the rotation (done when unset).
	state rekey.RotationState
	why   string
}

// creation is what Rotate gives the create step.
type creation struct {
	plan    *Plan
	values  map[string]rekey.Value
	source  rekey.Source
	note    string
	exposed map[string]*rekey.Exposure // given values that were exposed, forced
	force   string
	attrs   map[string]map[string]string // given attributes by secret
}

// extraKey is a key published next to a secret on its targets (NAME_PREVIOUS).
type extraKey struct {
	Key   string
	Value rekey.Value
}

// Rotate rotates the named secrets together as one journaled rotation.
// Callers hold the environment lock and have run Recover.
func (e *Engine) Rotate(ctx context.Context, names []string, mode rekey.Mode, given *NewValues) (*Result, error) {
	plan, err := e.plan(ctx, names, mode, given != nil)
	if err != nil {
		return nil, err
	}
	c, err := e.newValues(plan, given)
	if err != nil {
		return nil, err
	}
	if given == nil || !given.SkipDrift {
		if err := e.checkDrift(ctx, plan); err != nil {
			return nil, err
		}
	}
	if given != nil {
		if c.exposed, err = e.checkExposed(ctx, plan, c.values, mode, given.Force); err != nil {
			return nil, err
		}
		c.force = given.Force
	}
	now := e.now()
	r := &rekey.Rotation{ID: newID(now), Env: e.Env, Mode: mode, State: rekey.StateRunning, Actor: e.Actor, Secrets: map[string]int{}, Started: now}
	res := &Result{Rotation: r, Versions: map[string]rekey.Version{}}
	if err := e.step(ctx, &run{r: r, res: res, create: c}, &steps[0]); err != nil {
		return nil, err
	}
	x, err := e.load(ctx, r, res)
	if err != nil {
		return res, err
	}
	return res, e.drive(ctx, x)
}

// newValues generates the new values of a plan, before anything is touched,
// or takes the given ones.
func (e *Engine) newValues(plan *Plan, given *NewValues) (*creation, error) {
	c := &creation{plan: plan, values: map[string]rekey.Value{}, source: rekey.SourceGenerated}
	for _, ps := range plan.Secrets {
		if given != nil {
			v, ok := given.Values[ps.Name]
			if !ok {
				return nil, rekey.Errorf(rekey.CodeInternal, "no value given for %s", ps.Name)
			}
			c.values[ps.Name] = v
			c.source, c.note, c.attrs = given.Source, given.Note, given.Attrs
			continue
		}
		v, err := ps.Generator.Generate(e.Rand)
		if err != nil {
			return nil, err
		}
		c.values[ps.Name] = v
	}
	return c, nil
}

// checkExposed refuses a given value (rollback, set) that an emergency
// rotation retired, unless a person gave a reason; it returns the exposures
// so forced.
func (e *Engine) checkExposed(ctx context.Context, plan *Plan, values map[string]rekey.Value, mode rekey.Mode, force string) (map[string]*rekey.Exposure, error) {
	exposed := map[string]*rekey.Exposure{}
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		for _, ps := range plan.Secrets {
			x, err := rekey.Exposed(tx, e.Env, ps.Name, e.Store.Fingerprint(values[ps.Name]))
			if err != nil {
				return err
			}
			if x != nil && strings.TrimSpace(force) == "" {
				return exposureError(ps.Name, mode, x)
			}
			if x != nil {
				exposed[ps.Name] = x
			}
		}
		return nil
	})
	return exposed, err
}

// exposureError is Rotate's refusal to publish an exposed value.
func exposureError(name string, mode rekey.Mode, x *rekey.Exposure) *rekey.Error {
	what := fmt.Sprintf("v%d", x.Version)
	if x.Same != 0 && x.Same != x.Version {
		what = fmt.Sprintf("v%d (the same value as v%d)", x.Same, x.Version)
	}
	verb := "set " + name + " to the value of " + what
	if mode == rekey.ModeRollback {
		verb = "roll " + name + " back to " + what
	}
	return rekey.Errorf(rekey.CodeUnsafe, "refusing to %s: v%d was exposed: %s", verb, x.Version, x).
		WithHint("rotate it instead (`rekey rotate %s`), or, if the value is known to be safe, pass --force --reason TEXT (audited)", name)
}

// create seals the pending values: they are durable before anything else
// sees them. The same commit journals the intents of the steps that have
// one (publish): from here the rotation goes forward after a crash.
func (e *Engine) create(ctx context.Context, x *run) error {
	r, c := x.r, x.create
	err := e.Store.Update(ctx, func(tx rekey.Tx) error {
		for _, ps := range c.plan.Secrets {
			if err := e.createVersion(tx, x, &ps); err != nil {
				return err
			}
		}
		endStep(&r.Steps[len(r.Steps)-1], e.now(), nil)
		// The values are durable from this commit on, so the rotation is
		// committed to going forward here: after a crash, recovery applies
		// (idempotently) and publishes. No commit sits between ALTER ROLE and
		// the .env write (see journal).
		for _, st := range steps {
			if st.journal == intent {
				r.Steps = append(r.Steps, rekey.Step{Name: st.name, Started: e.now()})
			}
		}
		return tx.PutRotation(r)
	})
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "create new versions")
	}
	for _, ps := range c.plan.Secrets {
		e.say("created %s v%d (sealed, pending) %s", ps.Name, r.Secrets[ps.Name], x.res.Versions[ps.Name].Fingerprint)
	}
	return nil
}

// createVersion adds the pending version of one secret, with its audit records.
func (e *Engine) createVersion(tx rekey.Tx, x *run, ps *PlanSecret) error {
	r, c := x.r, x.create
	if r.Mode == rekey.ModeEmergency {
		// The value being replaced may be known to others: never publish it again.
		if err := rekey.MarkExposed(tx, e.Env, ps.Name, r.ID); err != nil {
			return err
		}
	}
	nv := rekey.NewVersion{Value: c.values[ps.Name], Label: rekey.LabelPending, Source: c.source, RotationID: r.ID, Note: c.note}
	if at, ok := e.Appliers[ps.Kind].(rekey.Attributer); ok {
		spec, _ := e.Spec(ps.Name)
		cur, err := tx.Labeled(e.Env, ps.Name, rekey.LabelCurrent)
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return err
		}
		nv.Attrs = at.Attrs(spec, cur)
	}
	for k, v := range c.attrs[ps.Name] {
		nv.Attrs = rekey.WithAttr(nv.Attrs, k, v)
	}
	v, err := tx.AddVersion(e.Env, ps.Name, nv)
	if err != nil {
		return err
	}
	r.Secrets[ps.Name] = v.N
	x.res.Versions[ps.Name] = v
	if _, err := tx.Audit(e.audit("rotate.create", ps.Name, v.N, v.Fingerprint, "ok", "rotation "+r.ID+" ("+string(r.Mode)+")")); err != nil {
		return err
	}
	if xp := c.exposed[ps.Name]; xp != nil {
		detail := fmt.Sprintf("rotation %s (%s) publishes the value of v%d, which was exposed: %s; reason: %s", r.ID, r.Mode, xp.Version, xp, truncate(strings.TrimSpace(c.force), 200))
		if _, err := tx.Audit(e.audit("rotate.force", ps.Name, v.N, v.Fingerprint, "forced", detail)); err != nil {
			return err
		}
	}
	return nil
}

// audit is an audit record of this engine's actor and environment.
func (e *Engine) audit(action, secret string, n int, fp, outcome, detail string) rekey.AuditEntry {
	return rekey.AuditEntry{Actor: e.Actor, Action: action, Env: e.Env, Secret: secret, Version: n, Fingerprint: fp, Outcome: outcome, Detail: detail}
}

// drive runs the steps after create, in the order of the table, for a
// created rotation. It is also how Recover completes an interrupted one:
// every step is idempotent.
func (e *Engine) drive(ctx context.Context, x *run) error {
	if err := e.openIntents(ctx, x.r); err != nil { // a rotation journaled by an older rekey
		return err
	}
	for i := 1; i < len(steps); i++ { // steps[0] is create
		st := &steps[i]
		if !e.involves(x, st.needs) || (st.skip != nil && st.skip(e, x)) {
			continue
		}
		if err := e.step(ctx, x, st); err != nil {
			switch st.undo {
			case undoRollBack:
				return e.fail(ctx, x, err)
			case undoKeep:
				return e.keepIncomplete(ctx, x, err, st.moves(x))
			}
			return err
		}
	}
	return nil
}

// load reads what the engine needs to drive or roll back r: the pending and
// current values of its secrets and their versions, in one transaction.
func (e *Engine) load(ctx context.Context, r *rekey.Rotation, res *Result) (*run, error) {
	x := &run{r: r, res: res, names: slices.Sorted(maps.Keys(r.Secrets)),
		pending: map[string]rekey.Value{}, current: map[string]rekey.Value{},
		pv: map[string]rekey.Version{}, cv: map[string]rekey.Version{}}
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		for _, name := range x.names {
			if err := e.loadSecret(tx, x, name, r.Secrets[name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	x.prev = e.previousWrites(r, x.current)
	for name, v := range x.pv {
		for k, a := range v.Attrs {
			x.pending[name+"."+k] = rekey.NewValueString(a)
		}
	}
	x.maint, x.online = e.migratingIn(r, rekey.ReencryptMaintenance), e.migratingIn(r, rekey.ReencryptOnline)
	if e.DeferOnline && x.res != nil && !migrated(r) {
		x.deferred, x.online = x.online, nil
	}
	return x, nil
}

// loadSecret reads version n of name (pending) and the current one, if
// that is another.
func (e *Engine) loadSecret(tx rekey.Tx, x *run, name string, n int) error {
	v, err := tx.Value(e.Env, name, n)
	if err != nil {
		return err
	}
	x.pending[name] = v
	// By label (indexed); the whole history only when the rotation's
	// version holds no label any more (a rollback being finished).
	cur, err := tx.Labeled(e.Env, name, rekey.LabelCurrent)
	if err != nil && !errors.Is(err, rekey.ErrNotFound) {
		return err
	}
	if err == nil && cur.N == n { // already finished for this secret
		x.pv[name] = cur
		return nil
	}
	if err == nil {
		x.cv[name] = cur
		if x.current[name], err = tx.Value(e.Env, name, cur.N); err != nil {
			return err
		}
	}
	if p, err := tx.Labeled(e.Env, name, rekey.LabelPending); err == nil && p.N == n {
		x.pv[name] = p
		return nil
	}
	vs, err := tx.Versions(e.Env, name)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if v.N == n {
			x.pv[name] = v
		}
	}
	return nil
}

// previousWrites is what a rotation publishes next to the new values: the
// current value under NAME_PREVIOUS for graceful sessions and online
// re-encryption.
func (e *Engine) previousWrites(r *rekey.Rotation, current map[string]rekey.Value) map[string]extraKey {
	out := map[string]extraKey{}
	for name := range r.Secrets {
		s, ok := e.Spec(name)
		if !ok || s.PreviousKey() == "" {
			continue
		}
		if r.Mode == rekey.ModeEmergency && s.Kind != rekey.KindDataKey {
			continue // an exposed signing secret must stop working at once
		}
		if cv, ok := current[name]; ok {
			out[name] = extraKey{s.PreviousKey(), cv}
		}
	}
	return out
}

// pair is what appliers get for one secret of x: its pending and current
// versions with their values.
func (x *run) pair(name string) (pending, current rekey.VersionValue) {
	return rekey.VersionValue{Version: x.pv[name], Value: x.pending[name]}, rekey.VersionValue{Version: x.cv[name], Value: x.current[name]}
}

// The forward steps after create (the table's do).

// apply makes each backing system accept the pending value. Appliers are
// idempotent (they first check whether the new value is already accepted),
// so it runs again when recovery completes a rotation.
func (e *Engine) apply(ctx context.Context, x *run) error {
	for _, name := range x.names {
		s, a := e.applier(name)
		if a == nil {
			continue
		}
		p, c := x.pair(name)
		if err := a.Apply(ctx, e.Env, s, p, c); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "apply %s", name)
		}
		e.say("applied %s", name)
	}
	return nil
}

// stop stops the consumers of maintenance-mode data keys: the data moves
// to the new key before anyone sees it.
func (e *Engine) stop(ctx context.Context, x *run) error {
	return e.services().Stop(ctx, e.consumedKeys(x.maint, false))
}

// publish writes the new values (and NAME_PREVIOUS) to the targets. Its
// start is journaled by create: from there a crash rolls forward.
func (e *Engine) publish(ctx context.Context, x *run) error {
	x.published = true
	return e.writeValues(ctx, "published to", x.names, x.pending, x.prev, nil)
}

// start starts the consumers of maintenance-mode data keys again.
func (e *Engine) start(ctx context.Context, x *run) error {
	return e.services().Start(ctx, e.consumedKeys(x.maint, false))
}

// restart restarts the consumers of what the rotation changed.
func (e *Engine) restart(ctx context.Context, x *run) error {
	keys := e.consumedKeys(x.names, false)
	for _, name := range slices.Sorted(maps.Keys(x.prev)) {
		keys = append(keys, x.prev[name].Key)
	}
	if err := e.Services.Restart(ctx, uniq(keys)); err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "restart")
	}
	return nil
}

// removePrevious stops publishing the old key of online data keys once
// their rows moved, and restarts its consumers.
func (e *Engine) removePrevious(ctx context.Context, x *run) error {
	var del []string
	for _, name := range x.online {
		if sp, ok := e.Spec(name); ok {
			del = append(del, sp.PreviousKey())
		}
	}
	if err := e.deleteKeys(ctx, x.online, del); err != nil {
		return err
	}
	for _, name := range x.online {
		delete(x.prev, name)
	}
	return e.services().Restart(ctx, del)
}

// runHooks runs the on_rotate hooks of the rotation's secrets.
func (e *Engine) runHooks(ctx context.Context, x *run) error {
	for _, name := range x.names {
		s, ok := e.Spec(name)
		if !ok || s.Sessions == nil || len(s.Sessions.OnRotate) == 0 {
			continue
		}
		if e.Hooks == nil {
			return rekey.Errorf(rekey.CodeInternal, "%s has on_rotate hooks but nothing runs them", name)
		}
		if err := e.Hooks.OnRotate(ctx, e.Env, s); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "on_rotate of %s", name)
		}
		e.say("ran the on_rotate hooks of %s", name)
	}
	return nil
}

// verify reads the targets back, asks each backing system that can, then
// runs the checks.
func (e *Engine) verify(ctx context.Context, x *run) error {
	if err := e.verifyTargets(ctx, x); err != nil {
		return err
	}
	for _, name := range x.names {
		s, a := e.applier(name)
		v, ok := a.(rekey.Verifier)
		if !ok {
			continue
		}
		p, c := x.pair(name)
		if err := v.Verify(ctx, e.Env, s, p, c); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "verify %s", name)
		}
		e.say("verified %s against its backing system", name)
	}
	if e.Checks != nil {
		if err := e.Checks.Run(ctx); err != nil {
			return rekey.Wrap(rekey.CodeVerifyFailed, err, "checks")
		}
		e.say("checks passed")
	}
	return nil
}

// endGrace ends the grace of the old values after an emergency: they may be
// exposed (the idle role of an alternating pair gets a random password).
func (e *Engine) endGrace(ctx context.Context, _ *run) error {
	if _, err := e.ExpireGrace(ctx); err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "end the grace of the exposed values")
	}
	return nil
}
