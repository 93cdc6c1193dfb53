package app

import (
	"context"
	"errors"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
)

// RotateRequest is what `rekey rotate` asks for: the secrets named, or
// those overdue (Due), or every secret rekey can rotate (All).
type RotateRequest struct {
	Names                       []string
	Due, All, DryRun, Emergency bool
}

// PlannedRotation is a rotation of the session's environment, planned and
// not yet run.
type PlannedRotation struct {
	// Plan is what it will do; nil when Due or All found nothing to rotate.
	Plan  *engine.Plan
	e     *engine.Engine
	names []string
}

// PlanRotation plans a rotation. A dry run only opens the store (its plan
// changes nothing); otherwise the environment is locked and recovered
// first. With Due or All, a secret that cannot be rotated (user-managed,
// refused, a database rekey cannot log in to) is skipped with a warning.
func (s *Session) PlanRotation(ctx context.Context, r RotateRequest) (*PlannedRotation, error) {
	n := 0
	for _, b := range []bool{r.Due, r.All, len(r.Names) > 0} {
		if b {
			n++
		}
	}
	if n != 1 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "name the secrets to rotate, or pass --due or --all (one of them)").WithHint("`rekey status` lists the secrets and what is due")
	}
	var e *engine.Engine
	if r.DryRun {
		// A plan of named secrets only prints, so it may show what an
		// unapproved rekey.yaml would do; Due and All log in to each
		// database first (Preflight), so they need approval.
		s.ReadOnly = !r.Due && !r.All
		cfg, st, env, err := s.openEnv(ctx)
		if err != nil {
			return nil, err
		}
		e = s.Engine(cfg, st, env)
	} else {
		_, _, _, eng, err := s.Mutate(ctx)
		if err != nil {
			return nil, err
		}
		e = eng
	}
	mode := rekey.ModeManual
	switch {
	case r.Emergency:
		mode = rekey.ModeEmergency
	case r.Due:
		mode = rekey.ModeScheduled
	}
	p := &PlannedRotation{e: e, names: r.Names}
	if r.Due || r.All {
		names, err := s.rotatable(ctx, e, mode, r.Due)
		if err != nil || len(names) == 0 {
			return p, err
		}
		p.names = names
	}
	var err error
	p.Plan, err = e.Plan(ctx, p.names, mode)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// rotatable are the secrets of e's environment that rekey can rotate now
// (overdue only, with due), in rekey.yaml order.
func (s *Session) rotatable(ctx context.Context, e *engine.Engine, mode rekey.Mode, due bool) ([]string, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := ComputeStatus(ctx, st, cfg, env.Name, s.Now())
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rows {
		if r.Kind == rekey.KindManual || (due && r.State != rekey.StateOverdue) {
			continue
		}
		if _, err := e.Plan(ctx, []string{r.Name}, mode); err != nil {
			var re *rekey.Error
			if errors.As(err, &re) && re.Code == rekey.CodeUnsafe {
				s.warnf("skipping %s: %s", r.Name, re.Msg)
				continue
			}
			return nil, err
		}
		if err := e.Preflight(ctx, r.Name); err != nil {
			s.warnf("skipping %s: %v", r.Name, err)
			continue
		}
		names = append(names, r.Name)
	}
	return names, nil
}

// Run runs the planned rotation; narrate hears each step.
func (p *PlannedRotation) Run(ctx context.Context, narrate func(format string, args ...any)) (*engine.Result, error) {
	p.e.Progress = narrate
	return p.e.Rotate(ctx, p.names, p.Plan.Mode, nil)
}
