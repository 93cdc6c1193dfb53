// Package config reads and writes rekey.yaml, the inventory of the secrets
// rekey manages for a project: where its store lives, its environments and
// their targets, the secrets with their kinds and rotation periods, and the
// derived values (such as DATABASE_URL) computed from them.
//
// Decoding is strict: the YAML node tree is walked by hand, so every problem
// is reported as an *Error naming the file, line and column, with a hint.
// Only the first problem in file order is reported. Messages never quote
// values from the file other than key names and short identifier-like words.
//
// # Adding a section
//
// Each mapping in the file is decoded by one function that lists its keys in
// a [section] (see decode.go). A new section (services, checks, or reencrypt
// under a secret) is one struct in this file, one decode function, and one
// line in its parent's section list; unknown-key errors and suggestions
// follow from the list.
package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/rekeyhq/rekey"
)

// FileName is the name of the inventory file.
const FileName = "rekey.yaml"

// Defaults.
const (
	DefaultStorePath = ".rekey/rekey.db"
	MasterKeyEnv     = "env"        // the master key is in $REKEY_MASTER_KEY
	MasterKeyPass    = "passphrase" // the master key is derived from a passphrase
	MasterKeyFile    = "file:"      // prefix: the master key is in a key file
)

// The target types.
const (
	TargetDotenv = "dotenv"
	// TargetSSH is a .env on another machine, reached with the system ssh.
	TargetSSH = "ssh"
	// TargetCommand is a secret manager updated through its CLI.
	TargetCommand = "command"
)

// TargetTypes lists the valid target types.
var TargetTypes = []string{TargetDotenv, TargetSSH, TargetCommand}

// The postgres settings.
var (
	SSLModes   = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	ChangedBys = []string{"self", "admin"}
	Strategies = []string{"single", "alternating"}
)

// Config is a parsed rekey.yaml.
type Config struct {
	Path         string // absolute path of rekey.yaml
	Dir          string // its folder
	Version      int
	Store        Store
	Environments []Environment   // file order
	Secrets      []rekey.Spec    // file order; Spec.Line set
	Derived      []rekey.Derived // file order, top-level
	// TLS lists certificates whose expiry `rekey doctor` watches.
	TLS []TLSCert
	// Services are restarted after a rotation changes what they consume
	// (file order; see ServicesFor). Checks verify the application (file
	// order; see ChecksFor). See services.go.
	Services []rekey.Service
	Checks   []rekey.Check
	// Notify is the notify: section: channels, contacts, event routes
	// (see notify.go).
	Notify Notify
	// Incident is the incident: section: what `rekey incident open` does
	// without being told.
	Incident Incident
	// Raw is the exact text that was parsed, and Digest its SHA-256: what
	// `rekey config trust` approves is what was parsed, not what the file
	// holds a moment later.
	Raw    []byte
	Digest [32]byte
}

// TLSCert is a certificate to watch: a PEM file, or what a TLS endpoint serves.
type TLSCert struct {
	Name     string
	File     string // absolute path of a PEM file (one of File, Endpoint)
	Endpoint string // host:port
	Line     int
}

// Store says where rekey keeps its encrypted store and its master key.
type Store struct {
	Path         string // absolute
	MasterKey    string // "env" | "file:/abs/path" | "passphrase"
	KeepVersions int    // 0 = keep all; else keep this many unlabeled versions
}

// Environment is one deployment environment (production, staging...).
type Environment struct {
	Name    string
	Targets []Target        // file order
	Derived []rekey.Derived // overrides of the top-level derived values
	Line    int
}

// Target is a place an environment's secrets are published to.
type Target struct {
	Name string
	Type string // "dotenv" or "ssh"
	// Path is absolute: on this machine (dotenv), on the host (ssh).
	Path string
	// Host is the ssh destination of an ssh target: user@host[:port] or an
	// alias of the user's OpenSSH config.
	Host string
	// Read and Write are a command target's commands (argv); Format is the
	// document they exchange: "json" (default) or "env".
	Read, Write []string
	Format      string
	Line        int
}

// Remote reports whether the target is on another machine.
func (t Target) Remote() bool { return t.Type == TargetSSH }

// File reports whether the target is a .env file on this machine.
func (t Target) File() bool { return t.Type == TargetDotenv || t.Type == "" }

// Load reads and parses the rekey.yaml at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		reason := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errorf(path, rekey.CodeNotFound, err, findHint, "file not found")
		}
		return nil, errorf(path, rekey.CodeInvalid, err, "check that the file is readable", "cannot read %s: %v", FileName, reason)
	}
	return Parse(path, data)
}

const findHint = "run `rekey init --env-file .env`, or pass --config"

// Find walks up from dir to the root looking for rekey.yaml and returns its
// path. When there is none it returns an *Error (code CodeNotFound).
func Find(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", errorf("", rekey.CodeInvalid, err, findHint, "cannot resolve folder: %v", err)
	}
	for d := abs; ; {
		p := filepath.Join(d, FileName)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", errorf("", rekey.CodeNotFound, fs.ErrNotExist, findHint, "no %s in %s or any folder above it", FileName, abs)
}

// Secret returns the secret named name.
func (c *Config) Secret(name string) (*rekey.Spec, bool) {
	for i := range c.Secrets {
		if c.Secrets[i].Name == name {
			return &c.Secrets[i], true
		}
	}
	return nil, false
}

// Environment returns the environment named name.
func (c *Config) Environment(name string) (*Environment, bool) {
	for i := range c.Environments {
		if c.Environments[i].Name == name {
			return &c.Environments[i], true
		}
	}
	return nil, false
}

// DerivedFor returns the derived values of environment env: the top-level
// ones in file order, each replaced by the environment's override of the
// same name, followed by the environment's other derived values in file
// order. For an unknown environment it returns the top-level values.
func (c *Config) DerivedFor(env string) []rekey.Derived {
	out := slices.Clone(c.Derived)
	e, ok := c.Environment(env)
	if !ok {
		return out
	}
	for _, o := range e.Derived {
		i := slices.IndexFunc(out, func(d rekey.Derived) bool { return d.Name == o.Name })
		if i >= 0 {
			out[i] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}

// TargetsFor returns the targets of environment env that secret is published
// to, in the environment's order: all of them unless the secret lists some.
func (c *Config) TargetsFor(env, secret string) ([]Target, error) {
	e, ok := c.Environment(env)
	if !ok {
		return nil, notFound("environment", env, c.Environments, func(e Environment) string { return e.Name })
	}
	s, ok := c.Secret(secret)
	if !ok {
		return nil, notFound("secret", secret, c.Secrets, func(s rekey.Spec) string { return s.Name })
	}
	if len(s.Targets) == 0 {
		return slices.Clone(e.Targets), nil
	}
	var out []Target
	for _, t := range e.Targets {
		if slices.Contains(s.Targets, t.Name) {
			out = append(out, t)
		}
	}
	for _, name := range s.Targets {
		if !slices.ContainsFunc(e.Targets, func(t Target) bool { return t.Name == name }) {
			return nil, rekey.Errorf(rekey.CodeInvalid, "secret %s names target %s that environment %s does not define", s.Name, quote(name), e.Name).
				WithHint("define it under environments.%s.targets, or remove it from the secret's targets", e.Name)
		}
	}
	return out, nil
}

// ServicesFor returns the services of environment env in restart order:
// by Order, ties in file order.
func (c *Config) ServicesFor(env string) []rekey.Service {
	var out []rekey.Service
	for _, s := range c.Services {
		if s.In(env) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b rekey.Service) int { return a.Order - b.Order })
	return out
}

// ChecksFor returns the checks of environment env in file order.
func (c *Config) ChecksFor(env string) []rekey.Check {
	var out []rekey.Check
	for _, k := range c.Checks {
		if k.In(env) {
			out = append(out, k)
		}
	}
	return out
}

// notFound is the error for a name rekey.yaml does not define: kind
// ("environment", "secret"), the name, and the items it does define.
func notFound[T any](kind, name string, items []T, nameOf func(T) string) error {
	names := make([]string, len(items))
	for i, x := range items {
		names[i] = nameOf(x)
	}
	return rekey.Errorf(rekey.CodeNotFound, "no %s %s in %s", kind, quote(name), FileName).
		WithHint("%s%ss: %s", didYouMean(name, names), kind, listOf(names))
}

// Incident is the incident: section of rekey.yaml.
type Incident struct {
	// Stop stops the services that consume an exposed secret before it is
	// rotated, as `rekey incident open --stop` does.
	Stop bool
}
