package config

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

type fileDecl struct {
	envs      []*envDecl
	envsOK    bool // environments was read (so target names can be checked)
	secrets   []*secretDecl
	secretsOK bool // secrets was read (so references to secrets can be checked)
	derived   []derivedDecl
	derivedOK bool
}

type envDecl struct {
	env       Environment
	targetsOK bool
	targets   []string
	derivedOK bool
	derived   []derivedDecl
}

type secretDecl struct {
	spec    rekey.Spec
	targets []*yaml.Node // the items of targets
	urlFrom *yaml.Node
	admin   *yaml.Node
}

type derivedDecl struct {
	d        rekey.Derived
	key, val *yaml.Node
}

// config decodes the whole file.
func (d *decoder) config(root *yaml.Node, abs string) *Config {
	c := &Config{Path: abs, Dir: filepath.Dir(abs)}
	d.known = knownNames(root)
	c.Store = Store{Path: filepath.Join(c.Dir, filepath.FromSlash(DefaultStorePath)), MasterKey: MasterKeyEnv}
	f := &fileDecl{derivedOK: true}
	var versionVal *yaml.Node
	top := section{
		what:  "rekey.yaml",
		where: "at the top level",
		fields: []field{
			{"version", func(k, v *yaml.Node) { versionVal = v }},
			{"store", func(k, v *yaml.Node) { d.store(v, &c.Store) }},
			{"environments", func(k, v *yaml.Node) { f.envsOK = d.environments(k, v, f) }},
			{"secrets", func(k, v *yaml.Node) { f.secretsOK = d.secrets(k, v, f) }},
			{"derived", func(k, v *yaml.Node) { f.derived, f.derivedOK = d.derivedMap(v, "") }},
			{"tls", func(k, v *yaml.Node) { c.TLS = d.tlsCerts(v) }},
			{"services", func(k, v *yaml.Node) { c.Services = named(d, v, "service", "services", d.service) }},
			{"checks", func(k, v *yaml.Node) { c.Checks = named(d, v, "check", "checks", d.check1) }},
			{"notify", func(k, v *yaml.Node) { c.Notify = d.notify(v) }},
			{"incident", func(k, v *yaml.Node) { c.Incident = d.incident(v) }},
		},
		misplaced: map[string]string{
			"path": "store", "master_key": "store", "keep_versions": "store",
			"targets": "an environment (environments.NAME.targets)",
		},
	}
	seen, ok := d.decode(root, top)
	if !ok {
		return nil
	}
	if isNull(versionVal) {
		d.missing(root, root, "add `version: 1` at the top of rekey.yaml", "version is missing")
	} else if versionVal.Kind != yaml.ScalarNode || versionVal.ShortTag() != "!!int" {
		d.fail(versionVal, "write `version: 1`", "version must be the number 1, not %s", kindOf(versionVal))
	} else if v := new(int64); versionVal.Decode(v) != nil || *v != 1 {
		d.fail(versionVal, "this rekey reads version 1 only: write `version: 1`, or upgrade rekey", "unsupported version %s", quote(versionVal.Value))
	} else {
		c.Version = 1
	}
	if seen["environments"] == nil {
		d.missing(root, root, "add one, e.g. environments: {production: {targets: {app: {type: dotenv, path: .env}}}}", "environments is missing")
	}
	if seen["secrets"] == nil {
		d.missing(root, root, "add the secrets rekey manages, e.g. secrets: {JWT_SECRET: {kind: generated, generator: {bytes: 32, encoding: base64}}}", "secrets is missing")
	}
	d.check(f)
	for _, e := range f.envs {
		for _, x := range e.derived {
			e.env.Derived = append(e.env.Derived, x.d)
		}
		c.Environments = append(c.Environments, e.env)
	}
	for _, s := range f.secrets {
		c.Secrets = append(c.Secrets, s.spec)
	}
	for _, x := range f.derived {
		c.Derived = append(c.Derived, x.d)
	}
	return c
}

func (d *decoder) store(v *yaml.Node, s *Store) {
	d.decode(v, section{
		what: "store",
		fields: []field{
			{"path", func(k, v *yaml.Node) { d.path(v, "store path", &s.Path) }},
			{"master_key", func(k, v *yaml.Node) { d.masterKey(v, s) }},
			{"keep_versions", func(k, v *yaml.Node) {
				if n, ok := d.integer(v, "keep_versions", "keep_versions: 10"); ok {
					if n < 0 {
						d.fail(v, "0 keeps every version; N keeps the N newest unlabeled ones", "keep_versions must be 0 or more")
						return
					}
					s.KeepVersions = n
				}
			}},
		},
	})
}

const masterKeyHint = `master_key is "env" (the key is in $REKEY_MASTER_KEY), "file:PATH" (a key file) or "passphrase"`

func (d *decoder) masterKey(v *yaml.Node, s *Store) {
	mk, ok := d.text(v, "master_key")
	if !ok || isNull(v) {
		return
	}
	switch {
	case mk == MasterKeyEnv || mk == MasterKeyPass:
		s.MasterKey = mk
	case strings.HasPrefix(mk, MasterKeyFile):
		p := strings.TrimPrefix(mk, MasterKeyFile)
		if p == "" {
			d.fail(v, "write file:PATH, e.g. file:~/.config/rekey/keys/KEY.key", "master_key file: has no path")
			return
		}
		abs, err := d.abs(p)
		if err != nil {
			d.fail(v, "set HOME, or write an absolute path", "master_key: cannot expand ~: %v", err)
			return
		}
		s.MasterKey = MasterKeyFile + abs
	default:
		// Never quote this value: a master key pasted here is a secret.
		hint := masterKeyHint
		if strings.ContainsAny(mk, `/\`) && !strings.Contains(mk, "=") && len(mk) < 200 {
			hint = "to read the key from a file write master_key: file:PATH; " + masterKeyHint
		} else if c, ok := closest(mk, []string{MasterKeyEnv, MasterKeyPass, "file"}); ok {
			hint = "did you mean " + c + "? " + masterKeyHint
		}
		d.fail(v, hint, "master_key is not env, file:PATH or passphrase (if you pasted the key itself here, remove it and rotate it)")
	}
}

func (d *decoder) environments(k, v *yaml.Node, f *fileDecl) bool {
	return d.someEntries(k, v, "environment", "environments", "add one, e.g. production: {targets: {app: {type: dotenv, path: .env}}}", func(k, v *yaml.Node) {
		f.envs = append(f.envs, d.environment(k, v))
	})
}

func (d *decoder) environment(k, v *yaml.Node) *envDecl {
	name := k.Value
	e := &envDecl{env: Environment{Name: name, Line: k.Line}, derivedOK: true}
	if !envName.MatchString(name) {
		d.fail(k, envNameHint, "invalid environment name %s", quote(name))
	}
	what := label("environment", name)
	var targetsKey *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"targets", func(k, v *yaml.Node) {
				targetsKey = k
				n, ok := d.entries(v, "target", "targets of "+what, func(k, v *yaml.Node) {
					e.env.Targets = append(e.env.Targets, d.target(k, v, what))
					e.targets = append(e.targets, k.Value)
				})
				e.targetsOK = ok && n > 0
				if ok && n == 0 {
					d.fail(k, "add one, e.g. app: {type: dotenv, path: .env}", "%s has no targets", what)
				}
			}},
			{"derived", func(k, v *yaml.Node) { e.derived, e.derivedOK = d.derivedMap(v, " of "+what) }},
		},
		misplaced: map[string]string{"type": "a target (targets.NAME.type)", "path": "a target (targets.NAME.path)"},
	})
	if !ok {
		e.derivedOK = false
		return e
	}
	if targetsKey == nil {
		d.missing(k, v, "add targets, e.g. targets: {app: {type: dotenv, path: .env}}", "%s has no targets", what)
	}
	return e
}

func (d *decoder) target(k, v *yaml.Node, env string) Target {
	name := k.Value
	t := Target{Name: name, Type: TargetDotenv, Line: k.Line}
	if !targetName.MatchString(name) {
		d.fail(k, targetNameHint, "invalid target name %s", quote(name))
	}
	what := label("target", name) + " of " + env
	p := ".env"
	var hostKey, pathVal *yaml.Node
	var cmdKeys []*yaml.Node
	d.decode(v, section{
		what: what,
		fields: []field{
			{"type", func(k, v *yaml.Node) {
				if s, ok := d.enum(v, "target type", TargetTypes); ok && s != "" {
					t.Type = s
				}
			}},
			{"path", func(k, v *yaml.Node) { pathVal = v }},
			{"host", func(k, v *yaml.Node) {
				hostKey = k
				if h, ok := d.word(v, "host of "+what, "host: deploy@web1.example.com"); ok {
					t.Host = h
				}
			}},
			{"read", func(k, v *yaml.Node) {
				cmdKeys = append(cmdKeys, k)
				if c, ok := d.command(v, "read of "+what, false); ok {
					t.Read = c.Args()
				}
			}},
			{"write", func(k, v *yaml.Node) {
				cmdKeys = append(cmdKeys, k)
				if c, ok := d.command(v, "write of "+what, false); ok {
					t.Write = c.Args()
				}
			}},
			{"format", func(k, v *yaml.Node) {
				cmdKeys = append(cmdKeys, k)
				if f, ok := d.enum(v, "format of "+what, []string{"json", "env"}); ok {
					t.Format = f
				}
			}},
		},
	})
	if t.Type == TargetCommand {
		return d.commandTarget(k, v, t, what, hostKey, pathVal)
	}
	if len(cmdKeys) > 0 {
		d.fail(cmdKeys[0], "read:, write: and format: are for type: command (a secret manager's CLI)", "%s has %s but is not of type command", what, cmdKeys[0].Value)
	}
	if t.Type != TargetSSH {
		if hostKey != nil {
			d.fail(hostKey, "host: is for type: ssh (a .env on another machine)", "%s has a host but is not of type ssh", what)
		}
		if pathVal != nil {
			d.path(pathVal, "path of "+what, &p)
		}
		if !filepath.IsAbs(p) {
			p, _ = d.abs(p) // the default, relative: cannot fail
		}
		t.Path = p
		return t
	}
	// ssh: a destination ssh takes as it is (no option, no shell), and an
	// absolute path on the host.
	switch {
	case hostKey == nil:
		d.missing(k, v, "add host: deploy@web1.example.com (user@host[:port], or an alias of your ~/.ssh/config)", "%s has no host", what)
	case t.Host != "" && !sshDest.MatchString(t.Host):
		d.fail(hostKey, "write user@host, user@host:port or an alias of ~/.ssh/config (letters, digits, . _ - @ : [ ])", "host of %s is not an ssh destination: %s", what, quote(t.Host))
	}
	switch {
	case pathVal == nil:
		d.missing(k, v, "add the .env's absolute path on the host, e.g. path: /srv/app/.env", "%s has no path", what)
	case pathVal.Kind != yaml.ScalarNode || !strings.HasPrefix(pathVal.Value, "/") || strings.ContainsAny(pathVal.Value, "\n\x00"):
		d.fail(pathVal, "write the .env's absolute path on the host, e.g. path: /srv/app/.env", "path of %s must be an absolute path on the host", what)
	default:
		t.Path = pathVal.Value
	}
	return t
}

// commandTarget completes a target of type command: a read and a write
// command, no path or host.
func (d *decoder) commandTarget(k, v *yaml.Node, t Target, what string, hostKey, pathVal *yaml.Node) Target {
	switch {
	case hostKey != nil:
		d.fail(hostKey, "host: is for type: ssh", "%s is of type command: it has no host", what)
	case pathVal != nil:
		d.fail(pathVal, "path: is for a .env target; a command target has read: and write:", "%s is of type command: it has no path", what)
	case len(t.Read) == 0:
		d.missing(k, v, "add read: [the CLI, printing the stored JSON object] (rekey reads back what it writes, and detects drift)", "%s has no read command", what)
	case len(t.Write) == 0:
		d.missing(k, v, "add write: [the CLI, reading the whole document on stdin]", "%s has no write command", what)
	}
	if t.Format == "" {
		t.Format = "json"
	}
	return t
}

// sshDest is what an ssh target's host may be: user@host[:port],
// [v6]:port or an alias; never an option (-o...) or shell.
var sshDest = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.@:\[\]-]*$`)

// derivedMap reads a derived mapping; owner is "" (top level) or
// " of environment NAME".
func (d *decoder) derivedMap(v *yaml.Node, owner string) ([]derivedDecl, bool) {
	var out []derivedDecl
	_, ok := d.entries(v, "derived value", "derived"+owner, func(k, v *yaml.Node) {
		name := k.Value
		if !varName.MatchString(name) {
			d.fail(k, varNameHint, "invalid derived value name %s", quote(name))
		}
		what := label("derived value", name) + owner
		x := derivedDecl{d: rekey.Derived{Name: name, Line: k.Line}, key: k, val: v}
		switch {
		case isNull(v):
			d.fail(k, "write a template such as postgres://app:{{ DATABASE_PASSWORD | urlquery }}@localhost:5432/app", "%s has no template", what)
		case v.Kind != yaml.ScalarNode:
			d.fail(v, "write the template as text, in quotes", "%s must be a template, not %s", what, kindOf(v))
		default:
			x.d.Template = d.parseTemplate(v, "template of "+what)
			if x.d.Template != nil && x.d.Template.Uses(rekey.JWTFilter) {
				d.fail(v, "use the jwt filter in a check's header or body (checks:), where a fresh token is what is wanted",
					"template of %s: the jwt filter makes a new token at every render, so a derived value would never stay the same", what)
			}
		}
		out = append(out, x)
	})
	return out, ok
}

// tlsCerts decodes `tls: {NAME: {file: PATH} | {endpoint: HOST:PORT}}`.
func (d *decoder) tlsCerts(v *yaml.Node) []TLSCert {
	var out []TLSCert
	d.entries(v, "certificate", "tls", func(k, v *yaml.Node) {
		c := TLSCert{Name: k.Value, Line: k.Line}
		what := label("certificate", k.Value)
		d.decode(v, section{
			what: what,
			fields: []field{
				{"file", func(k, v *yaml.Node) { d.path(v, "file of "+what, &c.File) }},
				{"endpoint", func(k, v *yaml.Node) {
					if s, ok := d.text(v, "endpoint of "+what); ok {
						if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
							d.fail(v, "write host:port, e.g. api.example.com:443", "endpoint of %s is not host:port", what)
						}
						c.Endpoint = s
					}
				}},
			},
		})
		if (c.File == "") == (c.Endpoint == "") {
			d.fail(k, "give exactly one of file: PATH or endpoint: HOST:PORT", "%s needs a file or an endpoint", what)
		}
		out = append(out, c)
	})
	return out
}

// incident decodes the incident: section.
func (d *decoder) incident(v *yaml.Node) Incident {
	var in Incident
	d.decode(v, section{
		what: "incident",
		fields: []field{
			{"stop", func(k, v *yaml.Node) {
				if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
					d.fail(v, "write stop: true (stop the services that read an exposed secret before rotating it) or stop: false", "stop of incident must be true or false")
					return
				}
				in.Stop = v.Value == "true"
			}},
		},
	})
	return in
}
