package scan

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Where a finding was found.
const (
	WhereWorktree    = "worktree"    // a file under the scanned directory
	WhereIndex       = "index"       // a blob staged in the git index
	WhereCommit      = "commit"      // a blob introduced by a commit reachable from a ref or reflog
	WhereStash       = "stash"       // a blob introduced by a stash entry (its worktree, index or untracked commit)
	WhereUnreachable = "unreachable" // a blob in the object store reachable from no ref, reflog, stash or the index
)

// Finding is one occurrence of a managed secret, or a match of a pattern
// rule (Rule set; Secret, Env, Version and Fingerprint empty). It never holds
// the value or an encoded form of it; Redacted shows at most the first 4
// characters of the matched text. Its JSON (rekey scan --report-format
// json) has snake_case keys and no zero-valued field but current.
type Finding struct {
	Rule        string `json:"rule,omitempty"`   // the pattern rule's id, for a secret rekey does not manage
	Secret      string `json:"secret,omitempty"` // the secret's name
	Env         string `json:"environment,omitempty"`
	Version     int    `json:"version,omitempty"`
	Current     bool   `json:"current"`
	Fingerprint string `json:"fingerprint,omitempty"`

	Encoding string `json:"encoding,omitempty"` // raw | base64 | base64url | hex | url | json, "-wrapped" when split across lines
	Where    string `json:"where"`              // worktree | index | commit | stash | unreachable

	Commit     string    `json:"commit,omitempty"`     // commit that introduced the line (commit, stash); empty otherwise
	Author     string    `json:"author,omitempty"`     // author name of Commit
	Email      string    `json:"email,omitempty"`      // author email of Commit
	AuthorDate time.Time `json:"author_date,omitzero"` // author date of Commit
	Message    string    `json:"message,omitempty"`    // message of Commit
	Blob       string    `json:"blob,omitempty"`       // git object id of the blob (index, commit, stash, unreachable)
	Path       string    `json:"path,omitempty"`       // slash-separated, relative to the repository/dir root; empty for unreachable
	Line       int       `json:"line,omitempty"`       // 1-based line of the match's start
	Column     int       `json:"column,omitempty"`     // 1-based byte column of the match's start
	EndLine    int       `json:"end_line,omitempty"`   // 1-based line of the match's last byte
	EndColumn  int       `json:"end_column,omitempty"` // 1-based byte column of the match's last byte

	Redacted string `json:"redacted,omitempty"` // e.g. "c2Vj…(88 chars)"
	ID       string `json:"id,omitempty"`       // FindingID, set by the caller

	pending  []*Allowlist // allowlists to judge on the location (rules)
	fragLine int          // first line of the gitleaks fragment (diff hunk) holding it; 0: 1
	entropy  float32      // Shannon entropy of the secret (rules), for the gitleaks report
}

// redact previews matched text: at most 4 leading characters, and no more
// than an eighth of it, followed by its length.
func redact(match []byte) string {
	n := min(4, len(match)/8)
	return fmt.Sprintf("%s…(%d chars)", match[:n], len(match))
}

// positions returns the 1-based line and column of the first and of the
// last byte of each match (offsets ascending).
func positions(data []byte, ms []Match) (lines, cols, endLines, endCols []int) {
	lines, cols = make([]int, len(ms)), make([]int, len(ms))
	endLines, endCols = make([]int, len(ms)), make([]int, len(ms))
	line, lineStart, pos := 1, 0, 0
	for i, m := range ms {
		for pos < m.Offset {
			j := bytes.IndexByte(data[pos:m.Offset], '\n')
			if j < 0 {
				pos = m.Offset
				break
			}
			line++
			pos += j + 1
			lineStart = pos
		}
		lines[i] = line
		cols[i] = m.Offset - lineStart + 1
		last := m.Offset + max(m.Len, 1) - 1
		el, els := line, lineStart
		if last < len(data) {
			if n := bytes.Count(data[m.Offset:last], []byte{'\n'}); n > 0 {
				el += n
				els = m.Offset + bytes.LastIndexByte(data[m.Offset:last], '\n') + 1
			}
		}
		endLines[i], endCols[i] = el, last-els+1
	}
	return lines, cols, endLines, endCols
}

// findings turns the matches in data into findings sharing base's location fields.
func (m *Matcher) findings(data []byte, ms []Match, base Finding) []Finding {
	lines, cols, endLines, endCols := positions(data, ms)
	out := make([]Finding, 0, len(ms))
	for i, mt := range ms {
		s := m.secrets[mt.SecretIndex]
		f := base
		f.Secret, f.Env, f.Version, f.Current, f.Fingerprint = s.Name, s.Env, s.Version, s.Current, s.Fingerprint
		f.Encoding = mt.Encoding
		f.Line, f.Column, f.EndLine, f.EndColumn = lines[i], cols[i], endLines[i], endCols[i]
		f.Redacted = redact(data[mt.Offset : mt.Offset+mt.Len])
		out = append(out, f)
	}
	return out
}

// ScanDir scans every regular file under dir (not following symbolic links,
// skipping .git directories) and returns worktree findings. A file larger
// than a few MiB is read and scanned in overlapping windows, so memory stays
// bounded whatever the file's size. ignore, if not
// nil, receives slash-separated paths relative to dir; returning true skips
// the file (or, for a directory, its whole subtree).
func ScanDir(ctx context.Context, dir string, m *Matcher, ignore func(string) bool) ([]Finding, error) {
	var out []Finding
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" || (ignore != nil && ignore(rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || (ignore != nil && ignore(rel)) {
			return nil
		}
		fs, err := m.scanFile(p, Finding{Where: WhereWorktree, Path: rel})
		if err != nil {
			return fmt.Errorf("scan: read %q: %w", rel, err)
		}
		out = append(out, fs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out = m.filterLocations(out)
	sortFindings(out)
	return out, nil
}

// scanFile scans the file at p: whole, or in windows when it is larger
// than wholeLimit.
func (m *Matcher) scanFile(p string, base Finding) ([]Finding, error) {
	// O_NONBLOCK: a file replaced by a FIFO since it was listed does not
	// block the open (it is then skipped, as FIFOs are).
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, err
	}
	return m.scanReader(f, fi.Size(), base)
}

var whereOrder = map[string]int{WhereWorktree: 0, WhereIndex: 1, WhereCommit: 2, WhereStash: 3, WhereUnreachable: 4}

// sortFindings sorts by place (worktree, index, commit, stash,
// unreachable), then author date, commit, path, blob, line, column, secret
// and rule.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(x, y Finding) int {
		return cmp.Or(
			cmp.Compare(whereOrder[x.Where], whereOrder[y.Where]),
			x.AuthorDate.Compare(y.AuthorDate),
			cmp.Compare(x.Commit, y.Commit),
			cmp.Compare(x.Path, y.Path),
			cmp.Compare(x.Blob, y.Blob),
			cmp.Compare(x.Line, y.Line),
			cmp.Compare(x.Column, y.Column),
			cmp.Compare(x.Secret, y.Secret),
			cmp.Compare(x.Rule, y.Rule),
		)
	})
}
