package scan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// This file speaks gitleaks: its JSON report and its .gitleaksignore.

// Redacted is what the gitleaks report carries in place of a secret and of
// the text matched around it (gitleaks --redact writes it for the secret).
const Redacted = "REDACTED"

// gitleaksFinding is one finding of gitleaks' JSON report (v8: the field
// names, order and types of its report.Finding).
type gitleaksFinding struct {
	RuleID      string
	Description string
	StartLine   int
	EndLine     int
	StartColumn int
	EndColumn   int
	Match       string
	Secret      string
	File        string
	SymlinkFile string
	Commit      string
	Entropy     float32
	Author      string
	Email       string
	Date        string
	Message     string
	Tags        []string
	Fingerprint string
}

// WriteGitleaks writes findings as gitleaks' JSON report, so that what
// consumes gitleaks' reports reads rekey's. Secret and Match are always
// "REDACTED": the report never holds the value, nor the text matched around
// it. A managed value's RuleID is ManagedRuleID. Columns are counted as
// gitleaks counts them: from 1 on the first line of the scanned fragment
// (a file, or a hunk of a commit's diff), from 2 on the lines after it.
// rules gives the rules' descriptions and tags (nil: none).
func WriteGitleaks(w io.Writer, findings []Finding, rules *RuleSet) error {
	out := make([]gitleaksFinding, 0, len(findings))
	for _, f := range findings {
		g := gitleaksFinding{RuleID: f.Rule, Description: f.Rule, StartLine: f.Line, EndLine: f.EndLine,
			StartColumn: f.Column + colShift(f, f.Line), EndColumn: f.EndColumn + colShift(f, f.EndLine),
			Match: Redacted, Secret: Redacted, File: f.Path, Commit: f.Commit, Entropy: f.entropy,
			Author: f.Author, Email: f.Email, Message: f.Message, Tags: []string{}, Fingerprint: GitleaksFingerprint(f)}
		if g.File == "" {
			g.File = f.Blob
		}
		if !f.AuthorDate.IsZero() {
			g.Date = f.AuthorDate.UTC().Format("2006-01-02T15:04:05Z07:00")
		}
		if f.Rule == "" {
			g.RuleID = ManagedRuleID
			g.Description = fmt.Sprintf("%s v%d (%s), a value rekey manages, as %s", f.Secret, f.Version, f.Env, f.Encoding)
			g.Tags = []string{"rekey:" + f.Fingerprint}
		} else if r, ok := rules.Rule(f.Rule); ok {
			g.Description = r.Description
			if len(r.Tags) > 0 {
				g.Tags = append([]string{}, r.Tags...)
			}
		}
		out = append(out, g)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}

// colShift is what gitleaks adds to a column on line: 0 on the first line
// of the fragment it scanned, 1 on the others.
func colShift(f Finding, line int) int {
	if line == max(f.fragLine, 1) {
		return 0
	}
	return 1
}

// GitleaksFingerprint is the finding's gitleaks fingerprint, a line of a
// .gitleaksignore: "COMMIT:PATH:RULE:LINE" for a finding in a commit,
// "PATH:RULE:LINE" otherwise (RULE is ManagedRuleID for a managed value).
func GitleaksFingerprint(f Finding) string {
	rule := f.Rule
	if rule == "" {
		rule = ManagedRuleID
	}
	return locationID(f, rule)
}

// Ignore is a set of finding ids not to report: rekey's ids (FindingID) and
// gitleaks fingerprints (.gitleaksignore lines).
type Ignore map[string]bool

// ParseIgnore reads ids one a line, as gitleaks reads a .gitleaksignore:
// blank lines and lines starting with # are skipped; in the path of
// "PATH:RULE:LINE" and "COMMIT:PATH:RULE:LINE", \ is read as /. rekey also
// drops a trailing " # comment".
func ParseIgnore(b []byte, into Ignore) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := strings.Split(line, ":")
		switch len(s) {
		case 3:
			s[0] = strings.ReplaceAll(s[0], `\`, "/")
		case 4:
			s[1] = strings.ReplaceAll(s[1], `\`, "/")
		}
		into[strings.Join(s, ":")] = true
	}
}

// Suppresses reports whether ig holds the finding: its id or its gitleaks
// fingerprint, or, as gitleaks does, its fingerprint without the commit
// ("PATH:RULE:LINE" suppresses that line in every commit and the worktree),
// or (fp:…) its managed version's fingerprint.
func (ig Ignore) Suppresses(f Finding) bool {
	if len(ig) == 0 {
		return false
	}
	global := f
	global.Commit = ""
	return ig[FindingID(f)] || ig[FindingID(global)] || ig[GitleaksFingerprint(f)] || ig[GitleaksFingerprint(global)] ||
		(f.Fingerprint != "" && ig[f.Fingerprint])
}
