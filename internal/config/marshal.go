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
func Marshal(c *Config) ([]byte, error) { return MarshalWith(c, Comments{}) }

// MarshalWith is Marshal with comment blocks: each of cm.Secrets at the end
// of its secret's mapping (a block of a secret c does not have is
// dropped), and cm.Trailer at the end of the file. The comments must keep
// the text valid YAML: each line empty or starting with "#".
func MarshalWith(c *Config, cm Comments) ([]byte, error) {
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
	if err := addDerived(root, c.Derived); err != nil {
		return nil, err
	}
	addNamed(root, "tls", c.TLS, m.tlsCert)
	m.servicesAndChecks(c, root)
	m.notify(c.Notify, root)
	if c.Incident.Stop {
		im := newMap()
		im.add("stop", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		root.add("incident", im)
	}

	path := c.Path
	if path == "" {
		path = filepath.Join(dir, FileName)
	}
	return encode(root, path, cm)
}

// encode writes root as the text of rekey.yaml, and checks that Parse
// reads it back.
func encode(root *mapNode, path string, cm Comments) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root.Node); err != nil {
		return nil, fmt.Errorf("config: encode rekey.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode rekey.yaml: %w", err)
	}
	if err := checkComments(cm); err != nil {
		return nil, err
	}
	out := append([]byte(header), spaceOut(insertComments(buf.Bytes(), cm))...)
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
			switch {
			case t.Remote():
				tm.add("host", strNode(t.Host))
				tm.add("path", strNode(t.Path))
			case t.Type == TargetCommand:
				tm.add("read", flowList(t.Read))
				tm.add("write", flowList(t.Write))
				tm.add("format", strNode(t.Format))
			default:
				tm.add("path", strNode(m.rel(t.Path)))
			}
			targets.add(t.Name, tm)
		}
		em.add("targets", targets)
		if err := addDerived(em, e.Derived); err != nil {
			return nil, err
		}
		envs.add(e.Name, em)
	}
	return envs, nil
}

// tlsCert is the entry of one certificate in tls:.
func (m *marshaler) tlsCert(t TLSCert) (string, *mapNode) {
	cm := newMap()
	if t.File != "" {
		cm.add("file", strNode(m.rel(t.File)))
	} else {
		cm.add("endpoint", strNode(t.Endpoint))
	}
	return t.Name, cm
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
	addList(n, "targets", s.Targets)
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

// addList adds key: [items...] to n when there is any item.
func addList(n *mapNode, key string, items []string) {
	if len(items) > 0 {
		n.add(key, flowList(items))
	}
}

// addNamed adds key: to n when there is any item: a mapping of one entry
// per item, the name and the node entry returns for it, in order.
func addNamed[T any](n *mapNode, key string, items []T, entry func(T) (string, *mapNode)) {
	if len(items) == 0 {
		return
	}
	m := newMap()
	for _, it := range items {
		m.add(entry(it))
	}
	n.add(key, m)
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
	addList(pm, "roles", p.Roles)
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
	addList(rm, "command", r.Command)
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
	addText(rm, "checkpoint_schema", r.CheckpointSchema)
	addText(rm, "pace", r.Pace)
	addText(rm, "probe", r.Probe)
	switch {
	case r.TargetP99 > 0:
		rm.add("target_p99", strNode(r.TargetP99.String()))
	case r.TargetFactor > 0:
		rm.add("target_p99", strNode(strconv.FormatFloat(r.TargetFactor, 'g', -1, 64)+"x"))
	}
	if r.ReplicaLagCeiling > 0 {
		rm.add("replica_lag_ceiling", strNode(rekey.FormatDuration(r.ReplicaLagCeiling)))
	}
	addList(rm, "replicas", r.Replicas)
	return rm
}

// addDerived adds derived: to n when there is any derived value.
func addDerived(n *mapNode, ds []rekey.Derived) error {
	if len(ds) == 0 {
		return nil
	}
	dm := newMap()
	for _, d := range ds {
		if d.Template == nil {
			return fmt.Errorf("config: derived value %s has no template", d.Name)
		}
		dm.add(d.Name, strNode(d.Template.Source()))
	}
	n.add("derived", dm)
	return nil
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
	// The blank line goes above the unindented comments right above a key
	// (the notes MarshalWith puts before a section).
	for i := len(lines); i >= 1; i-- {
		if before[i] && i >= 2 && bytes.HasPrefix(lines[i-2], []byte("#")) {
			before[i] = false
			j := i - 1
			for j >= 2 && bytes.HasPrefix(lines[j-2], []byte("#")) {
				j--
			}
			before[j] = true
		}
	}
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
