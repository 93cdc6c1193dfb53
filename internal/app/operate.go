package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
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
	prev, err := publishedPrevious(ctx, st, cfg, env.Name, func() map[string]rekey.Target { return s.Engine(cfg, st, env).Targets })
	if err != nil {
		return checks, nil, err
	}
	defer wipeAll(prev)
	opts := verify.Options{Dir: cfg.Dir, Env: s.Environ(), Redact: vals.Redact, Opener: s.opener(), Postgres: postgres.URLDialer{}, Previous: prev, OnResult: onResult}
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

// RunEnv is what `rekey run` adds to its command's environment.
type RunEnv struct {
	// Values are the managed values, from the store: every secret and
	// derived value of the environment and, where the .env holds one, a
	// NAME_PREVIOUS key with the secret's previous version.
	*Values
	// Plain are the keys of the environment's .env files that rekey does
	// not manage, KEY=VALUE in file order (a key in two files: the first
	// file's), never rekey's key material. Empty unless the .env was read.
	Plain []string
	// Notes are for the operator (names, never values): a managed key whose
	// .env value is not the store's, key material left out, a missing file.
	Notes []string
	// managed are the names the store provides (secrets, derived values).
	managed map[string]bool
}

// RunValues reads the current values of the session's environment for
// `rekey run`, recording the read (the secrets read and what) first. With
// envFile it also reads the environment's .env files: their other keys
// become Plain, and their managed keys are compared with the store (which
// wins; a difference is a note).
func (s *Session) RunValues(ctx context.Context, what string, envFile bool) (*RunEnv, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	re := &RunEnv{}
	var files []loadedEnvFile
	if envFile {
		if files, re.Notes, err = loadEnvFiles(cfg, env); err != nil {
			return nil, err
		}
	}
	prev, plainNames := re.sortKeys(cfg, env.Name, files)
	if envFile {
		what += "; .env keys: " + strings.Join(plainNames, ",")
		if len(prev) > 0 {
			what += "; previous: " + strings.Join(slices.Sorted(maps.Keys(prev)), ",")
		}
	}
	proc := runProcessMark()
	vals, err := ResolveValues(ctx, st, cfg, env.Name, Current, func(names []string) rekey.AuditEntry {
		return rekey.AuditEntry{Actor: s.Actor(), Action: "run", Env: env.Name, Outcome: "ok", Detail: "secrets: " + strings.Join(names, ",") + "; " + proc + what}
	})
	if err != nil {
		return nil, err
	}
	re.Values = vals
	if err := re.addPrevious(ctx, st, env.Name, prev); err != nil {
		vals.Wipe()
		return nil, err
	}
	re.compare(files)
	return re, nil
}

// loadedEnvFile is one .env of the environment, parsed.
type loadedEnvFile struct {
	rel string
	f   *dotenv.File
}

// loadEnvFiles parses the environment's .env files; a missing one is a
// note, a malformed one the error (file and line).
func loadEnvFiles(cfg *config.Config, env *config.Environment) ([]loadedEnvFile, []string, error) {
	var out []loadedEnvFile
	var notes []string
	for _, t := range env.Targets {
		if !t.File() {
			where := "is on " + t.Host
			if !t.Remote() {
				where = "is a secret manager (type: command)"
			}
			notes = append(notes, "target "+t.Name+" "+where+": the command gets the managed values, not that target's other keys")
			continue
		}
		tg := envfile.New(t.Name, t.Path, cfg.Dir, nil)
		f, err := tg.Load()
		if errors.Is(err, fs.ErrNotExist) || rekey.ErrorCode(err) == rekey.CodeNotFound {
			notes = append(notes, tg.Rel()+" does not exist: the command gets the managed values only")
			continue
		}
		if err != nil {
			hint := rekey.ErrorHint(err)
			if hint != "" {
				hint += "; "
			}
			return nil, nil, rekey.Wrap(rekey.ErrorCode(err), err, "").WithHint("%sor run with --secrets-only (the managed values only: %s is not read)", hint, tg.Rel())
		}
		out = append(out, loadedEnvFile{tg.Rel(), f})
	}
	return out, notes, nil
}

// sortKeys files the keys of the .env files: a NAME_PREVIOUS key of a
// secret goes to prev (key → secret), a managed key stays out (the store
// has it), rekey's key material stays out (a note), every other key joins
// re.Plain. It returns prev and the plain keys' names.
func (re *RunEnv) sortKeys(cfg *config.Config, env string, files []loadedEnvFile) (map[string]string, []string) {
	managed, prevOf := map[string]bool{}, map[string]string{}
	re.managed = managed
	for i := range cfg.Secrets {
		managed[cfg.Secrets[i].Name] = true
		if k := cfg.Secrets[i].PreviousKey(); k != "" {
			prevOf[k] = cfg.Secrets[i].Name
		}
	}
	for _, d := range cfg.DerivedFor(env) {
		managed[d.Name] = true
	}
	prev, seen := map[string]string{}, map[string]bool{}
	var names []string
	for _, lf := range files {
		for _, k := range lf.f.Keys() {
			if seen[k] {
				continue
			}
			seen[k] = true
			switch {
			case prevOf[k] != "":
				prev[k] = prevOf[k]
			case managed[k]:
			case rekey.IsKeyMaterialVar(k):
				re.Notes = append(re.Notes, fmt.Sprintf("%s (%s, line %d) is not passed to the command: it names rekey's key material, which no child gets", k, lf.rel, lf.f.Line(k)))
			default:
				v, _ := lf.f.Get(k)
				re.Plain = append(re.Plain, k+"="+v)
				names = append(names, k)
			}
		}
	}
	return prev, names
}

// addPrevious adds each NAME_PREVIOUS key of prev with the store's
// previous version of its secret; a secret without one is a note.
func (re *RunEnv) addPrevious(ctx context.Context, st rekey.Store, env string, prev map[string]string) error {
	if len(prev) == 0 {
		return nil
	}
	return st.View(ctx, func(tx rekey.Tx) error {
		for _, k := range slices.Sorted(maps.Keys(prev)) {
			ver, err := tx.Labeled(env, prev[k], rekey.LabelPrevious)
			if rekey.ErrorCode(err) == rekey.CodeNotFound {
				re.Notes = append(re.Notes, fmt.Sprintf("%s is not passed to the command: the store has no previous version of %s", k, prev[k]))
				continue
			}
			if err != nil {
				return err
			}
			val, err := tx.Value(env, prev[k], ver.N)
			if err != nil {
				return err
			}
			re.m[k] = val
		}
		return nil
	})
}

// compare notes every managed key whose .env value is not the value the
// command gets from the store (a hand edit, or a rotation under way).
func (re *RunEnv) compare(files []loadedEnvFile) {
	for _, lf := range files {
		for _, k := range lf.f.Keys() {
			stored, ok := re.m[k]
			if !ok {
				if _, failed := re.failed[k]; !failed && re.managed[k] {
					re.Notes = append(re.Notes, fmt.Sprintf("%s (%s, line %d) is not passed to the command: the store has no current value of it (`rekey status`)", k, lf.rel, lf.f.Line(k)))
				}
				continue
			}
			v, _ := lf.f.Get(k)
			if subtle.ConstantTimeCompare([]byte(v), stored.Reveal()) != 1 {
				re.Notes = append(re.Notes, fmt.Sprintf("%s in %s (line %d) is not the store's value: the command gets the store's (`rekey status` shows the drift and its fix)", k, lf.rel, lf.f.Line(k)))
			}
		}
	}
}
