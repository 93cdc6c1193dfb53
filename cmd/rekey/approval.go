package main

// rekey acts only on a rekey.yaml approved on this machine, the way direnv
// loads only an .envrc allowed by `direnv allow`. rekey.yaml lives in the
// project folder, which others may write (a shared checkout, a deploy
// folder); what it says is run as the operator (restart commands, command
// checks, hooks, codecs) and decides where values go (http checks, derived
// URLs, database hosts and roles, targets, the master key file). So the
// commands that act on it refuse a rekey.yaml whose exact text the operator
// has not approved with `rekey config trust` (exit 5), before they read a
// key or open the store; the commands that only report keep working.
//
// The approval lives outside the project, where someone who can write the
// project cannot: $XDG_STATE_HOME/rekey/trusted (else
// ~/.local/state/rekey/trusted), one file per rekey.yaml, named by the hex
// SHA-256 of its absolute path, holding a header (rekey-trust v1, the path,
// the SHA-256 of the approved text) and the approved text (for diffs).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/safefile"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// approvalHint is the hint of every refusal of an unapproved rekey.yaml.
const approvalHint = "review it with `rekey config diff`, then `rekey config trust`: rekey runs the commands and sends values where rekey.yaml says"

// approvalMagic is the first line of an approval file.
const approvalMagic = "rekey-trust v1"

// maxApproval bounds what is read of an approval file: a header and a
// rekey.yaml (at most 4 MiB, as config.Parse accepts).
const maxApproval = 4<<20 + 64<<10

// readOnlyCommands may run on a rekey.yaml that is not approved: they only
// report (or, for init and config, check approval themselves). Every other
// command that loads rekey.yaml refuses it unless it is approved as it is.
// `rotate NAME --dry-run` is allowed too (see runRotate).
var readOnlyCommands = map[string]bool{
	"rekey status": true, "rekey history": true, "rekey get": true, "rekey report": true,
	"rekey audit": true, "rekey audit verify": true, "rekey audit anchor": true,
	"rekey doctor": true, "rekey scan": true, "rekey example": true, "rekey demo": true, "rekey demo-app": true,
	"rekey init": true, "rekey config trust": true, "rekey config diff": true,
}

func readOnlyCommand(c *cobra.Command) bool { return readOnlyCommands[c.CommandPath()] }

// stateDir is rekey's folder of per-user state outside any project:
// $XDG_STATE_HOME/rekey, else ~/.local/state/rekey ("" when neither
// XDG_STATE_HOME nor HOME is an absolute path).
func (a *app) stateDir() string {
	if d := a.getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "rekey")
	}
	if h := a.getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "rekey")
	}
	return ""
}

// approval is what `rekey config trust` recorded for one rekey.yaml.
type approval struct {
	file   string   // the approval file
	digest [32]byte // SHA-256 of text
	text   []byte   // the approved rekey.yaml
}

var errNoStateDir = &rekey.Error{Code: rekey.CodeUnsafe,
	Msg:  "cannot tell whether rekey.yaml is approved on this machine: neither XDG_STATE_HOME nor HOME is set",
	Hint: "set HOME (or XDG_STATE_HOME) to a folder of yours, then review rekey.yaml and run `rekey config trust`"}

// approvalFile is where the approval of the rekey.yaml at cfgPath (absolute) is kept.
func (a *app) approvalFile(cfgPath string) (string, error) {
	d := a.stateDir()
	if d == "" {
		return "", errNoStateDir
	}
	h := sha256.Sum256([]byte(cfgPath))
	return filepath.Join(d, "trusted", hex.EncodeToString(h[:])), nil
}

const approvalFileHint = "approvals are your own regular files: move this one away, then review rekey.yaml and run `rekey config trust`"

// checkApprovalDir refuses a folder of approvals that is a symbolic link,
// not a folder, or someone else's. A missing folder is fine.
func checkApprovalDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	refuse := func(why string) error {
		return &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("refusing to use %s for approvals of rekey.yaml: it %s", dir, why), Hint: "it must be a folder of yours: move it away, then review rekey.yaml and run `rekey config trust`"}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return refuse("is a symbolic link")
	}
	if !fi.IsDir() {
		return refuse("is not a folder")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return refuse(fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, os.Geteuid()))
	}
	return nil
}

// readApproval reads the approval of the rekey.yaml at cfgPath: nil when
// there is none; an error (exit 5) when it cannot be trusted (a symbolic
// link, someone else's file, a damaged file).
func (a *app) readApproval(cfgPath string) (*approval, error) {
	file, err := a.approvalFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := checkApprovalDir(filepath.Dir(file)); err != nil {
		return nil, err
	}
	f, err := safefile.OpenFile(file, os.O_RDONLY, 0, approvalFileHint)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxApproval+1))
	if err != nil {
		return nil, err
	}
	ap, why := parseApproval(data, cfgPath)
	if why != "" {
		return nil, &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("the approval of %s (%s) is damaged: %s", textsafe.Quote(cfgPath), file, why), Hint: "review rekey.yaml with `rekey config diff`, then `rekey config trust` approves it anew"}
	}
	ap.file = file
	return ap, nil
}

// parseApproval parses an approval file; why says what is wrong with it.
func parseApproval(data []byte, cfgPath string) (ap *approval, why string) {
	if len(data) > maxApproval {
		return nil, "too large"
	}
	rest := data
	line := func() (string, bool) {
		l, r, ok := bytes.Cut(rest, []byte("\n"))
		rest = r
		return string(l), ok
	}
	if l, ok := line(); !ok || l != approvalMagic {
		return nil, "not a rekey approval (want " + approvalMagic + ")"
	}
	l, ok := line()
	p, err := strconv.Unquote(strings.TrimPrefix(l, "path "))
	if !ok || !strings.HasPrefix(l, "path ") || err != nil {
		return nil, "no path line"
	}
	if p != cfgPath {
		return nil, "it approves another file"
	}
	l, ok = line()
	sum, err := hex.DecodeString(strings.TrimPrefix(l, "sha256 "))
	if !ok || !strings.HasPrefix(l, "sha256 ") || err != nil || len(sum) != sha256.Size {
		return nil, "no sha256 line"
	}
	if l, ok := line(); !ok || l != "" {
		return nil, "no blank line after the header"
	}
	ap = &approval{text: rest}
	copy(ap.digest[:], sum)
	if sha256.Sum256(rest) != ap.digest {
		return nil, "its copy of rekey.yaml does not match its sha256"
	}
	return ap, ""
}

// writeApproval approves text as the rekey.yaml at cfgPath: a 0600 file in
// a 0700 folder, written to a temporary file, synced and renamed over the
// previous approval (a symbolic link there is replaced, never followed).
func (a *app) writeApproval(cfgPath string, text []byte) error {
	file, err := a.approvalFile(cfgPath)
	if err != nil {
		return err
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := checkApprovalDir(dir); err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(text)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\npath %s\nsha256 %s\n\n", approvalMagic, strconv.Quote(cfgPath), hex.EncodeToString(sum[:]))
	b.Write(text)
	tmp, err := os.CreateTemp(dir, ".approval-*") // 0600, O_EXCL
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b.Bytes()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// requireApproval refuses (exit 5) a rekey.yaml that is not approved on
// this machine exactly as it was parsed.
func (a *app) requireApproval(cfg *config.Config) error {
	ap, err := a.readApproval(cfg.Path)
	if err != nil {
		return err
	}
	name := textsafe.Quote(filepath.Base(cfg.Path))
	if ap == nil {
		return &rekey.Error{Code: rekey.CodeUnsafe, Hint: approvalHint,
			Msg: fmt.Sprintf("%s is not approved on this machine yet: rekey acts only on a rekey.yaml you approved with `rekey config trust` (once, and again after every change; `rekey init` approves what it writes)", name)}
	}
	if ap.digest == cfg.Digest {
		return nil
	}
	ch := compareText(ap.text, cfg.Raw)
	return &rekey.Error{Code: rekey.CodeUnsafe, Hint: approvalHint,
		Msg: fmt.Sprintf("%s changed since you approved it (%s)%s", name, ch.summary(), ch.excerpt(6))}
}

// approveWritten approves the rekey.yaml rekey itself just wrote (init,
// master rotate, postgres add-role). A failure is a warning: the file is
// written, and `rekey config trust` approves it.
func (a *app) approveWritten(cfgPath string, text []byte) {
	if err := a.writeApproval(cfgPath, text); err != nil {
		a.warnf("could not record the approval of the %s rekey wrote (%v): review it and run `rekey config trust`", filepath.Base(cfgPath), err)
	}
}

// checkConfigApproved is doctor's config-approved check.
func (d *doctorRun) checkConfigApproved() doctorCheck {
	const check = "config-approved"
	fix := "review it with `rekey config diff`, then run `rekey config trust`"
	ap, err := d.a.readApproval(d.cfg.Path)
	switch {
	case err != nil:
		return fail(check, err.Error(), fix)
	case ap == nil:
		return fail(check, "rekey.yaml is not approved on this machine: rotate, recover, verify, run and every command that acts on it refuse it", fix)
	case ap.digest != d.cfg.Digest:
		return fail(check, "rekey.yaml changed since it was approved ("+compareText(ap.text, d.cfg.Raw).summary()+"): the commands that act on it refuse it", fix)
	}
	return pass(check, "rekey.yaml is approved as it is (sha256 "+shortSum(d.cfg.Digest)+")")
}

func shortSum(s [32]byte) string { return hex.EncodeToString(s[:6]) }

// A lineOp is one line of a line diff: ' ' the same, '-' only in the
// approved text, '+' only in the current one.
type lineOp struct {
	kind       byte
	oldN, newN int    // 1-based line numbers (0 on the side that lacks it)
	text       string // with its "\n" (the last line may lack it)
}

// textChange is the line diff of an approved rekey.yaml and the current one.
type textChange struct {
	ops                []lineOp
	oldPaths, newPaths []string // per line number: the YAML key the line belongs to
	added, removed     int
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

func compareText(oldText, newText []byte) *textChange {
	a, b := splitLines(oldText), splitLines(newText)
	c := &textChange{oldPaths: keyPaths(oldText, len(a)), newPaths: keyPaths(newText, len(b))}
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
			c.removed++
		case '+':
			op.newN, op.text = j+1, b[j]
			j++
			c.added++
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

// summary names the changed lines (of the current text) and the keys they
// belong to: "lines 39-41, 52: services.app.restart; checks.login.http".
// A run of changes that only removes lines is counted ("and 2 removed"),
// or, when nothing was added, named by its lines in the approved copy.
func (c *textChange) summary() string {
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

// excerpt is the first max changed lines that are not blank, one per
// line, each with its line number (of the current text for +, of the
// approved copy for -).
func (c *textChange) excerpt(maxLines int) string {
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

// unified writes the diff as `diff -u` does, with context lines of context.
func (c *textChange) unified(w io.Writer, oldName, newName string, context int) {
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
