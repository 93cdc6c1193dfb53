package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
)

// Recovered is what `rekey recover` did.
type Recovered struct {
	Env    string
	Report *engine.RecoverReport
	Probe  []engine.ProbeResult
	// Incidents are the interrupted incidents whose actions it finished.
	Incidents []string
}

// Recover checks the store file, then (under the lock) completes or rolls
// back every interrupted rotation, ends the grace periods that passed,
// finishes the actions of interrupted incidents (incident_resume.go) and,
// with probe, asks the databases which stored password they accept and
// repairs the labels. Drift is in the report; narrate hears each step.
func (s *Session) Recover(ctx context.Context, probe bool, narrate func(format string, args ...any)) (*Recovered, error) {
	cfg, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		return nil, err
	}
	env, err := s.Environment(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Lock(cfg, env.Name); err != nil {
		return nil, err
	}
	e := s.Engine(cfg, st, env)
	e.Progress = narrate
	s.RemoveStaleTemps(ctx, e)
	out := &Recovered{Env: env.Name}
	if out.Report, err = e.Recover(ctx); err != nil {
		return nil, err
	}
	ends, err := e.ExpireGrace(ctx)
	for _, g := range ends {
		s.warnf("the grace period of %s v%d ended: it no longer works", g.Name, g.Version)
	}
	if err == nil {
		out.Incidents, err = s.resumeIncidents(ctx, cfg, st, env.Name, narrate)
	}
	if err != nil || !probe {
		return out, err
	}
	out.Probe, err = e.ProbeRepair(ctx, nil)
	if err != nil {
		return out, err
	}
	out.Report.Drift, err = e.Drift(ctx, nil)
	return out, err
}

// Publish writes the store's current values of names (and their derived
// values) to the targets again, audited.
func (s *Session) Publish(ctx context.Context, names []string) error {
	cfg, _, _, e, err := s.Mutate(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, ok := cfg.Secret(n); !ok {
			return rekey.UnknownSecret(n, cfg.Secrets)
		}
	}
	return e.Publish(ctx, names)
}

// RolledBack is what a rollback did: the version whose value is current
// again, the new version that carries it, and its exposure when forced.
type RolledBack struct {
	From    int
	Version rekey.Version
	Exposed *rekey.Exposure
}

// Rollback makes the previous version's value of name current again, as a
// new journaled rotation. The engine refuses an exposed value unless force
// (a reason) is given, and audits it then.
func (s *Session) Rollback(ctx context.Context, name, force string, narrate func(format string, args ...any)) (*RolledBack, error) {
	cfg, st, env, e, err := s.Mutate(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Secret(name); !ok {
		return nil, rekey.UnknownSecret(name, cfg.Secrets)
	}
	var prev rekey.Version
	var val rekey.Value
	var exposed *rekey.Exposure
	err = st.View(ctx, func(tx rekey.Tx) error {
		prev, err = tx.Labeled(env.Name, name, rekey.LabelPrevious)
		if errors.Is(err, rekey.ErrNotFound) {
			return rekey.Wrap(rekey.CodeNotFound, err, "").WithHint("%s has no previous version to roll back to", name)
		}
		if err != nil {
			return err
		}
		if val, err = tx.Value(env.Name, name, prev.N); err != nil {
			return err
		}
		exposed, err = rekey.Exposed(tx, env.Name, name, prev.Fingerprint)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.Progress = narrate
	note := fmt.Sprintf("rollback to v%d", prev.N)
	if exposed != nil {
		note += ", forced although exposed"
	}
	// The new version keeps the value's true age (rekey.RollbackAttrs):
	// status counts its period from the version that first held it.
	res, err := e.Rotate(ctx, []string{name}, rekey.ModeRollback, &engine.NewValues{Values: map[string]rekey.Value{name: val}, Source: rekey.SourceRollback, Note: note, Force: force,
		Attrs: map[string]map[string]string{name: rekey.RollbackAttrs(prev)}})
	if err != nil {
		return nil, err
	}
	return &RolledBack{From: prev.N, Version: res.Versions[name], Exposed: exposed}, nil
}

// AuditLog reads the audit records f selects.
func (s *Session) AuditLog(ctx context.Context, f rekey.AuditFilter) ([]rekey.AuditEntry, error) {
	_, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	var entries []rekey.AuditEntry
	err = st.View(ctx, func(tx rekey.Tx) error {
		entries, err = tx.AuditLog(f)
		return err
	})
	return entries, err
}
