package app

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
)

// SetRequest is a value a person gives for a secret (`rekey set`).
type SetRequest struct {
	Name string
	// FromTarget records the value the secret's first .env target holds
	// now, instead of reading one.
	FromTarget bool
	// Force is why an exposed value may be published again (--force
	// --reason, audited); "" refuses it.
	Force string
	// Read reads the new value (stdin or the terminal), after recovery.
	Read func(name string) (rekey.Value, error)
}

// Set records a value given by a person as a new version of a secret of
// the session's environment and publishes it like a rotation. A value
// weak for the secret's kind (rekey.Weakness) or equal to an earlier
// version (by fingerprint) is warned about and recorded anyway: the person
// may have no better one yet (a provider's key in an emergency), and the
// warning says what to do. narrate hears each step.
func (s *Session) Set(ctx context.Context, r SetRequest, narrate func(format string, args ...any)) (rekey.Version, error) {
	cfg, _, env, e, err := s.Mutate(ctx)
	if err != nil {
		return rekey.Version{}, err
	}
	name := r.Name
	sp, ok := cfg.Secret(name)
	if !ok {
		return rekey.Version{}, rekey.UnknownSecret(name, cfg.Secrets)
	}
	var val rekey.Value
	source, note := rekey.SourceManual, "set by a person"
	if r.FromTarget {
		names := e.TargetOrder
		if len(sp.Targets) > 0 {
			names = sp.Targets
		}
		t := e.Targets[names[0]]
		got, err := t.Read(ctx, []string{name})
		if err != nil {
			return rekey.Version{}, err
		}
		v, ok := got[name]
		if !ok {
			return rekey.Version{}, rekey.Errorf(rekey.CodeNotFound, "%s does not hold %s", t.Name(), name)
		}
		val, note = v, "recorded from "+t.Name()
	} else if val, err = r.Read(name); err != nil {
		return rekey.Version{}, err
	}
	if val.IsZero() {
		return rekey.Version{}, rekey.Errorf(rekey.CodeInvalid, "empty value for %s", name).WithHint("pipe the value on stdin: `rekey set %s < file`", name)
	}
	if why := rekey.Weakness(sp, val); why != "" {
		s.warnf("the new value of %s is weak: %s; recorded anyway: %s", name, why, rekey.WeakFix(sp))
	}
	exposed, err := s.warnReused(ctx, e.Store, env.Name, name, val)
	if err != nil {
		return rekey.Version{}, err
	}
	e.Progress = narrate
	res, err := e.Rotate(ctx, []string{name}, rekey.ModeSet, &engine.NewValues{Values: map[string]rekey.Value{name: val}, Source: source, Note: note, SkipDrift: r.FromTarget, Force: r.Force})
	if err != nil {
		return rekey.Version{}, err
	}
	if exposed != nil {
		s.warnf("the new value of %s is v%d's, which was exposed (%s): recorded anyway (--force); the reason is in the audit log", name, exposed.Version, exposed)
	}
	return res.Versions[name], nil
}

// warnReused looks for val among the versions of a secret (fingerprints
// only): an exposed one is returned (the engine refuses it unless forced,
// then audits it); any other earlier one gets a warning.
func (s *Session) warnReused(ctx context.Context, st rekey.Store, env, name string, val rekey.Value) (*rekey.Exposure, error) {
	var same []string
	var exposed *rekey.Exposure
	fp := st.Fingerprint(val)
	if err := st.View(ctx, func(tx rekey.Tx) error {
		vs, err := tx.Versions(env, name)
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return err
		}
		for _, v := range vs {
			if v.Fingerprint == fp {
				same = append(same, "v"+strconv.Itoa(v.N))
			}
		}
		exposed, err = rekey.Exposed(tx, env, name, fp)
		return err
	}); err != nil {
		return nil, err
	}
	if len(same) > 0 && exposed == nil {
		what := "an earlier version"
		if len(same) > 1 {
			what = "earlier versions"
		}
		s.warnf("the new value of %s equals %s (%s): a value used before may already be known; prefer a new one", name, strings.Join(same, ", "), what)
	}
	return exposed, nil
}
