package scan

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/rekeyhq/rekey"
)

// SetRules makes the matcher also run pattern rules (nil: none, the
// default). A managed value found exactly is reported once, as managed: rule
// matches overlapping a managed match are dropped.
func (m *Matcher) SetRules(rs *RuleSet) {
	if rs != nil && rs.byID == nil {
		rs.index()
	}
	m.rules = rs
}

// Rules returns the rules set by SetRules.
func (m *Matcher) Rules() *RuleSet { return m.rules }

// Inline markers that suppress a finding on their line.
var allowMarkers = [][]byte{[]byte("rekey:allow"), []byte("gitleaks:allow")}

// scanData returns the findings in data (managed values, then rules), less
// those whose line carries an inline allow marker.
func (m *Matcher) scanData(data []byte, base Finding) []Finding {
	return m.scanRange(data, base, 0, len(data))
}

// scanRange is scanData for the matches starting in data[lo:hi] (a window
// of a streamed input: the rest of data is context).
func (m *Matcher) scanRange(data []byte, base Finding, lo, hi int) []Finding {
	all := m.Scan(data)
	ms := all
	if lo > 0 || hi < len(data) {
		ms = nil
		for _, mt := range all {
			if lo <= mt.Offset && mt.Offset < hi {
				ms = append(ms, mt)
			}
		}
	}
	var out []Finding
	if len(ms) > 0 {
		out = m.findings(data, ms, base)
	}
	if m.rules != nil && len(m.rules.Rules) > 0 {
		rms := m.rules.scan(data, all)
		if lo > 0 || hi < len(data) {
			kept := rms[:0]
			for _, rm := range rms {
				if lo <= rm.start && rm.start < hi {
					kept = append(kept, rm)
				}
			}
			rms = kept
		}
		if len(rms) > 0 {
			pos := make([]Match, len(rms))
			for i, rm := range rms {
				pos[i] = Match{Offset: rm.mstart, Len: rm.mend - rm.mstart}
			}
			lines, cols, endLines, endCols := positions(data, pos)
			for i, rm := range rms {
				f := base
				f.Rule = rm.rule.ID
				f.Current = true
				f.Line, f.Column, f.EndLine, f.EndColumn = lines[i], cols[i], endLines[i], endCols[i]
				f.Redacted = redact(data[rm.start:rm.end])
				f.entropy = float32(rekey.Entropy(data[rm.start:rm.end]))
				f.pending = rm.pending
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 || !hasMarker(data) {
		return out
	}
	kept := out[:0]
	for _, f := range out {
		if !hasMarker(lineAt(data, f.Line)) {
			kept = append(kept, f)
		}
	}
	return kept
}

func hasMarker(b []byte) bool {
	for _, mk := range allowMarkers {
		if bytes.Contains(b, mk) {
			return true
		}
	}
	return false
}

// lineAt returns the 1-based line n of data.
func lineAt(data []byte, n int) []byte {
	for ; n > 1; n-- {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	return data
}

// filterLocations drops rule findings whose location a rule's path or an
// allowlist's paths or commits exclude. It runs once paths and commits are
// known (history blobs are scanned before they are attributed).
func (m *Matcher) filterLocations(fs []Finding) []Finding {
	if m.rules == nil {
		return fs
	}
	out := fs[:0]
	for _, f := range fs {
		if f.Rule != "" && !m.rules.keep(f) {
			continue
		}
		f.pending = nil
		out = append(out, f)
	}
	return out
}

func (rs *RuleSet) keep(f Finding) bool {
	if r, ok := rs.byID[f.Rule]; ok && r.Path != nil && (f.Path == "" || !r.Path.MatchString(f.Path)) {
		return false
	}
	for _, al := range f.pending {
		if al.locationMet(f.Path, f.Commit) {
			return false
		}
	}
	return true
}

// FindingID is a finding's stable identifier, for allow files and
// baselines: "[COMMIT:]PATH:WHAT:LINE", where WHAT is the rule id, or
// "SECRET/ENV/vN" for a managed value, and PATH is the blob id of an
// unreachable blob. For rule findings it has the form of a gitleaks
// fingerprint (a .gitleaksignore line). It holds no part of the value: a
// hash of a short leaked secret could be brute-forced.
func FindingID(f Finding) string {
	what := f.Rule
	if what == "" {
		what = f.Secret + "/" + f.Env + "/v" + strconv.Itoa(f.Version)
	}
	return locationID(f, what)
}

// locationID is [COMMIT:]PATH:WHAT:LINE (the blob id when the finding has
// no path): the shape of rekey's finding ids and of gitleaks' fingerprints.
func locationID(f Finding, what string) string {
	loc := f.Path
	if loc == "" {
		loc = f.Blob
	}
	id := fmt.Sprintf("%s:%s:%d", loc, what, f.Line)
	if f.Commit != "" {
		id = f.Commit + ":" + id
	}
	return id
}
