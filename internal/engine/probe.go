package engine

import (
	"context"
	"fmt"

	"github.com/rekeyhq/rekey"
)

// Preflight checks the backing system of one secret, if its applier can.
func (e *Engine) Preflight(ctx context.Context, name string) error {
	s, a := e.applier(name)
	pf, ok := a.(rekey.Preflighter)
	if !ok {
		return nil
	}
	var cur rekey.VersionValue
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		var err error
		cur, err = labeledValue(tx, e.Env, name, rekey.LabelCurrent)
		return err
	})
	if err != nil {
		return err
	}
	return pf.Preflight(ctx, e.Env, s, cur)
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
			if _, ok := e.Appliers[s.Kind].(rekey.Prober); ok {
				names = append(names, s.Name)
			}
		}
	}
	var out []ProbeResult
	for _, name := range names {
		res, err := e.probe(ctx, name)
		if res != nil {
			out = append(out, *res)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// probe finds the stored version of name its backing system accepts and
// makes it current.
func (e *Engine) probe(ctx context.Context, name string) (*ProbeResult, error) {
	s, a := e.applier(name)
	if s == nil {
		return nil, rekey.UnknownSecret(name, e.Specs)
	}
	pr, ok := a.(rekey.Prober)
	if !ok {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s (%s) has no backing system to probe", name, s.Kind)
	}
	var vs []rekey.VersionValue
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		var err error
		vs, err = versionValues(tx, e.Env, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	res := &ProbeResult{Name: name}
	byN := map[int]rekey.VersionValue{}
	for _, v := range vs {
		byN[v.N] = v
		if v.Label == rekey.LabelCurrent {
			res.Current = v.N
		}
	}
	for _, n := range probeOrder(vs) {
		ok, err := pr.Accepts(ctx, e.Env, s, byN[n])
		if err != nil {
			return nil, rekey.Wrap(rekey.ErrorCode(err), err, "probe %s v%d", name, n)
		}
		if ok {
			res.Accepted = n
			break
		}
	}
	if res.Accepted == 0 {
		return res, rekey.Errorf(rekey.CodeConflict, "no stored version of %s is accepted by its database", name).
			WithHint("set a known password with ALTER ROLE as an administrator, then record it with `rekey set %s`", name)
	}
	if res.Accepted != res.Current {
		if err := e.makeCurrent(ctx, name, res.Current, byN[res.Accepted]); err != nil {
			return nil, err
		}
		res.Repaired = true
	}
	return res, nil
}

// makeCurrent moves the current label of name from version cur (0: none)
// to v, audited as a repair, and publishes it.
func (e *Engine) makeCurrent(ctx context.Context, name string, cur int, v rekey.VersionValue) error {
	err := e.Store.Update(ctx, func(tx rekey.Tx) error {
		if cur != 0 {
			if err := tx.SetLabel(e.Env, name, cur, rekey.LabelPrevious); err != nil {
				return err
			}
		}
		if err := clearPending(tx, e.Env, name, v.N); err != nil {
			return err
		}
		if err := tx.SetLabel(e.Env, name, v.N, rekey.LabelCurrent); err != nil {
			return err
		}
		_, err := tx.Audit(e.audit("recover.probe", name, v.N, e.Store.Fingerprint(v.Value), "repaired", fmt.Sprintf("the database accepts v%d, not v%d: labels moved", v.N, cur)))
		return err
	})
	if err != nil {
		return err
	}
	return e.publishValues(ctx, []string{name}, nil, nil)
}

// versionValues reads every version of name with its value, oldest first.
func versionValues(tx rekey.Tx, env, name string) ([]rekey.VersionValue, error) {
	vs, err := tx.Versions(env, name)
	if err != nil {
		return nil, err
	}
	out := make([]rekey.VersionValue, len(vs))
	for i, v := range vs {
		out[i].Version = v
		if out[i].Value, err = tx.Value(env, name, v.N); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// probeOrder is pending, current, previous, then the others newest first.
func probeOrder(vs []rekey.VersionValue) []int {
	var out []int
	for _, l := range []rekey.Label{rekey.LabelPending, rekey.LabelCurrent, rekey.LabelPrevious} {
		for _, v := range vs {
			if v.Label == l {
				out = append(out, v.N)
			}
		}
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Label == rekey.LabelNone {
			out = append(out, vs[i].N)
		}
	}
	return out
}
