package app

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/services"
	"github.com/rekeyhq/rekey/internal/verify"
)

// readValues resolves the current values of env for a command that hands
// them to checks, services or a child (or only redacts with them),
// recording the read first (action, outcome "started"; fail closed).
func (s *Session) readValues(ctx context.Context, st rekey.Store, cfg *config.Config, env, action, detail string) (*Values, error) {
	return ResolveValues(ctx, st, cfg, env, Current, func([]string) rekey.AuditEntry {
		return rekey.AuditEntry{Actor: s.Actor(), Action: action, Env: env, Outcome: "started", Detail: detail}
	})
}

// Verify runs the checks of the session's environment (all, or those
// named) against its current values; the read and the outcome are audited.
// onResult hears each result as it completes. The error says which failed.
func (s *Session) Verify(ctx context.Context, names []string, onResult func(verify.Result)) ([]rekey.Check, []verify.Result, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, nil, err
	}
	checks, err := selectChecks(cfg, env.Name, names)
	if err != nil {
		return nil, nil, err
	}
	vals, err := s.readValues(ctx, st, cfg, env.Name, "verify", "checks: "+strings.Join(checkNames(checks), ","))
	if err != nil {
		return checks, nil, err
	}
	defer vals.Wipe()
	opts := verify.Options{Dir: cfg.Dir, Env: s.Environ(), Redact: vals.Redact, Opener: s.opener(), Postgres: postgres.URLDialer{}, OnResult: onResult}
	results := verify.Run(ctx, checks, vals.Resolve, opts)
	verr := verify.Error(results)
	outcome, detail := "ok", fmt.Sprintf("%d checks passed", len(results))
	if verr != nil {
		outcome, detail = "failed", verr.Error()
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "verify", Env: env.Name, Outcome: outcome, Detail: detail}); err != nil {
		return checks, results, err
	}
	return checks, results, verr
}

// openEnv opens the store and resolves the environment (no lock: a
// command that only reads or checks).
func (s *Session) openEnv(ctx context.Context) (*config.Config, rekey.Store, *config.Environment, error) {
	cfg, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	env, err := s.Environment(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, st, env, nil
}

const checksExample = "add checks to rekey.yaml, e.g.\n  checks:\n    health:\n      http: {url: \"http://localhost:8080/health\"}"

// SelectChecks returns the session environment's checks, or those named.
func (s *Session) SelectChecks(names []string) ([]rekey.Check, error) {
	cfg, env, err := s.configEnv()
	if err != nil {
		return nil, err
	}
	return selectChecks(cfg, env.Name, names)
}

// selectChecks returns the environment's checks, or those named.
func selectChecks(cfg *config.Config, env string, names []string) ([]rekey.Check, error) {
	all := cfg.ChecksFor(env)
	if len(all) == 0 {
		if len(cfg.Checks) > 0 {
			return nil, rekey.Errorf(rekey.CodeNotFound, "no check of %s applies to environment %s", config.FileName, env).
				WithHint("remove environments from a check, or add %s to its environments", env)
		}
		return nil, rekey.Errorf(rekey.CodeNotFound, "%s has no checks", config.FileName).WithHint("%s", checksExample)
	}
	return pick(all, names, func(c rekey.Check) string { return c.Name }, true, func(n, have string) error {
		return rekey.Errorf(rekey.CodeNotFound, "no check %q for environment %s", n, env).WithHint("checks: %s", have)
	})
}

// pick returns the items of all named by names (all when none): in the
// order of names when byName, else of all; an unknown name is the error
// unknown returns for it and the known names.
func pick[T any](all []T, names []string, name func(T) string, byName bool, unknown func(n, have string) error) ([]T, error) {
	if len(names) == 0 {
		return all, nil
	}
	var have []string
	for _, x := range all {
		have = append(have, name(x))
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			return nil, unknown(n, strings.Join(have, ", "))
		}
	}
	var out []T
	if byName {
		for _, n := range slices.Compact(slices.Clone(names)) {
			if i := slices.Index(have, n); !slices.ContainsFunc(out, func(x T) bool { return name(x) == n }) {
				out = append(out, all[i])
			}
		}
		return out, nil
	}
	for _, x := range all {
		if slices.Contains(names, name(x)) {
			out = append(out, x)
		}
	}
	return out, nil
}

func checkNames(checks []rekey.Check) []string {
	out := make([]string, len(checks))
	for i, c := range checks {
		out[i] = c.Name
	}
	return out
}

const servicesExample = "add services to rekey.yaml, e.g.\n  services:\n    api:\n      systemd: atlas-api\n      consumes: [JWT_SECRET, DATABASE_URL]"

// SelectServices returns the session environment's services in restart
// order, or those named.
func (s *Session) SelectServices(names []string) ([]rekey.Service, error) {
	cfg, env, err := s.configEnv()
	if err != nil {
		return nil, err
	}
	all := cfg.ServicesFor(env.Name)
	if len(all) == 0 {
		if len(cfg.Services) > 0 {
			return nil, rekey.Errorf(rekey.CodeNotFound, "no service of %s runs in environment %s", config.FileName, env.Name).
				WithHint("remove environments from a service, or add %s to its environments", env.Name)
		}
		return nil, rekey.Errorf(rekey.CodeNotFound, "%s has no services", config.FileName).WithHint("%s", servicesExample)
	}
	return pick(all, names, func(s rekey.Service) string { return s.Name }, false, func(n, have string) error {
		return rekey.Errorf(rekey.CodeNotFound, "no service %q in environment %s", n, env.Name).WithHint("services: %s", have)
	})
}

func serviceNames(svcs []rekey.Service) string {
	n := make([]string, len(svcs))
	for i, s := range svcs {
		n[i] = s.Name
	}
	return strings.Join(n, ",")
}

// ServicesStatus runs the status commands of svcs (their output redacted
// with every stored version), audited.
func (s *Session) ServicesStatus(ctx context.Context, svcs []rekey.Service, onResult func(services.Result)) ([]services.Result, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	// The values are read only to redact the commands' output.
	vals, err := s.readValues(ctx, st, cfg, env.Name, "services.status", "services: "+serviceNames(svcs))
	if err != nil {
		return nil, err
	}
	defer vals.Wipe()
	res := services.Status(ctx, svcs, services.Options{Dir: cfg.Dir, Env: s.Environ(), Redact: vals.Redact, OnResult: onResult})
	var failed []string
	for _, r := range res {
		if !r.OK {
			failed = append(failed, r.Service)
		}
	}
	outcome := "ok"
	if len(failed) > 0 {
		outcome = "failed: " + strings.Join(failed, ",")
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "services.status", Env: env.Name, Outcome: outcome}); err != nil {
		return res, err
	}
	if len(failed) > 0 {
		return res, rekey.Errorf(rekey.CodeVerifyFailed, "%d of %d services failed their status check: %s", len(failed), len(res), strings.Join(failed, ", ")).
			WithHint("`rekey services restart %s` restarts it", failed[0])
	}
	return res, nil
}

// ServicesRestart restarts svcs in order (after recovery, under the lock),
// audited.
func (s *Session) ServicesRestart(ctx context.Context, svcs []rekey.Service, onResult func(services.Result)) error {
	cfg, st, env, _, err := s.Mutate(ctx)
	if err != nil {
		return err
	}
	vals, err := s.readValues(ctx, st, cfg, env.Name, "services.restart", "services: "+serviceNames(svcs))
	if err != nil {
		return err
	}
	defer vals.Wipe()
	o := services.Options{Dir: cfg.Dir, Env: s.Environ(), Redact: vals.Redact, OnResult: onResult}
	_, rerr := services.RestartAll(ctx, svcs, o)
	outcome, detail := "ok", "services: "+serviceNames(svcs)
	if rerr != nil {
		outcome, detail = "failed", rerr.Error()
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "services.restart", Env: env.Name, Outcome: outcome, Detail: detail}); err != nil {
		return err
	}
	return rerr
}

// RunValues reads the current values of the session's environment for
// `rekey run`, recording the read (the secrets read and what) first.
func (s *Session) RunValues(ctx context.Context, what string) (*Values, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	return ResolveValues(ctx, st, cfg, env.Name, Current, func(names []string) rekey.AuditEntry {
		return rekey.AuditEntry{Actor: s.Actor(), Action: "run", Env: env.Name, Outcome: "ok", Detail: "secrets: " + strings.Join(names, ",") + "; " + what}
	})
}
