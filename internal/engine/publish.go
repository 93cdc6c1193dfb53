package engine

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
)

// Publish writes the store's current values of names (and their derived
// values) to the targets, with an audit record: the repair for drift.
func (e *Engine) Publish(ctx context.Context, names []string) error {
	if err := e.Store.Update(ctx, func(tx rekey.Tx) error {
		for _, n := range names {
			if _, err := tx.Audit(e.audit("publish", n, 0, "", "ok", "")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return e.publishValues(ctx, names, nil, nil)
}

// publishValues writes names (with override values, else current) and every
// derived value that references one of them to their targets.
func (e *Engine) publishValues(ctx context.Context, names []string, override map[string]rekey.Value, del []string) error {
	return e.writeValues(ctx, "published to", names, override, nil, del)
}

// writeValues is publishValues with the verb used in narration and the
// keys published next to the secrets (NAME_PREVIOUS).
func (e *Engine) writeValues(ctx context.Context, verb string, names []string, override map[string]rekey.Value, extra map[string]extraKey, del []string) error {
	return e.writeValuesIn(ctx, e.targetOrder(), verb, names, override, extra, del)
}

// writeValuesIn is writeValues over the targets in order (a rollback
// restores in the reverse of the publish order: the last target to get
// the new values is the first to lose them).
func (e *Engine) writeValuesIn(ctx context.Context, order []string, verb string, names []string, override map[string]rekey.Value, extra map[string]extraKey, del []string) error {
	writes, err := e.renderWrites(ctx, names, override, extra)
	if err != nil {
		return err
	}
	for _, tn := range order {
		set := writes[tn]
		if len(set) == 0 && len(del) == 0 {
			continue
		}
		t := e.Targets[tn]
		if t == nil {
			return rekey.Errorf(rekey.CodeInvalid, "no target %s in environment %s", tn, e.Env)
		}
		if err := t.Write(ctx, set, del); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "write %s", t.Name())
		}
		e.say("%s %s: %s", verb, t.Name(), strings.Join(slices.Sorted(maps.Keys(set)), ", "))
	}
	return nil
}

// deleteKeys removes keys from the targets of names.
func (e *Engine) deleteKeys(ctx context.Context, names, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	tns := map[string]bool{}
	for _, n := range names {
		for _, tn := range e.targetNamesFor(n) {
			tns[tn] = true
		}
	}
	for _, tn := range e.targetOrder() {
		t := e.Targets[tn]
		if !tns[tn] || t == nil {
			continue
		}
		if err := t.Write(ctx, nil, keys); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "write %s", t.Name())
		}
		e.say("removed %s from %s", strings.Join(keys, ", "), t.Name())
	}
	return nil
}

// renderWrites computes, per target, the keys to set: the named secrets and the
// derived values that use them, rendered with override values where given and
// the store's current values otherwise.
func (e *Engine) renderWrites(ctx context.Context, names []string, override map[string]rekey.Value, extra map[string]extraKey) (map[string]map[string]rekey.Value, error) {
	derived := e.derivedOf(names)
	values, err := e.renderInputs(ctx, names, derived, override)
	if err != nil {
		return nil, err
	}
	writes := map[string]map[string]rekey.Value{}
	add := func(tn, key string, v rekey.Value) {
		if writes[tn] == nil {
			writes[tn] = map[string]rekey.Value{}
		}
		writes[tn][key] = v
	}
	for _, n := range names {
		s, ok := e.Spec(n)
		if _, has := values[n]; !has || !ok {
			continue
		}
		for _, tn := range e.targetNames(s) {
			add(tn, n, values[n])
			if x, ok := extra[n]; ok {
				add(tn, x.Key, x.Value)
			}
		}
	}
	for _, d := range derived {
		var tns []string
		for _, ref := range d.Template.Refs() {
			base, _ := rekey.SplitRef(ref)
			if s, ok := e.Spec(base); ok {
				tns = append(tns, e.targetNames(s)...)
			}
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

// renderInputs are the values renderWrites renders from: override, and for
// every other name and reference the store's current value (or attribute).
func (e *Engine) renderInputs(ctx context.Context, names []string, derived []rekey.Derived, override map[string]rekey.Value) (map[string]rekey.Value, error) {
	values := map[string]rekey.Value{}
	for k, v := range override {
		values[k] = v
	}
	needed := append([]string(nil), names...)
	for _, d := range derived {
		needed = append(needed, d.Template.Refs()...)
	}
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		for _, n := range needed {
			if _, ok := values[n]; ok {
				continue
			}
			base, attr := rekey.SplitRef(n)
			if _, given := override[base]; given && attr != "" {
				continue // the given version has no such attribute: Render says so
			}
			cur, err := tx.Labeled(e.Env, base, rekey.LabelCurrent)
			if err != nil {
				return rekey.Wrap(rekey.ErrorCode(err), err, "value of %s", base)
			}
			if attr != "" {
				if a, ok := cur.Attrs[attr]; ok {
					values[n] = rekey.NewValueString(a)
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
	return values, err
}

// verifyTargets reads every target back and compares it with what was published.
func (e *Engine) verifyTargets(ctx context.Context, x *run) error {
	writes, err := e.renderWrites(ctx, x.names, x.pending, x.prev)
	if err != nil {
		return err
	}
	for _, tn := range e.targetOrder() {
		want := writes[tn]
		if len(want) == 0 {
			continue
		}
		t := e.Targets[tn]
		got, err := t.Read(ctx, slices.Sorted(maps.Keys(want)))
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "read back %s", t.Name())
		}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if g, ok := got[k]; !ok || !g.Equal(want[k]) {
				return rekey.Errorf(rekey.CodeVerifyFailed, "%s does not hold the new %s", t.Name(), k)
			}
		}
	}
	e.say("verified: every target holds the new values")
	return nil
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
		return rekey.Errorf(rekey.CodeConflict, "%s in %s holds a value rekey does not know (edited by hand?)", d.Key, d.Target).
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
	// The targets' values are compared with the current versions'
	// fingerprints (authenticated metadata): nothing is unsealed, so the
	// check every mutating command runs first costs no decryption.
	want := map[string]string{}
	byTarget := map[string][]string{}
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		cur, err := currentOf(tx, e.Env, names)
		if err != nil {
			return err
		}
		for _, name := range names {
			s, ok := e.Spec(name)
			v, has := cur[name]
			if !ok || !has {
				continue
			}
			want[name] = v.Fingerprint
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
			} else if e.Store.Fingerprint(g) != want[k] {
				out = append(out, DriftItem{Target: t.Name(), Key: k})
			}
			g.Wipe()
		}
	}
	return out, nil
}

// currentOf returns the current version of each of names that has one: one
// read per name for a few (a rotation's own secrets), else the whole
// environment at once (recovery checks every secret).
func currentOf(tx rekey.Tx, env string, names []string) (map[string]rekey.Version, error) {
	if len(names) > 16 {
		return tx.AllLabeled(env, rekey.LabelCurrent)
	}
	out := map[string]rekey.Version{}
	for _, n := range names {
		v, err := tx.Labeled(env, n, rekey.LabelCurrent)
		if errors.Is(err, rekey.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}
