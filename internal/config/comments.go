package config

import (
	"bytes"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file keeps comments across a rewrite of rekey.yaml: the comment
// blocks at the end of a secret's mapping and after the last section (where
// `rekey init` writes its ready-to-uncomment stanzas, and where a reader
// most often notes something) are put back by MarshalWith; any other
// comment is counted, so that the caller can say it is lost.

// Comments are comment blocks Marshal places: at the end of a secret's
// mapping (Secrets, by the secret's name) and at the end of the file
// (Trailer). A line is a comment ("# ..."), or empty; a secret's lines are
// written at the indentation of the secret's keys, the trailer's as they
// are.
type Comments struct {
	Secrets map[string][]string
	Trailer []string
}

// IsZero reports whether there is no comment.
func (c Comments) IsZero() bool { return len(c.Secrets) == 0 && len(c.Trailer) == 0 }

// KeptComments returns the comment blocks of a rekey.yaml's text that
// MarshalWith writes back (see Comments) and the number of its other
// comment lines, which a rewrite loses (Marshal's own header is neither).
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
	// The trailer: from the first unindented comment after the last line
	// of YAML to the end.
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

	// The end of each secret's mapping: the comments indented deeper than
	// its name after its last line of YAML.
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
			k := sec.Content[j]
			bound := end
			if j+2 < len(sec.Content) {
				bound = sec.Content[j+2].Line - 1
			}
			block := secretBlock(lines, k.Line-1, bound, k.Column-1)
			for _, n := range block {
				kept[n] = true
			}
			if len(block) > 0 {
				if cm.Secrets == nil {
					cm.Secrets = map[string][]string{}
				}
				indent := sec.Content[j+1].Column - 1
				if sec.Content[j+1].Kind != yaml.MappingNode || indent <= k.Column-1 {
					indent = k.Column + 1
				}
				var out []string
				for _, n := range block {
					out = append(out, dedent(lines[n], indent))
				}
				cm.Secrets[k.Value] = trimBlank(out)
			}
		}
	}
	return cm, countComments(lines, kept)
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
	var doc yaml.Node
	if len(cm.Secrets) > 0 && yaml.Unmarshal(text, &doc) == nil && len(doc.Content) > 0 {
		root := doc.Content[0]
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
