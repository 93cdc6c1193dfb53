package scan

import (
	"bytes"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rekeyhq/rekey"
)

// Rule is a pattern rule for secrets rekey does not manage (a third party's
// token, a private key), in the spirit of gitleaks' rules.
type Rule struct {
	ID          string
	Description string
	Regex       *regexp.Regexp
	// SecretGroup is the capture group holding the secret; 0 means the first
	// non-empty group, or the whole match when the regex has none.
	SecretGroup int
	// Entropy, if > 0, is the minimum Shannon entropy (bits per byte) of the
	// secret: lower-entropy matches (placeholders, words) are not findings.
	Entropy float64
	// Keywords, if any, prefilter: the rule only runs on data containing one
	// of them (case-insensitive).
	Keywords []string
	// Path, if not nil, limits the rule to the paths it matches.
	Path       *regexp.Regexp
	Allowlists []Allowlist
	// Tags are the rules file's tags (gitleaks' report carries them).
	Tags []string

	// assignment: the rule only matches where a keyword is followed by an
	// optional quote, blanks and ':' or '=' (built-in generic-secret); lines
	// without that are not given to the regex.
	assignment bool
}

// Allowlist suppresses matches of a rule (or of every rule, at top level).
type Allowlist struct {
	Description string
	// And requires every given criterion to hold (gitleaks' condition =
	// "AND"); by default any one suffices.
	And bool
	// RegexTarget is what Regexes are matched against: "secret" (default),
	// "match" or "line".
	RegexTarget string
	Regexes     []*regexp.Regexp
	Paths       []*regexp.Regexp
	Stopwords   []string // lower-case; a secret containing one is allowed
	Commits     []string
}

// RuleSet is a list of rules and global allowlists.
type RuleSet struct {
	Rules      []Rule
	Allowlists []Allowlist
	// Skipped names the rules of a loaded file that rekey cannot run
	// (path-only rules, which have no regex).
	Skipped []string
	byID    map[string]*Rule
	anyKw   bool
}

// Rule returns the rule with the given id.
func (rs *RuleSet) Rule(id string) (*Rule, bool) {
	if rs == nil {
		return nil, false
	}
	r, ok := rs.byID[id]
	return r, ok
}

func (rs *RuleSet) index() {
	rs.byID = make(map[string]*Rule, len(rs.Rules))
	rs.anyKw = false
	for i := range rs.Rules {
		rs.byID[rs.Rules[i].ID] = &rs.Rules[i]
		if len(rs.Rules[i].Keywords) > 0 {
			rs.anyKw = true
		}
	}
}

// DefaultRules returns the built-in rules: AWS access key ids, GitHub and
// GitLab tokens (with gitleaks' rule ids), Anthropic, OpenAI and Slack keys, PEM private keys, JWTs, and
// high-entropy values assigned to names ending in SECRET, KEY, PASSWORD or
// TOKEN.
func DefaultRules() *RuleSet {
	re := regexp.MustCompile
	rs := &RuleSet{Rules: []Rule{
		// The ids, regexes and entropy thresholds of the rules gitleaks also
		// has are gitleaks' (its default config, v8.30), so a .gitleaksignore
		// line and a gitleaks report consumer see the same rule ids.
		{ID: "aws-access-token", Description: "AWS access key id",
			Regex: re(`\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b`), Entropy: 3, Keywords: []string{"a3t", "akia", "asia", "abia", "acca"}},
		{ID: "github-pat", Description: "GitHub personal access token",
			Regex: re(`ghp_[0-9a-zA-Z]{36}`), Entropy: 3, Keywords: []string{"ghp_"}},
		{ID: "github-oauth", Description: "GitHub OAuth access token",
			Regex: re(`gho_[0-9a-zA-Z]{36}`), Entropy: 3, Keywords: []string{"gho_"}},
		{ID: "github-app-token", Description: "GitHub App token (user-to-server, server-to-server)",
			Regex: re(`(?:ghu|ghs)_[0-9a-zA-Z]{36}`), Entropy: 3, Keywords: []string{"ghu_", "ghs_"}},
		{ID: "github-refresh-token", Description: "GitHub refresh token",
			Regex: re(`ghr_[0-9a-zA-Z]{36}`), Entropy: 3, Keywords: []string{"ghr_"}},
		{ID: "github-fine-grained-pat", Description: "GitHub fine-grained personal access token",
			Regex: re(`github_pat_\w{82}`), Entropy: 3, Keywords: []string{"github_pat_"}},
		{ID: "gitlab-pat", Description: "GitLab personal access token",
			Regex: re(`glpat-[\w-]{20}`), Entropy: 3, Keywords: []string{"glpat-"}},
		{ID: "anthropic-api-key", Description: "Anthropic API key",
			Regex: re(`\b(sk-ant-[A-Za-z0-9_\-]{32,})`), Keywords: []string{"sk-ant-"}},
		{ID: "openai-api-key", Description: "OpenAI API key",
			Regex: re(`\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,})`), Entropy: 3.5, Keywords: []string{"sk-"}},
		{ID: "slack-token", Description: "Slack token",
			Regex: re(`\b(xox[baprs]-[0-9A-Za-z\-]{10,})`), Keywords: []string{"xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"}},
		{ID: "private-key", Description: "PEM private key",
			Regex: re(`-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`), Keywords: []string{"private key"}},
		{ID: "jwt", Description: "JSON Web Token",
			Regex: re(`\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})`), Keywords: []string{"eyj"}},
		// generic-secret starts at the keyword: a leading \b[a-z0-9_.-]* name
		// part would only widen the match leftwards, and makes the regex try
		// (and fail) at every byte of a line.
		{ID: "generic-secret", Description: "High-entropy value assigned to a name ending in SECRET, KEY, PASSWORD or TOKEN",
			Regex:       re(`(?i)(?:secret|key|password|passwd|token)["']?[ \t]*(?::=|=>|=|:)[ \t]*["']?([^\s"'` + "`" + `,;]{20,})`),
			SecretGroup: 1, Entropy: 3.5, Keywords: []string{"secret", "key", "password", "passwd", "token"}, assignment: true,
			Allowlists: []Allowlist{{Description: "references and identifiers, not values", Regexes: []*regexp.Regexp{
				re(`^[^0-9]*$`),                    // no digit: an identifier or a sentence
				re(`^\$`),                          // ${VAR}, $VAR
				re(`^\{\{`),                        // templates
				re(`^(?:process\.env|os\.|env\.)`), // code reading the environment
				re(`^file:`),                       // a reference to a file (rekey.yaml's master_key: file:PATH)
			}}}},
	}}
	rs.index()
	return rs
}

// contentMet reports whether the content criteria of al (regexes,
// stopwords) hold: any one of them (OR) or all of them (AND). given is false
// when al has none.
func (al *Allowlist) contentMet(secret, match, line []byte) (met, given bool) {
	var n, ok int
	if len(al.Regexes) > 0 {
		n++
		target := secret
		switch al.RegexTarget {
		case "match":
			target = match
		case "line":
			target = line
		}
		if slices.ContainsFunc(al.Regexes, func(re *regexp.Regexp) bool { return re.Match(target) }) {
			ok++
		}
	}
	if len(al.Stopwords) > 0 {
		n++
		low := bytes.ToLower(secret)
		if slices.ContainsFunc(al.Stopwords, func(s string) bool { return bytes.Contains(low, []byte(s)) }) {
			ok++
		}
		clear(low)
	}
	if n == 0 {
		return false, false
	}
	if al.And {
		return ok == n, true
	}
	return ok > 0, true
}

func (al *Allowlist) hasLocation() bool { return len(al.Paths) > 0 || len(al.Commits) > 0 }

// locationMet judges al's path and commit criteria: any (OR) or all (AND).
func (al *Allowlist) locationMet(path, commit string) bool {
	pathMet := path != "" && slices.ContainsFunc(al.Paths, func(re *regexp.Regexp) bool { return re.MatchString(path) })
	commitMet := commit != "" && slices.Contains(al.Commits, commit)
	if !al.And {
		return pathMet || commitMet
	}
	return (len(al.Paths) == 0 || pathMet) && (len(al.Commits) == 0 || commitMet)
}

// ruleMatch is a match of a rule in data: the secret's byte range, and the
// allowlists still to judge on the finding's location.
type ruleMatch struct {
	rule         *Rule
	start, end   int // the secret (its group)
	mstart, mend int // the whole match, its line breaks trimmed (as gitleaks)
	pending      []*Allowlist
}

// scan runs every rule over data, skipping matches that overlap a managed
// match (reported as managed already) or an earlier rule's match, and
// matches an allowlist suppresses by content.
func (rs *RuleSet) scan(data []byte, managed []Match) []ruleMatch {
	var low []byte
	if rs.anyKw {
		low = asciiLower(data) // same length as data: offsets carry over
		defer clear(low)
	}
	type span struct{ s, e int }
	var taken []span
	for _, mt := range managed {
		taken = append(taken, span{mt.Offset, mt.Offset + mt.Len})
	}
	overlaps := func(s, e int) bool {
		for _, t := range taken {
			if s < t.e && t.s < e {
				return true
			}
		}
		return false
	}
	var out []ruleMatch
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if len(r.Keywords) > 0 && !slices.ContainsFunc(r.Keywords, func(k string) bool { return bytes.Contains(low, []byte(k)) }) {
			continue
		}
		// A single-line rule with keywords runs only on the lines holding a
		// keyword: a regex with no literal prefix (generic-secret) costs
		// ~10 MB/s over a whole blob, and its keywords are in most source files.
		var locs [][]int
		if len(r.Keywords) > 0 && singleLine(r.Regex) {
			for _, seg := range keywordLines(low, r.Keywords, r.assignment) {
				for _, loc := range r.Regex.FindAllSubmatchIndex(data[seg[0]:seg[1]], -1) {
					for k := range loc {
						if loc[k] >= 0 {
							loc[k] += seg[0]
						}
					}
					locs = append(locs, loc)
				}
			}
		} else {
			locs = r.Regex.FindAllSubmatchIndex(data, -1)
		}
	matches:
		for _, loc := range locs {
			s, e := loc[0], loc[1]
			if r.SecretGroup > 0 {
				s, e = loc[2*r.SecretGroup], loc[2*r.SecretGroup+1]
			} else {
				for g := 1; g < len(loc)/2; g++ {
					if loc[2*g] >= 0 && loc[2*g+1] > loc[2*g] {
						s, e = loc[2*g], loc[2*g+1]
						break
					}
				}
			}
			if s < 0 || e <= s || overlaps(s, e) {
				continue
			}
			secret, match := data[s:e], data[loc[0]:loc[1]]
			if r.Entropy > 0 && rekey.Entropy(secret) <= r.Entropy { // as gitleaks: the threshold itself is too low
				continue
			}
			ls, le := lineBounds(data, s, e)
			line := data[ls:le]
			var pending []*Allowlist
			for _, lists := range [][]Allowlist{r.Allowlists, rs.Allowlists} {
				for j := range lists {
					al := &lists[j]
					met, given := al.contentMet(secret, match, line)
					switch {
					case !al.hasLocation():
						if met {
							continue matches
						}
					case !al.And:
						if met {
							continue matches
						}
						pending = append(pending, al)
					case met || !given:
						pending = append(pending, al)
					}
				}
			}
			taken = append(taken, span{s, e})
			mend := loc[0] + len(bytes.Trim(match, "\n"))
			out = append(out, ruleMatch{rule: r, start: s, end: e, mstart: loc[0], mend: max(mend, loc[0]+1), pending: pending})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].start < out[b].start })
	return out
}

// lineBounds returns the start and the end (before its newline) of the
// line or lines of b holding b[s:e].
func lineBounds(b []byte, s, e int) (int, int) {
	ls := bytes.LastIndexByte(b[:s], '\n') + 1
	le := bytes.IndexByte(b[e:], '\n')
	if le < 0 {
		return ls, len(b)
	}
	return ls, le + e
}

// asciiLower lower-cases ASCII letters only, so offsets stay valid.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// singleLine reports whether a regex cannot match across a line break
// (as far as its source tells: no (?s), no \n, no [\s\S]-style class).
func singleLine(re *regexp.Regexp) bool {
	src := re.String()
	return !strings.Contains(src, "(?s") && !strings.Contains(src, `\n`) && !strings.Contains(src, `\s\S`) && !strings.Contains(src, `\S\s`)
}

// keywordLines returns the sorted, merged [start, end) byte ranges of the
// lines of low (line break excluded) that contain one of the keywords.
func keywordLines(low []byte, keywords []string, assignment bool) [][2]int {
	var segs [][2]int
	for _, k := range keywords {
		kb := []byte(k)
		for off := 0; ; {
			i := bytes.Index(low[off:], kb)
			if i < 0 {
				break
			}
			i += off
			if assignment && !assignedAfter(low, i+len(kb)) {
				off = i + 1
				continue
			}
			ls, le := lineBounds(low, i, i)
			segs = append(segs, [2]int{ls, le})
			off = le
			if off >= len(low) {
				break
			}
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i][0] < segs[j][0] })
	var out [][2]int
	for _, sg := range segs {
		if n := len(out); n > 0 && sg[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], sg[1])
			continue
		}
		out = append(out, sg)
	}
	return out
}

// assignedAfter reports whether low[j:] starts with an optional quote, blanks
// and ':' or '=' (the shape generic-secret's regex requires after a keyword).
func assignedAfter(low []byte, j int) bool {
	if j < len(low) && (low[j] == '"' || low[j] == '\'') {
		j++
	}
	for j < len(low) && (low[j] == ' ' || low[j] == '\t') {
		j++
	}
	return j < len(low) && (low[j] == ':' || low[j] == '=')
}
