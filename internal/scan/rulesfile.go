package scan

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// This file loads a gitleaks-format rules file (TOML).

// RuleError is a rules file that cannot be used.
type RuleError struct {
	File, Rule string
	Err        error
	Hint       string
}

func (e *RuleError) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("rules file %s: rule %q: %v", e.File, e.Rule, e.Err)
	}
	return fmt.Sprintf("rules file %s: %v", e.File, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

type tomlAllow struct {
	Description string   `toml:"description"`
	Condition   string   `toml:"condition"`
	RegexTarget string   `toml:"regexTarget"`
	Regexes     []string `toml:"regexes"`
	Paths       []string `toml:"paths"`
	Stopwords   []string `toml:"stopwords"`
	Commits     []string `toml:"commits"`
}

type tomlRule struct {
	ID          string      `toml:"id"`
	Description string      `toml:"description"`
	Regex       string      `toml:"regex"`
	SecretGroup int         `toml:"secretGroup"`
	Entropy     float64     `toml:"entropy"`
	Keywords    []string    `toml:"keywords"`
	Path        string      `toml:"path"`
	Tags        []string    `toml:"tags"`
	Allowlist   *tomlAllow  `toml:"allowlist"`
	Allowlists  []tomlAllow `toml:"allowlists"`
}

type tomlConfig struct {
	Title  string `toml:"title"`
	Extend struct {
		UseDefault    bool     `toml:"useDefault"`
		DisabledRules []string `toml:"disabledRules"`
	} `toml:"extend"`
	Allowlist  *tomlAllow  `toml:"allowlist"`
	Allowlists []tomlAllow `toml:"allowlists"`
	Rules      []tomlRule  `toml:"rules"`
}

const regexHint = "rekey runs rules with Go's RE2 regexp syntax (as gitleaks does): lookahead (?=…) (?!…), lookbehind (?<=…) (?<!…), backreferences \\1, possessive and atomic groups are not supported; rewrite the regex without them, or remove the rule"

// LoadRules reads a gitleaks-format TOML rules file: [[rules]] with id,
// description, regex, secretGroup, entropy, keywords, path and
// [rules.allowlist] (or [[rules.allowlists]]) with regexes, regexTarget,
// paths, stopwords, commits and condition; a top-level [allowlist] (or
// [[allowlists]]); and [extend] useDefault = true to keep the built-in rules
// (minus disabledRules). Without useDefault the file replaces them.
// Rules without a regex (path-only) are listed in Skipped.
func LoadRules(file string) (*RuleSet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &RuleError{File: file, Err: err}
	}
	var tc tomlConfig
	if _, err := toml.Decode(string(b), &tc); err != nil {
		return nil, &RuleError{File: file, Err: err, Hint: "the file must be gitleaks-format TOML ([[rules]] tables)"}
	}
	l := ruleLoader{file: file}
	rs := &RuleSet{}
	seen := map[string]bool{}
	for i, tr := range tc.Rules {
		if tr.ID == "" {
			return nil, &RuleError{File: file, Err: fmt.Errorf("rule #%d has no id", i+1)}
		}
		if seen[tr.ID] {
			return nil, &RuleError{File: file, Rule: tr.ID, Err: errors.New("duplicate rule id")}
		}
		seen[tr.ID] = true
		if tr.Regex == "" {
			rs.Skipped = append(rs.Skipped, tr.ID)
			continue
		}
		r, err := l.rule(tr)
		if err != nil {
			return nil, err
		}
		rs.Rules = append(rs.Rules, r)
	}
	// The file's rules come first: where matches overlap, the first rule's
	// is reported. A rule of the file replaces a built-in rule of its id.
	if tc.Extend.UseDefault {
		for _, r := range DefaultRules().Rules {
			if !slices.Contains(tc.Extend.DisabledRules, r.ID) && !seen[r.ID] {
				rs.Rules = append(rs.Rules, r)
			}
		}
	}
	if rs.Allowlists, err = l.allowlists("", tc.Allowlist, tc.Allowlists); err != nil {
		return nil, err
	}
	rs.index()
	return rs, nil
}

// ruleLoader turns the TOML of a rules file into rules; its errors name
// the file.
type ruleLoader struct {
	file string
}

// rule compiles one rule (that has a regex).
func (l ruleLoader) rule(tr tomlRule) (Rule, error) {
	var err error
	r := Rule{ID: tr.ID, Description: tr.Description, SecretGroup: tr.SecretGroup, Entropy: tr.Entropy, Tags: tr.Tags}
	if r.Regex, err = l.compile(tr.ID, "regex", tr.Regex); err != nil {
		return r, err
	}
	if r.SecretGroup < 0 || r.SecretGroup > r.Regex.NumSubexp() {
		return r, &RuleError{File: l.file, Rule: tr.ID, Err: fmt.Errorf("secretGroup %d: the regex has %d groups", r.SecretGroup, r.Regex.NumSubexp())}
	}
	if tr.Path != "" {
		if r.Path, err = l.compile(tr.ID, "path", tr.Path); err != nil {
			return r, err
		}
	}
	for _, k := range tr.Keywords {
		r.Keywords = append(r.Keywords, strings.ToLower(k))
	}
	r.Allowlists, err = l.allowlists(tr.ID, tr.Allowlist, tr.Allowlists)
	return r, err
}

func (l ruleLoader) compile(rule, what, expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, &RuleError{File: l.file, Rule: rule, Err: fmt.Errorf("%s does not compile: %w", what, err), Hint: regexHint}
	}
	return re, nil
}

// allowlists compiles the allowlists of a rule ("" for the file's own):
// the single [allowlist] table first, if any, then [[allowlists]].
func (l ruleLoader) allowlists(rule string, one *tomlAllow, many []tomlAllow) ([]Allowlist, error) {
	tas := many
	if one != nil {
		tas = append([]tomlAllow{*one}, tas...)
	}
	var out []Allowlist
	for _, ta := range tas {
		al, err := l.allow(rule, ta)
		if err != nil {
			return nil, err
		}
		out = append(out, al)
	}
	return out, nil
}

func (l ruleLoader) allow(rule string, ta tomlAllow) (Allowlist, error) {
	al := Allowlist{Description: ta.Description, RegexTarget: ta.RegexTarget, Commits: ta.Commits}
	switch strings.ToUpper(ta.Condition) {
	case "", "OR":
	case "AND":
		al.And = true
	default:
		return al, &RuleError{File: l.file, Rule: rule, Err: fmt.Errorf("allowlist condition %q: want OR or AND", ta.Condition)}
	}
	switch ta.RegexTarget {
	case "", "secret", "match", "line":
	default:
		return al, &RuleError{File: l.file, Rule: rule, Err: fmt.Errorf("allowlist regexTarget %q: want secret, match or line", ta.RegexTarget)}
	}
	for _, x := range ta.Regexes {
		re, err := l.compile(rule, "allowlist regex", x)
		if err != nil {
			return al, err
		}
		al.Regexes = append(al.Regexes, re)
	}
	for _, x := range ta.Paths {
		re, err := l.compile(rule, "allowlist path", x)
		if err != nil {
			return al, err
		}
		al.Paths = append(al.Paths, re)
	}
	for _, s := range ta.Stopwords {
		al.Stopwords = append(al.Stopwords, strings.ToLower(s))
	}
	return al, nil
}
