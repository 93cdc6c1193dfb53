package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// Which says which version of each secret the resolver reads.
type Which int

const (
	// Current is the current version of each secret: what the environment
	// runs on between rotations (run, verify, services, reencrypt).
	Current Which = iota
	// Live is the pending version where a rotation has one (published, not
	// yet promoted), else the current one: what the environment runs on
	// during a rotation (its restarts, checks, hooks, re-encryption).
	Live
)

// Values are the values one environment runs on: each secret's value, its
// version attributes as "NAME.attr" (for templates such as
// {{ DATABASE_PASSWORD.role }}) and the derived values rendered from them,
// with the redactor of every stored version. They are never printed.
type Values struct {
	m     map[string]rekey.Value
	names []string // the secrets read, in rekey.yaml order
	// failed holds the derived values whose template did not render, with
	// why: resolving one says so instead of "no value".
	failed map[string]error
	red    *Redactor
}

// ResolveValues is the one resolver of live values: it reads which version
// of every secret of env from st, renders env's derived values and returns
// them with a redactor of every stored version of the store (and of the
// values rendered here). When audit is not nil, the read is recorded in the
// same transaction, with the entry audit returns for the names read (fail
// closed: no record, no values).
func ResolveValues(ctx context.Context, st rekey.Store, cfg *config.Config, env string, which Which, audit func(names []string) rekey.AuditEntry) (*Values, error) {
	v := &Values{m: map[string]rekey.Value{}, failed: map[string]error{}}
	attrs := map[string]rekey.Value{}
	read := func(tx rekey.Tx) error {
		_, err := eachLive(tx, cfg, env, which, func(s *rekey.Spec, ver rekey.Version, val rekey.Value) {
			v.m[s.Name] = val
			v.names = append(v.names, s.Name)
			for k, x := range ver.Attrs {
				attrs[s.Name+"."+k] = rekey.NewValueString(x)
			}
		})
		if err != nil || audit == nil {
			return err
		}
		_, err = tx.Audit(audit(v.names))
		return err
	}
	var err error
	if audit == nil {
		err = st.View(ctx, read)
	} else {
		err = st.Update(ctx, read)
	}
	if err != nil {
		return nil, err
	}
	tv := maps.Clone(v.m)
	maps.Copy(tv, attrs)
	for _, d := range cfg.DerivedFor(env) {
		r, err := d.Template.Render(tv)
		if err != nil {
			v.failed[d.Name] = err
			continue
		}
		v.m[d.Name] = r
	}
	v.red = NewRedactor(ctx, st, slices.Collect(maps.Values(v.m))...)
	return v, nil
}

// liveVersions is the version of each secret of env that which names.
func liveVersions(tx rekey.Tx, env string, which Which) (map[string]rekey.Version, error) {
	cur, err := tx.AllLabeled(env, rekey.LabelCurrent)
	if err != nil || which == Current {
		return cur, err
	}
	pend, err := tx.AllLabeled(env, rekey.LabelPending)
	if err != nil {
		return nil, err
	}
	maps.Copy(cur, pend)
	return cur, nil
}

// eachLive calls fn, in rekey.yaml order, with each secret of env that has
// the version which names, that version and its value; it returns the
// versions by name.
func eachLive(tx rekey.Tx, cfg *config.Config, env string, which Which, fn func(s *rekey.Spec, ver rekey.Version, val rekey.Value)) (map[string]rekey.Version, error) {
	vers, err := liveVersions(tx, env, which)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Secrets {
		s := &cfg.Secrets[i]
		ver, ok := vers[s.Name]
		if !ok {
			continue
		}
		val, err := tx.Value(env, s.Name, ver.N)
		if err != nil {
			return nil, err
		}
		fn(s, ver, val)
	}
	return vers, nil
}

// Resolve returns a copy of a value: checks run concurrently and each wipes
// what it was given when it is done.
func (v *Values) Resolve(name string) (rekey.Value, error) {
	val, ok := v.m[name]
	if !ok {
		if err, failed := v.failed[name]; failed {
			return rekey.Value{}, rekey.Wrap(rekey.CodeInvalid, err, "derived value %s does not render", name).
				WithHint("every secret it references needs a value (`rekey status`), and every attribute it names must exist")
		}
		return rekey.Value{}, rekey.Errorf(rekey.CodeNotFound, "%s has no current value", name).
			WithHint("run `rekey status`; a derived value needs a value for every secret it references")
	}
	return rekey.NewValue(val.Reveal()), nil
}

// Names are the secrets read, in rekey.yaml order.
func (v *Values) Names() []string { return v.names }

// Keys are every key with a value (secrets and derived values), sorted.
func (v *Values) Keys() []string { return slices.Sorted(maps.Keys(v.m)) }

// Failed lists the derived values that did not render, with why (no value
// in the message: a template names keys, never values).
func (v *Values) Failed() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(v.failed)) {
		out = append(out, fmt.Sprintf("%s: %v", k, v.failed[k]))
	}
	return out
}

// Redact hides every stored version of every secret (and the derived
// values) in text.
func (v *Values) Redact(text string) string { return v.red.Redact(text) }

// Wipe forgets the values and the redactor's.
func (v *Values) Wipe() {
	if v.red != nil {
		v.red.Wipe()
	}
	for _, val := range v.m {
		val.Wipe()
	}
}

// pendingDataKeys returns, by name, the older key of each data key of env
// whose rows may not all be on its live version yet: during a rotation
// that defers their re-encryption (a pending version; the current one is
// the older key), or after it (the current version marked incomplete; the
// previous one). The application reads that key as NAME_PREVIOUS
// meanwhile, so the decrypt-sample checks accept it (verify.Options.Previous).
func pendingDataKeys(ctx context.Context, st rekey.Store, cfg *config.Config, env string) (map[string]rekey.Value, error) {
	out := map[string]rekey.Value{}
	err := st.View(ctx, func(tx rekey.Tx) error {
		for _, sp := range cfg.Secrets {
			if sp.Kind != rekey.KindDataKey || sp.Reencrypt == nil || sp.PreviousKey() == "" {
				continue
			}
			cur, err := tx.Labeled(env, sp.Name, rekey.LabelCurrent)
			if errors.Is(err, rekey.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			older := 0
			if p, err := tx.Labeled(env, sp.Name, rekey.LabelPending); err == nil && p.N != cur.N {
				older = cur.N
			} else if cur.Attrs[rekey.AttrReencrypt] == "incomplete" {
				if pv, err := tx.Labeled(env, sp.Name, rekey.LabelPrevious); err == nil {
					older = pv.N
				}
			}
			if older == 0 {
				continue
			}
			v, err := tx.Value(env, sp.Name, older)
			if err != nil {
				return err
			}
			out[sp.Name] = v
		}
		return nil
	})
	return out, err
}

// publishedPrevious is the older key of each data key whose rows may not
// all be on its live version (pendingDataKeys) and that a target still
// publishes as NAME_PREVIOUS: the application reads rows under it, so a
// decrypt-sample check accepts them. Once NAME_PREVIOUS is removed, such a
// row fails the check, as it fails the application.
func publishedPrevious(ctx context.Context, st rekey.Store, cfg *config.Config, env string, targetsOf func() map[string]rekey.Target) (map[string]rekey.Value, error) {
	cand, err := pendingDataKeys(ctx, st, cfg, env)
	if err != nil {
		return nil, err
	}
	out := map[string]rekey.Value{}
	if len(cand) == 0 {
		return out, nil // the common case: no target is read
	}
	targets := targetsOf()
	for name, v := range cand {
		sp, _ := cfg.Secret(name)
		if publishes(ctx, targets, sp, sp.PreviousKey(), v) {
			out[name] = v
		} else {
			v.Wipe()
		}
	}
	return out, nil
}

// publishes reports whether one of targets that spec goes to holds key
// with value v.
func publishes(ctx context.Context, targets map[string]rekey.Target, spec *rekey.Spec, key string, v rekey.Value) bool {
	for name, t := range targets {
		if len(spec.Targets) > 0 && !slices.Contains(spec.Targets, name) {
			continue
		}
		got, err := t.Read(ctx, []string{key})
		if err != nil {
			continue
		}
		g, ok := got[key]
		same := ok && g.Equal(v)
		for _, x := range got {
			x.Wipe()
		}
		if same {
			return true
		}
	}
	return false
}

// wipeAll wipes every value of m.
func wipeAll(m map[string]rekey.Value) {
	for _, v := range m {
		v.Wipe()
	}
}
