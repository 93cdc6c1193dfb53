package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/services"
)

// RotateRequest is what `rekey rotate` asks for: the secrets named, or
// those overdue (Due), or every secret rekey can rotate (All).
type RotateRequest struct {
	Names                       []string
	Due, All, DryRun, Emergency bool
	// DeferReencrypt leaves the rows of online data keys to move after the
	// rotation (engine.Engine.DeferOnline): an incident's.
	DeferReencrypt bool
}

// PlannedRotation is a rotation of the session's environment, planned and
// not yet run.
type PlannedRotation struct {
	// Plan is what it will do; nil when Due or All found nothing to rotate.
	Plan *engine.Plan
	// UserManaged are the user-managed keys an emergency rotation cannot
	// rotate: each must be revoked and reissued at its provider, then
	// recorded with `rekey set NAME` (Reminder says so).
	UserManaged []string
	// Estimates are, on a dry run, the estimates of the re-encryption of
	// each data key planned (by name; none when its database could not be
	// reached: a warning says so).
	Estimates map[string]*reencrypt.Estimate
	e         *engine.Engine
	names     []string
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
	var cfg *config.Config
	var env *config.Environment
	if r.DryRun {
		// A plan of named secrets only prints, so it may show what an
		// unapproved rekey.yaml would do; Due and All log in to each
		// database first (Preflight), so they need approval.
		s.ReadOnly = !r.Due && !r.All
		c, st, en, err := s.openEnv(ctx)
		if err != nil {
			return nil, err
		}
		cfg, env, e = c, en, s.Engine(c, st, en)
	} else {
		c, _, en, eng, err := s.Mutate(ctx)
		if err != nil {
			return nil, err
		}
		cfg, env, e = c, en, eng
	}
	e.DeferOnline = r.DeferReencrypt
	mode := rekey.ModeManual
	switch {
	case r.Emergency:
		mode = rekey.ModeEmergency
	case r.Due:
		mode = rekey.ModeScheduled
	}
	p := &PlannedRotation{e: e, names: r.Names}
	if r.Emergency {
		p.names, p.UserManaged = splitUserManaged(cfg, r.Names, r.Due || r.All)
		if len(p.UserManaged) > 0 && len(r.Names) > 0 && len(p.names) == 0 { // an emergency of user-managed keys only
			return nil, rekey.Errorf(rekey.CodeUnsafe, "%s: rekey cannot rotate a key at its provider", userManagedPhrase(p.UserManaged)).
				WithHint("revoke and reissue %s at the provider now, then record the new value: %s (value on stdin)", itOrEach(p.UserManaged), setCommands(p.UserManaged))
		}
		if len(p.UserManaged) > 0 {
			s.warnf("%s", p.Reminder())
		}
	}
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
	switch {
	case r.DryRun && !s.approved(cfg) && hasReencrypt(cfg, p.names):
		// An unapproved rekey.yaml names the database (a derived value may
		// embed a secret in the URL of a server of its author's choosing):
		// the dry run connects nowhere.
		s.warnf("rekey.yaml is not approved: the dry run does not look up the data keys' columns or estimate their re-encryption (`rekey config trust` after reviewing it)")
	case r.DryRun: // the same lookups, with the estimate of each re-encryption (reencrypt_estimate.go)
		if p.Estimates, err = s.estimateDataKeys(ctx, e.Store, cfg, env.Name, p.names); err != nil {
			return nil, err
		}
	default:
		if err := s.checkDataKeyColumns(ctx, e.Store, cfg, env.Name, p.names, false); err != nil {
			return nil, err // a typo in a data key's columns: before anything is created
		}
	}
	warnNoConsumer(p.Plan, cfg, env.Name)
	return p, nil
}

// hasReencrypt says whether one of names is a data key with a reencrypt
// section.
func hasReencrypt(cfg *config.Config, names []string) bool {
	for _, n := range names {
		if sp, ok := cfg.Secret(n); ok && sp.Kind == rekey.KindDataKey && sp.Reencrypt != nil {
			return true
		}
	}
	return false
}

// warnNoConsumer adds a warning to the plan of each secret that no service
// of the environment consumes (the secret, a value derived from it, or its
// NAME_PREVIOUS): rekey publishes the new value, but a process that read
// the old one keeps it until someone restarts it. The warning shows the
// rekey.yaml stanza that makes rekey restart it.
func warnNoConsumer(p *engine.Plan, cfg *config.Config, env string) {
	svcs, derived := cfg.ServicesFor(env), cfg.DerivedFor(env)
	for i := range p.Secrets {
		ps := &p.Secrets[i]
		keys := append([]string{ps.Name}, ps.Derived...)
		if sp, ok := cfg.Secret(ps.Name); ok && sp.PreviousKey() != "" {
			keys = append(keys, sp.PreviousKey())
		}
		if len(services.Affected(svcs, keys, derived)) > 0 {
			continue
		}
		how := fmt.Sprintf("declare the service that reads it in %s so rekey restarts it after publishing: `services: {api: {restart: [systemctl, restart, api], consumes: [%s]}}` (README: rekey.yaml)", config.FileName, ps.Name)
		if len(svcs) > 0 {
			how = fmt.Sprintf("add %s to the consumes: list of the service that reads it (services: in %s), so rekey restarts it after publishing", ps.Name, config.FileName)
		}
		ps.Warnings = append(ps.Warnings, fmt.Sprintf("no service in %s consumes %s (environment %s): a running process that read it keeps the old value until it is restarted; %s", config.FileName, ps.Name, env, how))
	}
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

// splitUserManaged separates the user-managed keys from names; with all,
// every user-managed key of rekey.yaml is named (an emergency concerns
// them all).
func splitUserManaged(cfg *config.Config, names []string, all bool) (rest, manual []string) {
	if all {
		for _, sp := range cfg.Secrets {
			if sp.Kind == rekey.KindManual {
				manual = append(manual, sp.Name)
			}
		}
		return names, manual
	}
	for _, n := range names {
		if sp, ok := cfg.Secret(n); ok && sp.Kind == rekey.KindManual {
			if !slices.Contains(manual, n) {
				manual = append(manual, n)
			}
			continue
		}
		rest = append(rest, n)
	}
	return rest, manual
}

// Reminder names the user-managed keys an emergency rotation leaves to the
// person and the commands that record their new values, or is "".
func (p *PlannedRotation) Reminder() string {
	if len(p.UserManaged) == 0 {
		return ""
	}
	return fmt.Sprintf("emergency: %s: rekey cannot rotate a key at its provider; revoke and reissue %s there now, then record the new value: %s (value on stdin)", userManagedPhrase(p.UserManaged), itOrEach(p.UserManaged), setCommands(p.UserManaged))
}

func userManagedPhrase(names []string) string {
	if len(names) == 1 {
		return names[0] + " is user-managed"
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " are user-managed"
}

func itOrEach(names []string) string {
	if len(names) == 1 {
		return "it"
	}
	return "each"
}

func setCommands(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "`rekey set " + n + "`"
	}
	return strings.Join(out, ", ")
}
