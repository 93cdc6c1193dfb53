package app

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
)

// ExamplePlaceholder replaces every secret in a .env.example (doctor
// recognises it).
const ExamplePlaceholder = "change-me"

// Example is what `rekey example` wrote: the file and the .env it was
// made from (as messages show them), how many values were replaced by the
// placeholder and how many kept.
type Example struct {
	Rel, Source        string
	Placeholders, Kept int
}

// WriteExample writes a .env.example (output, default beside the .env)
// from the environment's first .env target; it refuses to replace an
// existing file without force, and never writes over a target.
func (s *Session) WriteExample(output string, force bool) (*Example, error) {
	cfg, env, err := s.configEnv()
	if err != nil {
		return nil, err
	}
	var target *config.Target
	for i := range env.Targets {
		if env.Targets[i].Type == config.TargetDotenv {
			target = &env.Targets[i]
			break
		}
	}
	if target == nil {
		return nil, rekey.Errorf(rekey.CodeNotFound, "environment %s has no .env target", env.Name).WithHint("add one under environments.%s.targets in rekey.yaml", env.Name)
	}
	out := filepath.Join(filepath.Dir(target.Path), ".env.example")
	if output != "" {
		if out, err = s.Abs(output); err != nil {
			return nil, err
		}
	}
	wd, err := s.Wd()
	if err != nil {
		return nil, err
	}
	ex := &Example{Rel: envfile.RelTo(wd, out)}
	if err := exampleMayWrite(cfg, out, target.Path, ex.Rel, force); err != nil {
		return nil, err
	}
	src := envfile.New(target.Name, target.Path, wd, nil)
	f, err := src.Load()
	if err != nil {
		return nil, err
	}
	ex.Source = src.Rel()
	var data []byte
	if data, ex.Placeholders, ex.Kept, err = exampleOf(cfg, env.Name, f); err != nil {
		return nil, err
	}
	if err := dotenv.WriteFileAtomic(out, data, 0o644); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "write %s", ex.Rel)
	}
	return ex, nil
}

// configEnv loads rekey.yaml and resolves the session's environment (a
// command that needs no store).
func (s *Session) configEnv() (*config.Config, *config.Environment, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, nil, err
	}
	env, err := s.Environment(cfg)
	return cfg, env, err
}

// exampleMayWrite refuses to write the example at out (rel) over the .env
// it is made from or any target, or over an existing file without force.
func exampleMayWrite(cfg *config.Config, out, envPath, rel string, force bool) error {
	if sameFile(out, envPath) {
		return rekey.Errorf(rekey.CodeUnsafe, "refusing to write the example over the .env itself (%s)", rel).WithHint("pass another --output")
	}
	for _, e := range cfg.Environments {
		for _, t := range e.Targets {
			if sameFile(out, t.Path) {
				return rekey.Errorf(rekey.CodeUnsafe, "refusing to write the example over target %s of %s (%s)", t.Name, e.Name, rel).WithHint("pass another --output")
			}
		}
	}
	if _, err := os.Lstat(out); err == nil && !force {
		return rekey.Errorf(rekey.CodeConflict, "%s already exists", rel).WithHint("pass --force to replace it")
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rekey.Wrap(rekey.CodeInvalid, err, "stat %s", rel)
	}
	return nil
}

func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// exampleOf rewrites f (the parsed .env) into a .env.example: every managed
// secret, derived value and key that looks like a secret gets the
// placeholder and, when its line has no comment yet, a comment saying what
// it is. Other lines keep every byte.
func exampleOf(cfg *config.Config, env string, f *dotenv.File) (data []byte, placeholders, kept int, err error) {
	what := map[string]string{}
	for _, s := range cfg.Secrets {
		what[s.Name] = describeSpec(s)
	}
	for _, d := range cfg.DerivedFor(env) {
		what[d.Name] = "derived by rekey from " + strings.Join(d.Template.Refs(), ", ")
	}
	keys := f.Keys()
	values := map[string]string{}
	for _, k := range keys {
		values[k], _ = f.Get(k)
	}
	for _, c := range rekey.Classify(keys, values) {
		if _, ok := what[c.Key]; !ok && (c.Secret || c.Derived != nil) {
			what[c.Key] = "looks like a secret; not managed by rekey"
		}
	}
	// Every other value is copied only when its key is known not to be
	// secret and the value has that key's shape (an allowlist: a key rekey
	// does not know is a placeholder, whatever its value).
	for _, k := range keys {
		if _, ok := what[k]; !ok && !exampleKeeps(k, values[k]) {
			what[k] = "not copied: rekey keeps only values known not to be secret"
		}
	}
	for k := range values {
		values[k] = "" // drop the references to the values
	}
	for _, k := range keys {
		if _, ok := what[k]; !ok {
			kept++
			continue
		}
		if err := f.Set(k, ExamplePlaceholder); err != nil {
			return nil, 0, 0, rekey.Wrap(rekey.CodeInternal, err, "placeholder for %s", k)
		}
		placeholders++
	}
	// Add the comments, line by line (Line counts after the Sets).
	lines := bytes.SplitAfter(f.Bytes(), []byte("\n"))
	for _, k := range keys {
		desc, ok := what[k]
		if !ok {
			continue
		}
		i := f.Line(k) - 1
		if i < 0 || i >= len(lines) || bytes.IndexByte(lines[i], '#') >= 0 {
			continue // keep the line's own comment
		}
		line := lines[i]
		eol := len(line)
		for eol > 0 && (line[eol-1] == '\n' || line[eol-1] == '\r') {
			eol--
		}
		body := bytes.TrimRight(line[:eol], " \t")
		nl := append(append(append([]byte(nil), body...), "  # "+desc...), line[eol:]...)
		lines[i] = nl
	}
	return bytes.Join(lines, nil), placeholders, kept, nil
}

// Keys whose values are known not to be secret, by kind, and the shape
// their value must have to be copied into a .env.example.
var (
	reKeepPort  = regexp.MustCompile(`(?i)^([A-Z0-9_]+_)?PORT$`)
	reKeepHost  = regexp.MustCompile(`(?i)^(HOST|HOSTNAME|BIND|LISTEN|[A-Z0-9_]+_(HOST|HOSTNAME|ADDR|ADDRESS|BIND|LISTEN))$`)
	reKeepLog   = regexp.MustCompile(`(?i)^(RUST_LOG|RUST_BACKTRACE|LOG_LEVEL|LOG_FORMAT|[A-Z0-9_]+_LOG_LEVEL)$`)
	reKeepEnv   = regexp.MustCompile(`(?i)^(NODE_ENV|APP_ENV|RAILS_ENV|RACK_ENV|FLASK_ENV|GO_ENV|ENV|ENVIRONMENT|TZ|LANG|LC_ALL)$`)
	reKeepFlag  = regexp.MustCompile(`(?i)^(DEBUG|(ENABLE|DISABLE|FEATURE|FF)_[A-Z0-9_]+|[A-Z0-9_]+_(ENABLED|DISABLED))$`)
	rePortValue = regexp.MustCompile(`^[0-9]{1,5}$`)
	reHostValue = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]%]{1,253}$`) // a name, an IPv4 or [IPv6], with a port: no '@', no '/'
	reLogValue  = regexp.MustCompile(`^[A-Za-z0-9_:.,=\-/ ]{1,200}$`)
	reEnvValue  = regexp.MustCompile(`^[A-Za-z0-9_.\-/+]{1,64}$`)
	reFlagValue = regexp.MustCompile(`(?i)^(true|false|yes|no|on|off|0|1|enabled|disabled)$`)
)

// exampleKeeps reports whether the value v of key, which rekey does not
// manage, may be copied into a .env.example: an empty value, or a port, host
// (without credentials), log level, environment name or feature flag whose
// value has that shape and does not look like a credential.
func exampleKeeps(key, v string) bool {
	if v == "" {
		return true
	}
	if rekey.CredentialLike(key, v) != "" {
		return false
	}
	switch {
	case reKeepPort.MatchString(key):
		return rePortValue.MatchString(v)
	case reKeepHost.MatchString(key):
		return reHostValue.MatchString(v)
	case reKeepLog.MatchString(key):
		return reLogValue.MatchString(v)
	case reKeepEnv.MatchString(key):
		return reEnvValue.MatchString(v)
	case reKeepFlag.MatchString(key):
		return reFlagValue.MatchString(v)
	}
	return false
}

// describeSpec says what a secret is in a few words, for its comment.
func describeSpec(s rekey.Spec) string {
	every := ""
	if s.Period > 0 {
		every = " every " + rekey.FormatDays(s.Period)
	}
	gen := ""
	if s.Generator.Bytes > 0 {
		enc := string(s.Generator.Encoding)
		if enc == "" {
			enc = string(rekey.EncBase64)
		}
		gen = fmt.Sprintf(": %d bytes %s", s.Generator.Bytes, enc)
	}
	switch s.Kind {
	case rekey.KindGenerated:
		return "generated" + gen + ", rotated by rekey" + every
	case rekey.KindPostgresPassword:
		return "PostgreSQL password" + gen + ", rotated by rekey" + every
	case rekey.KindDataKey:
		return "data-encryption key" + gen + ", rotated by rekey" + every + " (with re-encryption)"
	case rekey.KindManual:
		if every != "" {
			every = ", rotate it" + every
		}
		return "user-managed: get it from the provider, record it with `rekey set`" + every
	default:
		return "secret managed by rekey"
	}
}
