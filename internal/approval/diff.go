package approval

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rekeyhq/rekey/internal/textsafe"
	"gopkg.in/yaml.v3"
)

// A lineOp is one line of a line diff: ' ' the same, '-' only in the
// approved text, '+' only in the current one.
type lineOp struct {
	kind       byte
	oldN, newN int    // 1-based line numbers (0 on the side that lacks it)
	text       string // with its "\n" (the last line may lack it)
}

// Change is the line diff of an approved rekey.yaml and the current one.
type Change struct {
	Added, Removed     int // lines
	ops                []lineOp
	oldPaths, newPaths []string // per line number: the YAML key the line belongs to
}

// splitLines splits text after every "\n": joined, the lines are text.
func splitLines(text []byte) []string {
	var out []string
	for len(text) > 0 {
		i := bytes.IndexByte(text, '\n')
		if i < 0 {
			out = append(out, string(text))
			break
		}
		out = append(out, string(text[:i+1]))
		text = text[i+1:]
	}
	return out
}

// maxDiffCells bounds the LCS table; beyond it the differing middle of
// the two texts is shown as removed and added whole.
const maxDiffCells = 1 << 22

// CountLines is the number of lines of text (a last line without its
// newline counts).
func CountLines(text []byte) int { return len(splitLines(text)) }

// Compare is the line diff of the approved text oldText and the current newText.
func Compare(oldText, newText []byte) *Change {
	a, b := splitLines(oldText), splitLines(newText)
	c := &Change{oldPaths: keyPaths(oldText, len(a)), newPaths: keyPaths(newText, len(b))}
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	i, j := 0, 0
	emit := func(kind byte) {
		op := lineOp{kind: kind}
		switch kind {
		case ' ':
			op.oldN, op.newN, op.text = i+1, j+1, a[i]
			i, j = i+1, j+1
		case '-':
			op.oldN, op.text = i+1, a[i]
			i++
			c.Removed++
		case '+':
			op.newN, op.text = j+1, b[j]
			j++
			c.Added++
		}
		c.ops = append(c.ops, op)
	}
	for i < p {
		emit(' ')
	}
	am, bm := a[p:len(a)-s], b[p:len(b)-s]
	n, m := len(am), len(bm)
	if n > 0 && m > 0 && (n+1)*(m+1) <= maxDiffCells {
		// lcs[x*(m+1)+y] is the length of the longest common subsequence of am[x:] and bm[y:].
		lcs := make([]int32, (n+1)*(m+1))
		for x := n - 1; x >= 0; x-- {
			for y := m - 1; y >= 0; y-- {
				if am[x] == bm[y] {
					lcs[x*(m+1)+y] = lcs[(x+1)*(m+1)+y+1] + 1
				} else {
					lcs[x*(m+1)+y] = max(lcs[(x+1)*(m+1)+y], lcs[x*(m+1)+y+1])
				}
			}
		}
		x, y := 0, 0
		for x < n || y < m {
			switch {
			case x < n && y < m && am[x] == bm[y]:
				emit(' ')
				x, y = x+1, y+1
			case y == m || (x < n && lcs[(x+1)*(m+1)+y] >= lcs[x*(m+1)+y+1]):
				emit('-')
				x++
			default:
				emit('+')
				y++
			}
		}
	} else {
		for range n {
			emit('-')
		}
		for range m {
			emit('+')
		}
	}
	for i < len(a) {
		emit(' ')
	}
	return c
}

// keyPaths maps each line number (1-based) of a YAML text to the dotted
// path of the deepest block-style key whose entry spans it
// ("services.app.restart"); a flow-style value ({url: …}) counts as its
// key's line. Nil when the text does not parse.
func keyPaths(text []byte, lines int) []string {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	out := make([]string, lines+2)
	walkKeyPaths(doc.Content[0], "", lines, out)
	return out
}

func walkKeyPaths(n *yaml.Node, prefix string, end int, out []string) {
	if n.Style&yaml.FlowStyle != 0 {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			last := end
			if i+2 < len(n.Content) {
				last = n.Content[i+2].Line - 1
			}
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			for l := max(k.Line, 0); l <= last && l < len(out); l++ {
				out[l] = p
			}
			walkKeyPaths(v, p, last, out)
		}
	case yaml.SequenceNode:
		for i, it := range n.Content {
			last := end
			if i+1 < len(n.Content) {
				last = n.Content[i+1].Line - 1
			}
			walkKeyPaths(it, prefix, last, out)
		}
	}
}

// blankOrComment reports whether a YAML line is blank or only a comment.
func blankOrComment(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || strings.HasPrefix(t, "#")
}

func pathAt(paths []string, n int) string {
	if n > 0 && n < len(paths) {
		return paths[n]
	}
	return ""
}

// Summary names the changed lines (of the current text) and the keys they
// belong to: "lines 39-41, 52: services.app.restart; checks.login.http".
// A run of changes that only removes lines is counted ("and 2 removed"),
// or, when nothing was added, named by its lines in the approved copy.
func (c *Change) Summary() string {
	var ranges, removedAt []string
	removed := 0
	var paths []string
	seen := map[string]bool{}
	span := func(a, b int) string {
		if a == b {
			return strconv.Itoa(a)
		}
		return fmt.Sprintf("%d-%d", a, b)
	}
	for i := 0; i < len(c.ops); {
		if c.ops[i].kind == ' ' {
			i++
			continue
		}
		// One run of changes: [i, k).
		k := i
		firstNew, lastNew, firstOld, lastOld, dels := 0, 0, 0, 0, 0
		for ; k < len(c.ops) && c.ops[k].kind != ' '; k++ {
			op := c.ops[k]
			p := ""
			if op.kind == '+' {
				if firstNew == 0 {
					firstNew = op.newN
				}
				lastNew = op.newN
				p = pathAt(c.newPaths, op.newN)
			} else {
				if firstOld == 0 {
					firstOld = op.oldN
				}
				lastOld = op.oldN
				dels++
				p = pathAt(c.oldPaths, op.oldN)
			}
			if blankOrComment(op.text) {
				p = "" // changes nothing rekey does: no key to name
			}
			if p != "" && !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
		if firstNew != 0 {
			ranges = append(ranges, span(firstNew, lastNew))
		} else {
			removed += dels
			removedAt = append(removedAt, span(firstOld, lastOld))
		}
		i = k
	}
	// Name the keys, not their parents: services.app.restart, not also
	// services and services.app.
	kept := paths[:0]
	for _, p := range paths {
		parent := false
		for q := range seen {
			parent = parent || strings.HasPrefix(q, p+".")
		}
		if !parent {
			kept = append(kept, textsafe.Quote(p))
		}
	}
	paths = kept
	var where string
	switch {
	case len(ranges) > 0:
		where = "line " + ranges[0]
		if len(ranges) > 1 || strings.Contains(ranges[0], "-") {
			where = "lines " + strings.Join(ranges, ", ")
		}
		if removed > 0 {
			where += fmt.Sprintf(", and %d removed", removed)
		}
	case removed == 1:
		where = "line " + removedAt[0] + " of the approved copy removed"
	default:
		where = "lines " + strings.Join(removedAt, ", ") + " of the approved copy removed"
	}
	if len(paths) == 0 {
		return where
	}
	const maxPaths = 5
	if len(paths) > maxPaths {
		paths = append(paths[:maxPaths], fmt.Sprintf("%d more", len(paths)-maxPaths))
	}
	return where + ": " + strings.Join(paths, "; ")
}

// displayLine is a diff line as printed: without its newline, quoted when
// it holds a control character, cut at limit runes (0: no limit).
func displayLine(text string, limit int) string {
	s := strings.TrimSuffix(text, "\n")
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		r := []rune(s)
		s = string(r[:limit]) + "…"
	}
	return textsafe.Quote(s)
}

// Excerpt is the first maxLines changed lines that are not blank, one per
// line, each with its line number (of the current text for +, of the
// approved copy for -).
func (c *Change) Excerpt(maxLines int) string {
	var b strings.Builder
	shown, total := 0, 0
	for _, op := range c.ops {
		if op.kind == ' ' {
			continue
		}
		total++
		if shown == maxLines || strings.TrimSpace(op.text) == "" {
			continue
		}
		shown++
		n := op.newN
		if op.kind == '-' {
			n = op.oldN
		}
		fmt.Fprintf(&b, "\n  %c%5d  %s", op.kind, n, displayLine(op.text, 100))
	}
	if total > shown {
		fmt.Fprintf(&b, "\n  … %d more changed lines (`rekey config diff` shows them all)", total-shown)
	}
	return b.String()
}

// Unified writes the diff as `diff -u` does, with context lines of context.
func (c *Change) Unified(w io.Writer, oldName, newName string, context int) {
	fmt.Fprintf(w, "--- %s\n+++ %s\n", oldName, newName)
	ops := c.ops
	oldBefore := make([]int, len(ops)+1) // old lines before ops[i]
	newBefore := make([]int, len(ops)+1)
	for i, op := range ops {
		oldBefore[i+1], newBefore[i+1] = oldBefore[i], newBefore[i]
		if op.kind != '+' {
			oldBefore[i+1]++
		}
		if op.kind != '-' {
			newBefore[i+1]++
		}
	}
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-context)
		end := i // one past the last change of the hunk
		for k := i; k < len(ops); k++ {
			if ops[k].kind != ' ' {
				end = k + 1
			} else if k-end >= 2*context {
				break
			}
		}
		stop := min(len(ops), end+context)
		ol, nl := oldBefore[stop]-oldBefore[start], newBefore[stop]-newBefore[start]
		oStart, nStart := oldBefore[start]+1, newBefore[start]+1
		if ol == 0 {
			oStart--
		}
		if nl == 0 {
			nStart--
		}
		fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@\n", oStart, ol, nStart, nl)
		for _, op := range ops[start:stop] {
			fmt.Fprintf(w, "%c%s\n", op.kind, displayLine(op.text, 0))
			if !strings.HasSuffix(op.text, "\n") {
				fmt.Fprintf(w, "\\ No newline at end of file\n")
			}
		}
		i = stop
	}
}
