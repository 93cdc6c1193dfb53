package config

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file keeps comments across a rewrite of rekey.yaml: the comment
// blocks at the end of a secret's mapping, before a top-level section and
// after the last one (where `rekey init` writes its ready-to-uncomment
// stanzas and their notes, and where a reader most often notes something)
// are put back by MarshalWith; any other comment is counted, so that the
// caller can say it is lost.

// Comments are comment blocks Marshal places: at the end of a secret's
// mapping (Secrets, by the secret's name), before a top-level section
// (Before, by its key: services, checks...) and at the end of the file
// (Trailer). A line is a comment ("# ..."), or empty; a secret's lines are
// written at the indentation of the secret's keys, the others unindented.
type Comments struct {
	Secrets map[string][]string
	Before  map[string][]string
	Trailer []string
}

// IsZero reports whether there is no comment.
func (c Comments) IsZero() bool {
	return len(c.Secrets) == 0 && len(c.Before) == 0 && len(c.Trailer) == 0
}

// checkComments refuses a comment line that is not a comment.
func checkComments(cm Comments) error {
	check := func(ls []string) error {
		for _, l := range ls {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") || strings.ContainsAny(l, "\n\r") {
				return fmt.Errorf("config: comment line %q is not a comment", l)
			}
		}
		return nil
	}
	for _, m := range []map[string][]string{cm.Secrets, cm.Before} {
		for _, b := range m {
			if err := check(b); err != nil {
				return err
			}
		}
	}
	return check(cm.Trailer)
}

// KeptComments returns the comment blocks of a rekey.yaml's text that
// MarshalWith writes back (see Comments) and the number of its other
// comment lines, which a rewrite loses (Marshal's own header is neither);
// a comment at the end of a line of YAML counts as lost too.
func KeptComments(text []byte) (Comments, int) {
	var cm Comments
	lines := strings.Split(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n")
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return cm, countComments(lines, nil)
	}
	root := doc.Content[0]
	kept := map[int]bool{} // 0-based indexes of the lines kept
	for i, h := range strings.Split(strings.TrimSuffix(header, "\n"), "\n") {
		if i < len(lines) && lines[i] == h {
			kept[i] = true
		}
	}
	trailer := cm.trailer(lines, kept)
	before := func(path string, k *yaml.Node, stop int) {
		if b := blockAbove(lines, k.Line-1, k.Column-1, stop, kept); len(b) > 0 {
			if cm.Before == nil {
				cm.Before = map[string][]string{}
			}
			cm.Before[path] = b
		}
	}
	for i := 0; i < len(root.Content); i += 2 {
		before(root.Content[i].Value, root.Content[i], -1)
	}
	rootKeys := keyLines(root)
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "secrets" || root.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		sec := root.Content[i+1]
		end := trailer // 0-based bound of the section
		for _, l := range rootKeys {
			if l-1 > root.Content[i].Line-1 && l-1 < end {
				end = l - 1
			}
		}
		for j := 0; j+1 < len(sec.Content); j += 2 {
			k, v := sec.Content[j], sec.Content[j+1]
			if v.Kind == yaml.MappingNode {
				for c := 0; c < len(v.Content); c += 2 {
					before("secrets."+k.Value+"."+v.Content[c].Value, v.Content[c], k.Line-1)
				}
			}
			bound := end
			if j+2 < len(sec.Content) {
				bound = sec.Content[j+2].Line - 1
			}
			cm.secretEnd(lines, k, v, bound, kept)
		}
	}
	return cm, countComments(lines, kept) + lineComments(&doc)
}

// trailer reads the trailer: from the first unindented comment after the
// last line of YAML to the end. It returns the index of its first line.
func (cm *Comments) trailer(lines []string, kept map[int]bool) int {
	last := -1
	for i, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			last = i
		}
	}
	trailer := len(lines)
	for i := last + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "#") {
			trailer = i
			break
		}
	}
	for i := trailer; i < len(lines); i++ {
		cm.Trailer = append(cm.Trailer, strings.TrimRight(lines[i], " \t"))
		kept[i] = true
	}
	cm.Trailer = trimBlank(cm.Trailer)
	return trailer
}

// secretEnd reads the block that ends secret k (value v) before line
// bound: the comments indented deeper than its name after its last line
// of YAML.
func (cm *Comments) secretEnd(lines []string, k, v *yaml.Node, bound int, kept map[int]bool) {
	block := secretBlock(lines, k.Line-1, bound, k.Column-1)
	if len(block) == 0 {
		return
	}
	for _, n := range block {
		kept[n] = true
	}
	indent := v.Column - 1
	if v.Kind != yaml.MappingNode || indent <= k.Column-1 {
		indent = k.Column + 1
	}
	var out []string
	for _, n := range block {
		out = append(out, dedent(lines[n], indent))
	}
	if cm.Secrets == nil {
		cm.Secrets = map[string][]string{}
	}
	cm.Secrets[k.Value] = trimBlank(out)
}

// blockAbove returns the comments right above line key (0-based), at its
// column col, blank lines between them included, not going up to line
// stop; dedented. It marks them kept.
func blockAbove(lines []string, key, col, stop int, kept map[int]bool) []string {
	var block []string
	for n := key - 1; n > stop && !kept[n]; n-- {
		t := strings.TrimSpace(lines[n])
		if t != "" && (!strings.HasPrefix(t, "#") || len(lines[n])-len(strings.TrimLeft(lines[n], " ")) != col) {
			break
		}
		block = append([]string{dedent(lines[n], col)}, block...)
		if t != "" {
			kept[n] = true
		}
	}
	return trimBlank(block)
}

// lineComments counts the lines of YAML that end with a comment.
func lineComments(n *yaml.Node) int {
	seen := map[int]bool{}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.LineComment != "" {
			seen[n.Line] = true
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return len(seen)
}

// secretBlock returns the indexes of the lines of the comment block that
// ends the secret whose name is on line key (0-based), before line bound:
// comment lines indented deeper than keyCol and blank lines, going back
// from bound to the last line of YAML.
func secretBlock(lines []string, key, bound, keyCol int) []int {
	indent := func(l string) int { return len(l) - len(strings.TrimLeft(l, " \t")) }
	n := bound - 1
	// Blank lines and the comments of the next key (no deeper than this one).
	for ; n > key; n-- {
		t := strings.TrimSpace(lines[n])
		if t != "" && (!strings.HasPrefix(t, "#") || indent(lines[n]) > keyCol) {
			break
		}
	}
	var out []int
	for ; n > key; n-- {
		t := strings.TrimSpace(lines[n])
		if t != "" && (!strings.HasPrefix(t, "#") || indent(lines[n]) <= keyCol) {
			break
		}
		out = append(out, n)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	for len(out) > 0 && strings.TrimSpace(lines[out[0]]) == "" {
		out = out[1:]
	}
	return out
}

// keyLines returns the lines (1-based) of the keys of mapping n.
func keyLines(n *yaml.Node) []int {
	var out []int
	for i := 0; i < len(n.Content); i += 2 {
		out = append(out, n.Content[i].Line)
	}
	return out
}

// countComments counts the comment lines whose index is not in kept.
func countComments(lines []string, kept map[int]bool) int {
	n := 0
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") && !kept[i] {
			n++
		}
	}
	return n
}

// dedent removes up to n leading spaces from l.
func dedent(l string, n int) string {
	l = strings.TrimRight(l, " \t")
	i := 0
	for i < n && i < len(l) && l[i] == ' ' {
		i++
	}
	return l[i:]
}

func trimBlank(ls []string) []string {
	for len(ls) > 0 && strings.TrimSpace(ls[0]) == "" {
		ls = ls[1:]
	}
	for len(ls) > 0 && strings.TrimSpace(ls[len(ls)-1]) == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// insertComments puts cm into text, the YAML the encoder wrote (no blank
// line, no comment): each secret's block after its last line, indented
// as its keys, and the trailer at the end after a blank line. A block of a
// secret text does not have is dropped.
func insertComments(text []byte, cm Comments) []byte {
	if cm.IsZero() {
		return text
	}
	lines := bytes.SplitAfter(text, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	after := map[int][]string{} // 0-based line -> lines to insert after it
	before := map[int][]string{}
	var doc yaml.Node
	if yaml.Unmarshal(text, &doc) == nil && len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode {
		root := doc.Content[0]
		for i := 0; i < len(root.Content); i += 2 {
			if b := cm.Before[root.Content[i].Value]; len(b) > 0 {
				before[root.Content[i].Line-1] = b
			}
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != "secrets" || root.Content[i+1].Kind != yaml.MappingNode {
				continue
			}
			end := len(lines)
			if i+2 < len(root.Content) {
				end = root.Content[i+2].Line - 1
			}
			sec := root.Content[i+1]
			for j := 0; j+1 < len(sec.Content); j += 2 {
				if v := sec.Content[j+1]; v.Kind == yaml.MappingNode {
					for c := 0; c < len(v.Content); c += 2 {
						if b := cm.Before["secrets."+sec.Content[j].Value+"."+v.Content[c].Value]; len(b) > 0 {
							before[v.Content[c].Line-1] = indented(b, strings.Repeat(" ", v.Content[c].Column-1))
						}
					}
				}
				block, ok := cm.Secrets[sec.Content[j].Value]
				if !ok || len(block) == 0 {
					continue
				}
				bound := end
				if j+2 < len(sec.Content) {
					bound = sec.Content[j+2].Line - 1
				}
				indent := strings.Repeat(" ", sec.Content[j].Column+1)
				for _, l := range block {
					if strings.TrimSpace(l) == "" {
						after[bound-1] = append(after[bound-1], "")
					} else {
						after[bound-1] = append(after[bound-1], indent+l)
					}
				}
			}
		}
	}
	var out bytes.Buffer
	for i, l := range lines {
		for _, c := range before[i] {
			out.WriteString(c + "\n")
		}
		out.Write(l)
		for _, c := range after[i] {
			out.WriteString(c + "\n")
		}
	}
	if len(cm.Trailer) > 0 {
		out.WriteString("\n")
		for _, l := range cm.Trailer {
			out.WriteString(l + "\n")
		}
	}
	return out.Bytes()
}

// indented is the block b with indent before each line that is not empty.
func indented(b []string, indent string) []string {
	out := make([]string, len(b))
	for i, l := range b {
		if strings.TrimSpace(l) != "" {
			out[i] = indent + l
		}
	}
	return out
}
