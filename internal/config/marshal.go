package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

const header = `# rekey.yaml — the inventory of secrets rekey manages for this project.
# It names the secrets, how they rotate and where they are published; it
# holds no secret values. Paths are relative to this file's folder.
`

// Marshal returns the text of c as rekey.yaml: a header comment, then
// version, store, environments, secrets and derived, with paths relative to
// c.Dir when inside it (or to ~ when inside the home folder), and periods
// in days when they are whole days. Defaults are written out, except the
// postgres changed_by: self and strategy: single.
//
// The result is checked by parsing it: Marshal returns an error rather
// than text that Parse would reject. For a Config returned by Parse,
// Parse(c.Path, Marshal(c)) equals c except for line numbers.
func Marshal(c *Config) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("config: Marshal of a nil Config")
	}
	if c.Version != 0 && c.Version != 1 {
		return nil, fmt.Errorf("config: cannot write version %d", c.Version)
	}
	dir := c.Dir
	if dir == "" && c.Path != "" {
		dir = filepath.Dir(c.Path)
	}
	m := &marshaler{dir: dir}
	if h, err := os.UserHomeDir(); err == nil {
		m.home = h
	}

	root := newMap()
	root.add("version", intNode(1))
	root.add("store", m.store(c.Store))
	envs, err := m.environments(c.Environments)
	if err != nil {
		return nil, err
	}
	root.add("environments", envs)
	secrets := newMap()
	for _, s := range c.Secrets {
		secrets.add(s.Name, m.secret(s))
	}
	root.add("secrets", secrets)
	if len(c.Derived) > 0 {
		dm, err := derivedNode(c.Derived)
		if err != nil {
			return nil, err
		}
		root.add("derived", dm)
	}
	if len(c.TLS) > 0 {
		root.add("tls", m.tls(c.TLS))
	}
	m.servicesAndChecks(c, root)

	path := c.Path
	if path == "" {
		path = filepath.Join(dir, FileName)
	}
	return encode(root, path)
}

// encode writes root as the text of rekey.yaml, and checks that Parse
// reads it back.
func encode(root *mapNode, path string) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root.Node); err != nil {
		return nil, fmt.Errorf("config: encode rekey.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode rekey.yaml: %w", err)
	}
	out := append([]byte(header), spaceOut(buf.Bytes())...)
	if _, err := Parse(path, out); err != nil {
		return nil, fmt.Errorf("config: the Config does not make a valid rekey.yaml: %w", err)
	}
	return out, nil
}

type marshaler struct {
	dir, home string
}

// rel writes p relative to the file's folder when inside it, relative to ~
// when inside the home folder, else as is.
func (m *marshaler) rel(p string) string {
	if r, ok := within(m.dir, p); ok {
		if r == "~" || strings.HasPrefix(r, "~/") {
			r = "./" + r // not the home folder
		}
		return r
	}
	if r, ok := within(m.home, p); ok {
		if r == "." {
			return "~"
		}
		return "~/" + r
	}
	return p
}

// within returns p relative to dir, with slashes, when p is inside dir.
func within(dir, p string) (string, bool) {
	if dir == "" || !filepath.IsAbs(p) {
		return "", false
	}
	r, err := filepath.Rel(dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

func (m *marshaler) store(st Store) *mapNode {
	store := newMap()
	if st.Path == "" {
		store.add("path", strNode(DefaultStorePath))
	} else {
		store.add("path", strNode(m.rel(st.Path)))
	}
	mk := st.MasterKey
	switch {
	case mk == "":
		mk = MasterKeyEnv
	case strings.HasPrefix(mk, MasterKeyFile):
		mk = MasterKeyFile + m.rel(strings.TrimPrefix(mk, MasterKeyFile))
	}
	store.add("master_key", strNode(mk))
	store.add("keep_versions", intNode(st.KeepVersions))
	return store
}

func (m *marshaler) environments(es []Environment) (*mapNode, error) {
	envs := newMap()
	for _, e := range es {
		em := newMap()
		targets := newMap()
		for _, t := range e.Targets {
			tm := newFlowMap()
			typ := t.Type
			if typ == "" {
				typ = TargetDotenv
			}
			tm.add("type", strNode(typ))
			tm.add("path", strNode(m.rel(t.Path)))
			targets.add(t.Name, tm)
		}
		em.add("targets", targets)
		if len(e.Derived) > 0 {
			dm, err := derivedNode(e.Derived)
			if err != nil {
				return nil, err
			}
			em.add("derived", dm)
		}
		envs.add(e.Name, em)
	}
	return envs, nil
}

func (m *marshaler) tls(certs []TLSCert) *mapNode {
	tm := newMap()
	for _, t := range certs {
		cm := newMap()
		if t.File != "" {
			cm.add("file", strNode(m.rel(t.File)))
		} else {
			cm.add("endpoint", strNode(t.Endpoint))
		}
		tm.add(t.Name, cm)
	}
	return tm
}

func (m *marshaler) secret(s rekey.Spec) *mapNode {
	n := newMap()
	if s.Purpose != "" {
		n.add("purpose", strNode(s.Purpose))
	}
	n.add("kind", strNode(string(s.Kind)))
	if s.Kind != rekey.KindManual {
		n.add("generator", generatorNode(s.Generator))
	}
	if s.Period != 0 {
		key := "rotate_every"
		if s.Kind == rekey.KindManual {
			key = "remind_every"
		}
		n.add(key, strNode(rekey.FormatDuration(s.Period)))
	}
	addText(n, "storage", s.Storage)
	addText(n, "encryption", s.Encryption)
	addText(n, "access", s.Access)
	if len(s.Targets) > 0 {
		n.add("targets", flowList(s.Targets))
	}
	if p := s.Postgres; p != nil && s.Kind == rekey.KindPostgresPassword {
		if pm := postgresNode(p); len(pm.Content) > 0 {
			n.add("postgres", pm)
		}
	}
	if ss := s.Sessions; ss != nil && s.Kind == rekey.KindGenerated {
		n.add("sessions", sessionsNode(ss))
	}
	if r := s.Reencrypt; r != nil && s.Kind == rekey.KindDataKey {
		n.add("reencrypt", reencryptNode(r))
	}
	return n
}

// addText adds key: v to n when v is not empty.
func addText(n *mapNode, key, v string) {
	if v != "" {
		n.add(key, strNode(v))
	}
}

func generatorNode(gen rekey.Generator) *mapNode {
	g := newFlowMap()
	bytes, enc := gen.Bytes, gen.Encoding
	if bytes == 0 {
		bytes = 32
	}
	if enc == "" {
		enc = rekey.EncBase64
	}
	g.add("bytes", intNode(bytes))
	g.add("encoding", strNode(string(enc)))
	return g
}

func postgresNode(p *rekey.PostgresSpec) *mapNode {
	pm := newMap()
	addText(pm, "url_from", p.URLFrom)
	addText(pm, "host", p.Host)
	if p.Port != 0 {
		pm.add("port", intNode(p.Port))
	}
	addText(pm, "database", p.Database)
	addText(pm, "role", p.Role)
	addText(pm, "sslmode", p.SSLMode)
	if p.ChangedBy != "self" {
		addText(pm, "changed_by", p.ChangedBy)
	}
	addText(pm, "admin_secret", p.AdminSecret)
	if p.Strategy != "single" {
		addText(pm, "strategy", p.Strategy)
	}
	if len(p.Roles) > 0 {
		pm.add("roles", flowList(p.Roles))
	}
	addDuration(pm, "grace", p.Grace, 0)
	return pm
}

func sessionsNode(ss *rekey.SessionsSpec) *mapNode {
	sm := newMap()
	sm.add("mode", strNode(ss.Mode))
	addDuration(sm, "grace", ss.Grace, 0)
	addText(sm, "previous_key", ss.PreviousKey)
	if len(ss.OnRotate) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, h := range ss.OnRotate {
			hm := newMap()
			if h.SQL != "" {
				hm.add("sql", strNode(h.SQL))
				hm.add("database", strNode(h.Database))
			} else {
				hm.add("command", flowList(h.Command))
			}
			if h.Timeout != 0 {
				addDuration(hm, "timeout", h.Timeout, DefaultHookTimeout)
			}
			seq.Content = append(seq.Content, hm.Node)
		}
		sm.add("on_rotate", seq)
	}
	return sm
}

func reencryptNode(r *rekey.ReencryptSpec) *mapNode {
	rm := newMap()
	rm.add("database", strNode(r.Database))
	rm.add("codec", strNode(r.Codec))
	rm.add("encoding", strNode(r.Encoding))
	rm.add("columns", flowList(r.Columns))
	if len(r.Command) > 0 {
		rm.add("command", flowList(r.Command))
	}
	if r.KeyID {
		rm.add("key_id", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if r.BatchSize != 0 {
		rm.add("batch_size", intNode(r.BatchSize))
	}
	if r.RowsPerSecond != 0 {
		rm.add("rows_per_second", intNode(r.RowsPerSecond))
	}
	if r.Mode != "" && r.Mode != rekey.ReencryptOnline {
		rm.add("mode", strNode(r.Mode))
	}
	addText(rm, "previous_key", r.PreviousKey)
	return rm
}

func derivedNode(ds []rekey.Derived) (*mapNode, error) {
	n := newMap()
	for _, d := range ds {
		if d.Template == nil {
			return nil, fmt.Errorf("config: derived value %s has no template", d.Name)
		}
		n.add(d.Name, strNode(d.Template.Source()))
	}
	return n, nil
}

// spaceOut puts a blank line between the top-level sections, between the
// environments and between the secrets. It finds them by parsing the text,
// so it never touches the inside of a value.
func spaceOut(text []byte) []byte {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || len(doc.Content) == 0 {
		return text
	}
	root := doc.Content[0]
	before := map[int]bool{}
	keys := func(n *yaml.Node) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 2; i < len(n.Content); i += 2 {
			before[n.Content[i].Line] = true
		}
	}
	keys(root)
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "environments", "secrets":
			keys(root.Content[i+1])
		}
	}
	lines := bytes.SplitAfter(text, []byte("\n"))
	var out bytes.Buffer
	for i, l := range lines {
		if before[i+1] {
			out.WriteByte('\n')
		}
		out.Write(l)
	}
	return out.Bytes()
}

// Node builders.

type mapNode struct{ *yaml.Node }

func newMap() *mapNode { return &mapNode{&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}} }

func newFlowMap() *mapNode {
	n := newMap()
	n.Style = yaml.FlowStyle
	return n
}

func (m *mapNode) add(key string, v any) {
	var vn *yaml.Node
	switch v := v.(type) {
	case *mapNode:
		vn = v.Node
	case *yaml.Node:
		vn = v
	}
	m.Content = append(m.Content, strNode(key), vn)
}

// strNode is a string scalar; the encoder quotes it when it would otherwise
// read back as another type. Multi-line strings are double-quoted, so that
// the output has no block scalars (spaceOut relies on this only for looks).
func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.ContainsAny(s, "\n\r") {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func flowList(items []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, s := range items {
		n.Content = append(n.Content, strNode(s))
	}
	return n
}
