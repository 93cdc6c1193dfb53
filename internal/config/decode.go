package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// maxFileSize bounds the input: rekey.yaml is a small hand-written file.
const maxFileSize = 4 << 20

// Name rules.
var (
	envName    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	targetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	varName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) // secrets and derived values
)

const (
	envNameHint    = "environment names are lower-case letters, digits, - and _, starting with a letter or digit"
	targetNameHint = "target names are letters, digits, - and _, starting with a letter or digit"
	varNameHint    = "names are environment variable names: letters, digits and _, not starting with a digit"
	emptyHint      = "run `rekey init --env-file .env` to write one, or start it with `version: 1`"
)

// Parse parses the text of a rekey.yaml. path names the file: it is shown in
// errors as given, and made absolute for Config.Path; relative paths in the
// file are resolved against its folder. Only the first problem, in file
// order, is reported, as an *Error.
func Parse(path string, data []byte) (*Config, error) {
	if path == "" {
		path = FileName
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, errorf(path, rekey.CodeInvalid, err, "pass the path of rekey.yaml with --config", "cannot resolve path: %v", err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Line: 1, Msg: fmt.Sprintf("file is too large (%d bytes) for a rekey.yaml", len(data)), Hint: "rekey.yaml lists secrets by name and holds no values; check that --config names the right file"}
	}
	root, perr := parseYAML(path, data)
	if perr != nil {
		return nil, perr
	}
	d := &decoder{file: path, dir: filepath.Dir(abs)}
	c := d.config(root, abs)
	if d.first != nil {
		return nil, d.first
	}
	c.Raw = bytes.Clone(data)
	c.Digest = sha256.Sum256(data)
	return c, nil
}

// parseYAML parses data into a node tree: the single document's root node.
func parseYAML(file string, data []byte) (root *yaml.Node, err *Error) {
	empty := &Error{File: file, Line: 1, Msg: "rekey.yaml is empty", Hint: emptyHint}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, empty
	}
	defer func() {
		// yaml.v3 is not known to panic on any input since v3.0.1; this keeps
		// Parse total should a parser bug remain.
		if r := recover(); r != nil {
			root, err = nil, &Error{File: file, Line: 1, Msg: "YAML parser failed on this file", Hint: "check the YAML syntax of rekey.yaml"}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if e := dec.Decode(&doc); e != nil {
		if errors.Is(e, io.EOF) {
			return nil, empty // only comments
		}
		return nil, syntaxError(file, data, e)
	}
	var extra yaml.Node
	switch e := dec.Decode(&extra); {
	case e == nil:
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, &Error{File: file, Line: max(line, 1), Msg: "rekey.yaml holds more than one YAML document", Hint: "remove the --- separator: rekey.yaml is one document"}
	case errors.Is(e, io.EOF):
	default:
		return nil, syntaxError(file, data, e)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, empty
	}
	return doc.Content[0], nil
}

// decoder walks the node tree. It records the first error in file order and
// carries on, so that the error reported does not depend on the order in
// which sections are checked.
type decoder struct {
	file  string // the name shown in errors
	dir   string // the folder relative paths are resolved against
	first *Error
	known known // names that sections may reference, read before decoding
}

// fail records an error at node n (the top of the file when n is nil).
func (d *decoder) fail(n *yaml.Node, hint, format string, args ...any) {
	e := &Error{File: d.file, Msg: fmt.Sprintf(format, args...), Hint: hint}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	if e.Line <= 0 {
		e.Line, e.Col = 1, 0
	}
	if d.first == nil || e.before(d.first) {
		d.first = e
	}
}

// missing records an error about a key missing from a mapping: it is shown
// at node at, and ordered after everything in container, so that an unknown
// key in the mapping (a typo of the missing one) is reported first.
func (d *decoder) missing(at, container *yaml.Node, hint, format string, args ...any) {
	before := d.first
	d.fail(at, hint, format, args...)
	if d.first == before {
		return
	}
	d.first.order = [2]int{endLine(container), int(^uint(0) >> 1)}
	if before != nil && before.before(d.first) {
		d.first = before
	}
}

// endLine is the line of the last node within n.
func endLine(n *yaml.Node) int {
	line := 0
	for n != nil {
		line = max(line, n.Line)
		if n.Kind == yaml.AliasNode || len(n.Content) == 0 {
			break
		}
		n = n.Content[len(n.Content)-1]
	}
	return line
}

// field is one key of a fixed-shape mapping and the function that decodes
// its value (already alias-resolved).
type field struct {
	key    string
	decode func(key, val *yaml.Node)
}

// section describes a fixed-shape mapping: its keys, the keys reserved for
// later versions, and keys that belong to a nested mapping (for hints).
type section struct {
	what      string // "secret JWT_SECRET": the subject of messages
	where     string // "in secret JWT_SECRET" (default "in " + what)
	fields    []field
	reserved  []string
	misplaced map[string]string // key → the nested mapping it belongs in
}

// decode walks the mapping n in file order: it rejects duplicate and unknown
// keys and calls each key's decode function. A null n is an empty mapping.
// It reports whether n is a mapping, and returns the key nodes seen.
func (d *decoder) decode(n *yaml.Node, s section) (map[string]*yaml.Node, bool) {
	n = resolve(n)
	seen := map[string]*yaml.Node{}
	if isNull(n) {
		return seen, true
	}
	keys := make([]string, len(s.fields))
	for i, f := range s.fields {
		keys[i] = f.key
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, "expected keys: "+strings.Join(keys, ", "), "%s must be a mapping of keys, not %s", s.what, kindOf(n))
		return seen, false
	}
	where := s.where
	if where == "" {
		where = "in " + s.what
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		name, ok := d.key(k, where)
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			d.fail(k, fmt.Sprintf("it is first set on line %d; keep one", prev.Line), "duplicate key %s %s", quote(name), where)
			continue
		}
		seen[name] = k
		j := slices.IndexFunc(s.fields, func(f field) bool { return f.key == name })
		if j < 0 {
			var hint string
			switch {
			case slices.Contains(s.reserved, name):
				hint = name + " is reserved for a later version of rekey; remove it"
			case s.misplaced[name] != "":
				hint = name + " belongs under " + s.misplaced[name]
			default:
				hint = didYouMean(name, keys) + "valid keys here: " + strings.Join(keys, ", ")
			}
			d.fail(k, hint, "unknown key %s %s", quote(name), where)
			continue
		}
		s.fields[j].decode(k, v)
	}
	return seen, true
}

// key checks that k is a plain key and returns its text.
func (d *decoder) key(k *yaml.Node, where string) (string, bool) {
	switch {
	case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
		d.fail(k, "write the keys out in full", "merge keys (<<) are not supported %s", where)
		return "", false
	case k.Kind != yaml.ScalarNode:
		d.fail(k, "keys are plain names", "a key %s is %s, not a name", where, kindOf(k))
		return "", false
	case k.Value == "" || isNull(k):
		d.fail(k, "keys are plain names", "empty key %s", where)
		return "", false
	}
	return k.Value, true
}

// entries walks a mapping of names to values (environments, targets,
// secrets, derived), rejecting duplicate names. item names one entry
// ("secret"), what names the mapping ("secrets"). It returns the number of
// entries and whether n is a mapping; a null n is an empty mapping.
func (d *decoder) entries(n *yaml.Node, item, what string, fn func(k, v *yaml.Node)) (int, bool) {
	n = resolve(n)
	if isNull(n) {
		return 0, true
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, fmt.Sprintf("write one %s per line, as NAME: followed by its settings", item), "%s must be a mapping of names, not %s", what, kindOf(n))
		return 0, false
	}
	seen := map[string]*yaml.Node{}
	count := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		name, ok := d.key(k, "in "+what)
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			d.fail(k, fmt.Sprintf("the first is on line %d; names must be unique", prev.Line), "duplicate %s %s in %s", item, quote(name), what)
			continue
		}
		seen[name] = k
		count++
		fn(k, v)
	}
	return count, true
}

// Scalar helpers. A null value reads as the zero value: callers that need a
// value check for it.

func (d *decoder) text(n *yaml.Node, what string) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, "write it as text, quoted if needed", "%s must be text, not %s", what, kindOf(n))
		return "", false
	}
	return n.Value, true
}

// textTo returns a field decoder storing text in *dst.
func (d *decoder) textTo(dst *string, what string) func(k, v *yaml.Node) {
	return func(k, v *yaml.Node) {
		if s, ok := d.text(v, what); ok {
			*dst = s
		}
	}
}

func (d *decoder) integer(n *yaml.Node, what, example string) (int, bool) {
	if isNull(n) {
		return 0, true
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.fail(n, "for example "+example, "%s must be a whole number, not %s", what, kindOf(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < -1<<31 || v > 1<<31-1 {
		d.fail(n, "for example "+example, "%s is out of range", what)
		return 0, false
	}
	return int(v), true
}

func (d *decoder) duration(n *yaml.Node, what string) (time.Duration, bool) {
	if isNull(n) {
		return 0, true
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, durationHint, "%s must be a duration such as 90d, not %s", what, kindOf(n))
		return 0, false
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		d.fail(n, durationHint, "%s: %s", what, errMsg(err))
		return 0, false
	}
	return v, true
}

// enum reads one of valid; empty is allowed (null).
func (d *decoder) enum(n *yaml.Node, what string, valid []string) (string, bool) {
	s, ok := d.text(n, what)
	if !ok || s == "" && isNull(n) {
		return "", ok
	}
	if !slices.Contains(valid, s) {
		d.fail(n, didYouMean(s, valid)+"valid values: "+strings.Join(valid, ", "), "unknown %s %s", what, quote(s))
		return "", false
	}
	return s, true
}

// names reads a list of distinct names (a secret's targets, postgres roles).
func (d *decoder) names(n *yaml.Node, what, example, emptyHint string) ([]string, []*yaml.Node, bool) {
	if isNull(n) {
		return nil, nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, "write a list, like "+example, "%s must be a list, not %s", what, kindOf(n))
		return nil, nil, false
	}
	if len(n.Content) == 0 {
		d.fail(n, emptyHint, "%s is an empty list", what)
		return nil, nil, false
	}
	var out []string
	var nodes []*yaml.Node
	ok := true
	for _, item := range n.Content {
		item = resolve(item)
		if item.Kind != yaml.ScalarNode || isNull(item) || item.Value == "" {
			d.fail(item, "write a list of names, like "+example, "%s must list names, not %s", what, kindOf(item))
			ok = false
			continue
		}
		if slices.Contains(out, item.Value) {
			d.fail(item, "list each name once", "%s lists %s twice", what, quote(item.Value))
			ok = false
			continue
		}
		out = append(out, item.Value)
		nodes = append(nodes, item)
	}
	return out, nodes, ok
}

// abs resolves a path from the file: ~ is the home folder, relative paths
// are relative to the file's folder.
func (d *decoder) abs(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") || strings.HasPrefix(p, "~"+string(filepath.Separator)) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, p[1:])
	}
	p = filepath.FromSlash(p)
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	return filepath.Clean(p), nil
}

// path reads a path value into *dst (absolute); null keeps *dst.
func (d *decoder) path(n *yaml.Node, what string, dst *string) {
	s, ok := d.text(n, what)
	if !ok || isNull(n) {
		return
	}
	if s == "" {
		d.fail(n, "write a path relative to the folder of rekey.yaml, or remove the key for the default", "%s is empty", what)
		return
	}
	p, err := d.abs(s)
	if err != nil {
		d.fail(n, "set HOME, or write an absolute path", "%s: cannot expand ~: %v", what, err)
		return
	}
	*dst = p
}

// The declarations collected while decoding, with the nodes that the
// cross-reference checks report errors at.

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
			{"services", func(k, v *yaml.Node) { c.Services = d.services(k, v, root) }},
			{"checks", func(k, v *yaml.Node) { c.Checks = d.checks(k, v, root) }},
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
	n, ok := d.entries(v, "environment", "environments", func(k, v *yaml.Node) {
		f.envs = append(f.envs, d.environment(k, v))
	})
	if ok && n == 0 {
		d.fail(k, "add one, e.g. production: {targets: {app: {type: dotenv, path: .env}}}", "environments is empty")
	}
	return ok
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
	d.decode(v, section{
		what: what,
		fields: []field{
			{"type", func(k, v *yaml.Node) {
				if s, ok := d.enum(v, "target type", TargetTypes); ok && s != "" {
					t.Type = s
				}
			}},
			{"path", func(k, v *yaml.Node) { d.path(v, "path of "+what, &p) }},
		},
	})
	if !filepath.IsAbs(p) {
		p, _ = d.abs(p) // the default, relative: cannot fail
	}
	t.Path = p
	return t
}

func (d *decoder) secrets(k, v *yaml.Node, f *fileDecl) bool {
	n, ok := d.entries(v, "secret", "secrets", func(k, v *yaml.Node) {
		f.secrets = append(f.secrets, d.secret(k, v))
	})
	if ok && n == 0 {
		d.fail(k, "add the secrets rekey manages, e.g. JWT_SECRET: {kind: generated, generator: {bytes: 32, encoding: base64}}", "secrets is empty")
	}
	return ok
}

var kindHint = "kinds: " + listOf(rekey.Kinds)

func (d *decoder) secret(k, v *yaml.Node) *secretDecl {
	name := k.Value
	s := &secretDecl{spec: rekey.Spec{Name: name, Line: k.Line}}
	if !varName.MatchString(name) {
		d.fail(k, varNameHint, "invalid secret name %s", quote(name))
	}
	what := label("secret", name)
	var kindVal, genKey, rotKey, remKey, pgKey, sessKey, reKey *yaml.Node
	var rot, rem time.Duration
	var pg *rekey.PostgresSpec
	misplaced := map[string]string{}
	for _, f := range []string{"url_from", "host", "port", "database", "role", "sslmode", "changed_by", "admin_secret", "strategy", "roles", "grace"} {
		misplaced[f] = "postgres"
	}
	misplaced["bytes"], misplaced["encoding"] = "generator", "generator"
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"purpose", d.textTo(&s.spec.Purpose, "purpose of "+what)},
			{"kind", func(k, v *yaml.Node) { kindVal = v }},
			{"generator", func(k, v *yaml.Node) { genKey, s.spec.Generator = k, d.generator(v, what) }},
			{"rotate_every", func(k, v *yaml.Node) { rotKey = k; rot, _ = d.duration(v, "rotate_every of "+what) }},
			{"remind_every", func(k, v *yaml.Node) { remKey = k; rem, _ = d.duration(v, "remind_every of "+what) }},
			{"storage", d.textTo(&s.spec.Storage, "storage of "+what)},
			{"encryption", d.textTo(&s.spec.Encryption, "encryption of "+what)},
			{"access", d.textTo(&s.spec.Access, "access of "+what)},
			{"targets", func(k, v *yaml.Node) {
				s.spec.Targets, s.targets, _ = d.names(v, "targets of "+what, "[app]", "remove targets to publish the secret to every target")
			}},
			{"postgres", func(k, v *yaml.Node) { pgKey = k; pg = d.postgres(v, what, s) }},
			{"sessions", func(k, v *yaml.Node) { sessKey = k; s.spec.Sessions = d.sessions(v, what) }},
			{"reencrypt", func(k, v *yaml.Node) { reKey = k; s.spec.Reencrypt = d.reencrypt(v, what) }},
		},
		misplaced: misplaced,
	})
	if !ok {
		return s
	}
	if isNull(kindVal) {
		d.missing(k, v, "add kind: generated (or "+listOf(rekey.Kinds[1:])+")", "%s has no kind", what)
		return s
	}
	ks, ok := d.text(kindVal, "kind of "+what)
	if !ok {
		return s
	}
	kind := rekey.Kind(ks)
	if !kind.Valid() {
		d.fail(kindVal, didYouMean(ks, rekey.Kinds)+kindHint, "unknown kind %s for %s", quote(ks), what)
		return s
	}
	s.spec.Kind = kind
	if kind == rekey.KindManual {
		if genKey != nil {
			d.fail(genKey, "manual secrets are set by hand with `rekey set`: remove generator", "%s is manual and cannot have a generator", what)
		}
		if rotKey != nil {
			d.fail(rotKey, "rekey does not rotate manual secrets: use remind_every: 90d to be reminded", "%s is manual: rotate_every is not used", what)
		}
		s.spec.Generator = rekey.Generator{}
		s.spec.Period = rem
	} else {
		if genKey == nil {
			d.missing(k, v, "add generator: {bytes: 32, encoding: base64}", "%s (kind %s) has no generator", what, kind)
		}
		if remKey != nil {
			d.fail(remKey, "remind_every is for manual secrets: use rotate_every", "%s is not manual: remind_every is not used", what)
		}
		s.spec.Period = rot
	}
	if kind == rekey.KindPostgresPassword {
		if pg == nil {
			pg = d.postgres(nil, what, s)
		}
		s.spec.Postgres = pg
	} else if pgKey != nil {
		d.fail(pgKey, "postgres settings are for kind postgres-password", "%s is kind %s: postgres is not used", what, kind)
	}
	if reKey != nil && kind != rekey.KindDataKey {
		d.fail(reKey, "reencrypt is for kind data-key (the key that encrypts columns)", "%s is kind %s: reencrypt is not used", what, kind)
	}
	if sessKey != nil && kind != rekey.KindGenerated {
		d.fail(sessKey, "sessions is for a generated signing secret such as JWT_SECRET", "%s is kind %s: sessions is not used", what, kind)
	}
	return s
}

var encodingHint = "encodings: " + listOf(rekey.Encodings)

func (d *decoder) generator(v *yaml.Node, secret string) rekey.Generator {
	g := rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64}
	what := "generator of " + secret
	d.decode(v, section{
		what: what,
		fields: []field{
			{"bytes", func(k, v *yaml.Node) {
				n, ok := d.integer(v, "bytes of "+what, "bytes: 32")
				if !ok || isNull(v) {
					return
				}
				if n < 16 || n > 1024 {
					d.fail(v, "use 16 to 1024; 32 bytes (256 bits) suits most secrets", "bytes of %s must be between 16 and 1024", what)
					return
				}
				g.Bytes = n
			}},
			{"encoding", func(k, v *yaml.Node) {
				s, ok := d.text(v, "encoding of "+what)
				if !ok || isNull(v) {
					return
				}
				e := rekey.Encoding(s)
				if !e.Valid() {
					d.fail(v, didYouMean(s, rekey.Encodings)+encodingHint, "unknown encoding %s in %s", quote(s), what)
					return
				}
				g.Encoding = e
			}},
		},
	})
	return g
}

func (d *decoder) postgres(v *yaml.Node, secret string, s *secretDecl) *rekey.PostgresSpec {
	p := &rekey.PostgresSpec{ChangedBy: "self", Strategy: "single"}
	what := "postgres settings of " + secret
	var changedBy, adminKey, strategy, rolesKey, rolesVal, graceKey *yaml.Node
	rolesOK := true
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"url_from", func(k, v *yaml.Node) {
				if t, ok := d.text(v, "url_from of "+secret); ok && t != "" {
					p.URLFrom, s.urlFrom = t, v
				}
			}},
			{"host", d.textTo(&p.Host, "host of "+secret)},
			{"port", func(k, v *yaml.Node) {
				n, ok := d.integer(v, "port of "+secret, "port: 5432")
				if !ok || isNull(v) {
					return
				}
				if n < 1 || n > 65535 {
					d.fail(v, "PostgreSQL listens on 5432 by default", "port of %s must be between 1 and 65535", secret)
					return
				}
				p.Port = n
			}},
			{"database", d.textTo(&p.Database, "database of "+secret)},
			{"role", d.textTo(&p.Role, "role of "+secret)},
			{"sslmode", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "sslmode", SSLModes); ok {
					p.SSLMode = m
				}
			}},
			{"changed_by", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "changed_by", ChangedBys); ok && m != "" {
					p.ChangedBy, changedBy = m, v
				}
			}},
			{"admin_secret", func(k, v *yaml.Node) {
				adminKey = k
				if t, ok := d.text(v, "admin_secret of "+secret); ok && t != "" {
					p.AdminSecret, s.admin = t, v
				}
			}},
			{"strategy", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "strategy", Strategies); ok && m != "" {
					p.Strategy, strategy = m, v
				}
			}},
			{"roles", func(k, v *yaml.Node) {
				rolesKey, rolesVal = k, v
				p.Roles, _, rolesOK = d.names(v, "roles of "+secret, "[app_blue, app_green]", "the alternating strategy needs two roles, e.g. [app_blue, app_green]")
			}},
			{"grace", func(k, v *yaml.Node) { graceKey = k; p.Grace, _ = d.duration(v, "grace of "+secret) }},
		},
	})
	if !ok {
		return p
	}
	if p.ChangedBy == "admin" && p.AdminSecret == "" {
		at := changedBy
		if adminKey != nil {
			at = adminKey
		}
		d.fail(at, "admin_secret names the managed secret holding the admin connection URL, e.g. admin_secret: PG_ADMIN_URL", "changed_by: admin needs admin_secret (%s)", secret)
	}
	if p.ChangedBy == "self" && adminKey != nil {
		d.fail(adminKey, "admin_secret is used only with changed_by: admin; add that or remove admin_secret", "%s: admin_secret without changed_by: admin", secret)
	}
	if p.Strategy == "alternating" {
		switch {
		case rolesKey == nil:
			d.fail(strategy, "add roles: [app_blue, app_green]", "strategy: alternating needs roles (%s)", secret)
		case rolesOK && len(p.Roles) != 2:
			d.fail(rolesVal, "list exactly two login roles, e.g. [app_blue, app_green]", "strategy: alternating needs exactly two roles, not %d (%s)", len(p.Roles), secret)
		}
	} else {
		if rolesKey != nil {
			d.fail(rolesKey, "roles are used only with strategy: alternating; add that or remove roles", "%s: roles without strategy: alternating", secret)
		}
		if graceKey != nil {
			d.fail(graceKey, "grace is used only with strategy: alternating; add that or remove grace", "%s: grace without strategy: alternating", secret)
		}
	}
	return p
}

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
			t, err := rekey.ParseTemplate(v.Value)
			if err != nil {
				hint := rekey.ErrorHint(err)
				if hint == "" {
					hint = "write {{ NAME }} or {{ NAME | urlquery }}"
				}
				// Never quote the template: it might be a value pasted by mistake.
				d.fail(v, hint, "template of %s: %s", what, errMsg(err))
			} else {
				x.d.Template = t
			}
		}
		out = append(out, x)
	})
	return out, ok
}

// check runs the cross-reference checks, once every section is read.
func (d *decoder) check(f *fileDecl) {
	secretNames := make([]string, 0, len(f.secrets))
	for _, s := range f.secrets {
		secretNames = append(secretNames, s.spec.Name)
	}
	var derivedNames []string // every derived name, top level or in an environment
	addDerived := func(xs []derivedDecl) {
		for _, x := range xs {
			if !slices.Contains(derivedNames, x.d.Name) {
				derivedNames = append(derivedNames, x.d.Name)
			}
		}
	}
	addDerived(f.derived)
	allDerivedOK := f.derivedOK
	for _, e := range f.envs {
		addDerived(e.derived)
		allDerivedOK = allDerivedOK && e.derivedOK
	}

	// Derived values: not named like a secret, referencing only secrets.
	checkDerived := func(xs []derivedDecl, owner string) {
		for _, x := range xs {
			what := label("derived value", x.d.Name) + owner
			if !f.secretsOK {
				continue
			}
			if slices.Contains(secretNames, x.d.Name) {
				d.fail(x.key, "a name is either a managed secret or a derived value: rename one", "%s has the name of a secret", what)
			}
			if x.d.Template == nil {
				continue
			}
			for _, ref := range x.d.Template.Refs() {
				ref, attr := rekey.SplitRef(ref)
				switch {
				case attr != "" && attr != "role":
					d.fail(x.val, "the one version attribute is role (the login role of an alternating PostgreSQL password): write {{ NAME.role }}", "template of %s references unknown attribute %s", what, quote(attr))
				case slices.Contains(secretNames, ref):
				case slices.Contains(derivedNames, ref):
					d.fail(x.val, "derived values may reference only secrets: write the template in terms of secrets", "template of %s references derived value %s", what, quote(ref))
				default:
					d.fail(x.val, didYouMean(ref, secretNames)+"templates reference secrets; define it under secrets or fix the name", "template of %s references %s, which is not a secret", what, quote(ref))
				}
			}
		}
	}
	checkDerived(f.derived, "")
	for _, e := range f.envs {
		checkDerived(e.derived, " of "+label("environment", e.env.Name))
	}

	for _, s := range f.secrets {
		what := label("secret", s.spec.Name)
		// targets must exist in every environment.
		if f.envsOK {
		items:
			for _, item := range s.targets {
				for _, e := range f.envs {
					if e.targetsOK && !slices.Contains(e.targets, item.Value) {
						env := label("environment", e.env.Name)
						d.fail(item, fmt.Sprintf("%sa secret's targets must exist in every environment; %s defines: %s",
							didYouMean(item.Value, e.targets), env, strings.Join(e.targets, ", ")),
							"target %s of %s is not defined in %s", quote(item.Value), what, env)
						continue items
					}
				}
			}
		}
		// url_from names a derived value defined for every environment.
		if s.urlFrom != nil && allDerivedOK {
			name := s.urlFrom.Value
			switch {
			case !slices.Contains(derivedNames, name):
				hint := didYouMean(name, derivedNames) + "url_from names a value under derived, such as DATABASE_URL"
				if slices.Contains(secretNames, name) {
					hint = "url_from names a derived value (such as DATABASE_URL), not a secret"
				}
				d.fail(s.urlFrom, hint, "url_from of %s: %s is not a derived value", what, quote(name))
			case !slices.ContainsFunc(f.derived, func(x derivedDecl) bool { return x.d.Name == name }):
				for _, e := range f.envs {
					if !slices.ContainsFunc(e.derived, func(x derivedDecl) bool { return x.d.Name == name }) {
						d.fail(s.urlFrom, "define it under the top-level derived, or under derived of every environment",
							"url_from of %s: derived value %s is not defined for %s", what, quote(name), label("environment", e.env.Name))
						break
					}
				}
			}
		}
		// admin_secret names another managed secret.
		if s.admin != nil && f.secretsOK {
			name := s.admin.Value
			switch {
			case name == s.spec.Name:
				d.fail(s.admin, "name the secret holding the admin connection URL, e.g. PG_ADMIN_URL", "admin_secret of %s names the secret itself", what)
			case !slices.Contains(secretNames, name):
				d.fail(s.admin, didYouMean(name, secretNames)+"admin_secret names a secret under secrets holding the admin connection URL; add it there",
					"admin_secret of %s: %s is not a managed secret", what, quote(name))
			}
		}
	}
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindOf describes n's type for messages.
func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return kindName(n.ShortTag())
	default:
		return "an unsupported value"
	}
}

// label is "secret NAME", with NAME quoted (or not shown) when it is not a
// valid name.
func label(kind, name string) string {
	if len(name) <= 64 && (varName.MatchString(name) || envName.MatchString(name) || targetName.MatchString(name)) {
		return kind + " " + name
	}
	return kind + " " + quote(name)
}

// errMsg is the message of a *rekey.Error without its cause.
func errMsg(err error) string {
	var re *rekey.Error
	if errors.As(err, &re) {
		return re.Msg
	}
	return "invalid"
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
