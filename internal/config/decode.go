package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
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

// decodeRequired is decode for a mapping in which key must be set: when it
// is missing, that is reported at v (with hint) as "WHAT has no KEY". It
// reports whether v is a mapping that sets key.
func (d *decoder) decodeRequired(v *yaml.Node, s section, key, hint string) bool {
	seen, ok := d.decode(v, s)
	if !ok {
		return false
	}
	if seen[key] == nil {
		d.missing(v, v, hint, "%s has no %s", s.what, key)
		return false
	}
	return true
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

// someEntries is entries for a mapping that needs at least one entry: an
// empty one is reported at its key k. It reports whether v is a mapping.
func (d *decoder) someEntries(k, v *yaml.Node, item, what, hint string, fn func(k, v *yaml.Node)) bool {
	n, ok := d.entries(v, item, what, fn)
	if ok && n == 0 {
		d.fail(k, hint, "%s is empty", what)
	}
	return ok
}

// named decodes a mapping of named entries (services, checks) with one,
// keeping the entries one accepts, in file order.
func named[T any](d *decoder, v *yaml.Node, item, what string, one func(k, v *yaml.Node) (T, bool)) []T {
	var out []T
	d.entries(v, item, what, func(k, v *yaml.Node) {
		if x, ok := one(k, v); ok {
			out = append(out, x)
		}
	})
	return out
}

// parseTemplate parses the text of the scalar v as a template; subject
// names it in the error, which never quotes the text (it might be a value
// pasted by mistake).
func (d *decoder) parseTemplate(v *yaml.Node, subject string) *rekey.Template {
	t, err := rekey.ParseTemplate(v.Value)
	if err != nil {
		hint := rekey.ErrorHint(err)
		if hint == "" {
			hint = "write {{ NAME }} or {{ NAME | urlquery }}"
		}
		d.fail(v, hint, "%s: %s", subject, errMsg(err))
		return nil
	}
	return t
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

// intIn returns a field decoder storing in *dst a whole number from lo to
// hi; null keeps *dst.
func (d *decoder) intIn(dst *int, what, example string, lo, hi int, hint string) func(k, v *yaml.Node) {
	return func(k, v *yaml.Node) {
		n, ok := d.integer(v, what, example)
		if !ok || isNull(v) {
			return
		}
		if n < lo || n > hi {
			d.fail(v, hint, "%s must be between %d and %d", what, lo, hi)
			return
		}
		*dst = n
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
		d.fail(n, rekey.DurationHint, "%s must be a duration such as 90d, not %s", what, kindOf(n))
		return 0, false
	}
	v, err := rekey.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, rekey.DurationHint, "%s: %s", what, errMsg(err))
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
