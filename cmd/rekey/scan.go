package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/gitsafe"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/rekeyhq/rekey/internal/scan"
	"github.com/spf13/cobra"
)

type scanOptions struct {
	history, staged bool
	since, format   string
	rules           string
	noRules         bool
	allow, baseline string
	installHook     bool
	force           bool
}

func (a *app) scanCommand() *cobra.Command {
	var o scanOptions
	c := &cobra.Command{
		Use:   "scan [PATH] [--history] [--staged] [--since DATE] [--format text|json|sarif] [--rules FILE] [--allow FILE] [--baseline FILE] [--install-hook]",
		Short: "Find leaks: every managed version exactly, and well-known secret formats, in files and the whole git history",
		Long: `scan looks for every value the store holds — current, previous and retired
versions of every environment — in the working tree (default: the project
folder), and with --history in every object of the git repository: every
commit of every branch and tag, merge commits' own changes, stashes, and blobs
that no ref reaches any more (a value "removed" by a rewrite is still in the
object store). --staged scans the index. Each value is looked for raw, as
base64 and base64url at every byte alignment, as hex, URL-encoded and
JSON-escaped. The values stay in memory only.

A .env that rekey publishes to is where the values belong: it is not a
finding while git ignores it; the same file tracked by git is.

A finding names where (worktree, index, commit, stash, unreachable), commit,
author date, path, line, the secret and version, and whether that version is
still current ("rotate now"); never the value (only its first characters and
length). Exit 0 when clean, 1 on findings, 2+ on error.

Pattern rules also find secrets rekey does not manage, in the same places:
AWS access key ids, GitHub, GitLab, Anthropic, OpenAI and Slack tokens, PEM
private keys, JWTs, and high-entropy values assigned to names ending in SECRET,
KEY, PASSWORD or TOKEN. Such a finding names its rule instead of a secret and
version. A managed value is reported once, as managed. --rules FILE loads a
gitleaks-format TOML file ([[rules]] id, regex, secretGroup, entropy,
keywords, path, [rules.allowlist]; top-level [allowlist]); it replaces the
built-in rules unless it has [extend] useDefault = true. Regexes are Go RE2
(as gitleaks'): no lookaround or backreferences. --no-rules looks for managed
values only.

Suppressing findings: a line carrying "rekey:allow" or "gitleaks:allow"
(e.g. in a comment) reports nothing. --allow FILE lists finding ids, one a
line (# comments): the ID of --format json, "[COMMIT:]PATH:RULE:LINE" (a
.gitleaksignore line) or "[COMMIT:]PATH:SECRET/ENV/vN:LINE", or a managed
version's fingerprint ("fp:…", as rekey history prints it) to suppress
every finding of that version. Ids are made of the location, never of the
value. --baseline FILE takes a previous
--format json report: the findings it holds are not reported again.

--format sarif writes SARIF 2.1.0 (for code-scanning dashboards): a current
managed value or a rule match is an error, a retired version a warning.

--install-hook writes the repository's pre-commit hook to run
"rekey scan --staged" (this binary, this rekey.yaml) and block a commit on
findings; it refuses to replace another hook without --force. The hook
needs the master key, like every rekey command: REKEY_MASTER_KEY in the
environment of git commit, or the key file rekey.yaml names.

Files and blobs larger than 4 MiB are read in overlapping windows of 4 MiB,
never whole: memory stays bounded (tens of MiB) whatever their size, and a
value across a window boundary is still found at its line. In such an input
a rule match longer than 64 KiB may be missed, and a "rekey:allow" on a
line longer than 64 KiB may not apply to a match far from it.

In text output a path, rule or preview holding a control character (an
escape sequence, a line break) or a bidi override is printed quoted with
escapes ("a\x1b[2K.env"), as git does; --format json keeps it exact.

On a terminal, a long --history scan shows its progress on stderr.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runScan(cmd.Context(), o, args) },
	}
	c.Flags().BoolVar(&o.history, "history", false, "scan every object of the git repository")
	c.Flags().BoolVar(&o.staged, "staged", false, "scan the blobs in the git index")
	c.Flags().StringVar(&o.since, "since", "", "with --history, only commits newer than DATE (as git log --since)")
	c.Flags().StringVar(&o.format, "format", "text", "text, json or sarif")
	c.Flags().StringVar(&o.rules, "rules", "", "gitleaks-format TOML rules `FILE` (replaces the built-in rules unless [extend] useDefault = true)")
	c.Flags().BoolVar(&o.noRules, "no-rules", false, "look for managed values only")
	c.Flags().StringVar(&o.allow, "allow", "", "`FILE` of finding ids not to report, one a line")
	c.Flags().StringVar(&o.baseline, "baseline", "", "previous --format json report `FILE`: its findings are not reported again")
	c.Flags().BoolVar(&o.installHook, "install-hook", false, "install a git pre-commit hook running `rekey scan --staged`")
	c.Flags().BoolVar(&o.force, "force", false, "with --install-hook, replace an existing pre-commit hook")
	return c
}

func (a *app) runScan(ctx context.Context, o scanOptions, args []string) error {
	a.findingsExit = true
	if o.format != "text" && o.format != "json" && o.format != "sarif" {
		return rekey.Errorf(rekey.CodeInvalid, "--format %q: want text, json or sarif", o.format)
	}
	if o.installHook {
		return a.installHook(ctx, o, args)
	}
	if o.rules != "" && o.noRules {
		return rekey.Errorf(rekey.CodeInvalid, "--rules and --no-rules exclude each other")
	}
	var rules *scan.RuleSet
	switch {
	case o.noRules:
	case o.rules != "":
		p, err := a.abs(o.rules)
		if err != nil {
			return err
		}
		if rules, err = scan.LoadRules(p); err != nil {
			var re *scan.RuleError
			if errors.As(err, &re) {
				code := rekey.CodeInvalid
				if errors.Is(err, os.ErrNotExist) {
					code = rekey.CodeNotFound
				}
				e := &rekey.Error{Code: code, Msg: re.Error(), Hint: re.Hint}
				return e
			}
			return err
		}
		for _, id := range rules.Skipped {
			a.warnf("rule %q of %s has no regex (path-only rules are not supported): skipped", id, o.rules)
		}
	default:
		rules = scan.DefaultRules()
	}
	allowIDs, err := a.readAllowFile(o.allow)
	if err != nil {
		return err
	}
	baseIDs, err := a.readBaseline(o.baseline)
	if err != nil {
		return err
	}
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	dir := cfg.Dir
	if len(args) == 1 {
		if dir, err = a.abs(args[0]); err != nil {
			return err
		}
	}
	// Every version of every secret of every environment.
	var secrets []scan.Secret
	err = eachVersion(ctx, st, func(v rekey.Version, val rekey.Value) {
		secrets = append(secrets, scan.Secret{Env: v.Env, Name: v.Name, Version: v.N, Current: v.Label == rekey.LabelCurrent, Fingerprint: v.Fingerprint, Value: val})
	})
	if err != nil {
		return err
	}
	m := scan.NewMatcher(secrets)
	defer m.Wipe()
	m.SetRules(rules)
	for _, i := range m.Skipped() {
		a.warnf("%s v%d (%s) is shorter than %d bytes: not searched", secrets[i].Name, secrets[i].Version, secrets[i].Env, scan.MinValueLen)
	}
	// The .env files rekey writes are where the values belong, while git ignores them.
	targets := map[string]bool{}
	for _, env := range cfg.Environments {
		for _, t := range env.Targets {
			targets[t.Path] = true
		}
	}
	ignore := func(root string) func(string) bool {
		return func(p string) bool {
			full := p
			if !filepath.IsAbs(full) {
				full = filepath.Join(root, filepath.FromSlash(p))
			}
			if !targets[full] {
				return false
			}
			cmd := gitsafe.Command(ctx, filepath.Dir(full), "check-ignore", "-q", filepath.Base(full))
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
				return false // tracked or not ignored: a finding
			}
			return err == nil || !isGitRepo(ctx, filepath.Dir(full)) // outside git, the target is its own place
		}
	}
	var findings []scan.Finding
	if isGitRepo(ctx, dir) {
		top, _ := gitsafe.Command(ctx, dir, "rev-parse", "--show-toplevel").Output()
		opt := scan.Options{History: o.history, Staged: o.staged, Since: o.since, Ignore: ignore(strings.TrimSpace(string(top)))}
		var done func()
		if f, ok := a.m.Stderr.(*os.File); ok && o.history && term.IsTerminal(int(f.Fd())) {
			opt.Progress, done = progressPrinter(f, time.Now, time.Second)
		}
		findings, err = scan.ScanRepo(ctx, dir, m, opt)
		if done != nil {
			done()
		}
	} else {
		if o.history || o.staged {
			return rekey.Errorf(rekey.CodeInvalid, "%s is not in a git repository", dir).WithHint("drop --history/--staged to scan the files only")
		}
		findings, err = scan.ScanDir(ctx, dir, m, ignore(dir))
	}
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "scan")
	}
	suppressed := 0
	kept := findings[:0]
	for _, f := range findings {
		f.ID = scan.FindingID(f)
		// A managed version's fingerprint (fp:…) in the allow file suppresses
		// every finding of that version (e.g. a value kept in a test fixture).
		if allowIDs[f.ID] || baseIDs[f.ID] || (f.Fingerprint != "" && allowIDs[f.Fingerprint]) {
			suppressed++
			continue
		}
		kept = append(kept, f)
	}
	findings = kept
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "scan", Outcome: fmt.Sprintf("%d findings", len(findings)), Detail: fmt.Sprintf("history=%v staged=%v rules=%v suppressed=%d", o.history, o.staged, rules != nil, suppressed)}); err != nil {
		return err
	}
	if o.format == "sarif" {
		if err := scan.WriteSARIF(a.out(), findings, rules, ""); err != nil {
			return err
		}
	} else if o.format == "json" {
		if findings == nil {
			findings = []scan.Finding{}
		}
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	} else {
		// Paths, rule ids and the matched text come from the repository
		// and the rules file: quoted when they hold a control character
		// (textsafe), so they cannot rewrite or add lines.
		q := textsafe.Quote
		for _, f := range findings {
			loc := q(f.Path)
			if f.Path == "" {
				loc = "blob " + q(f.Blob)
			}
			where := f.Where
			if f.Commit != "" {
				where += " " + q(f.Commit[:min(12, len(f.Commit))]) + " " + f.AuthorDate.UTC().Format("2006-01-02")
			}
			if f.Rule != "" {
				fmt.Fprintf(a.out(), "%s:%d: %s %s [%s] %s — not managed by rekey: revoke it where it was issued\n", loc, f.Line, q(f.Rule), q(f.Redacted), where, q(f.ID))
				continue
			}
			state := "retired"
			if f.Current {
				state = "CURRENT: rotate now"
			}
			fmt.Fprintf(a.out(), "%s:%d: %s v%d (%s) %s as %s [%s] %s — %s\n", loc, f.Line, q(f.Secret), f.Version, q(f.Env), q(f.Redacted), f.Encoding, where, q(f.Fingerprint), state)
		}
		if len(findings) == 0 {
			rs := ""
			if rules != nil {
				rs = fmt.Sprintf("; no rule matched (%d rules)", len(rules.Rules))
			}
			fmt.Fprintf(a.out(), "no managed value found (%d versions searched)%s\n", len(secrets), rs)
		}
		if suppressed > 0 {
			fmt.Fprintf(a.out(), "%d findings suppressed by --allow/--baseline\n", suppressed)
		}
	}
	if len(findings) > 0 {
		a.exit = 1
	}
	return nil
}

func isGitRepo(ctx context.Context, dir string) bool {
	return gitsafe.Command(ctx, dir, "rev-parse", "--git-dir").Run() == nil
}

// readFlagFile reads the file a flag names (relative to the working
// directory); nil, nil when the flag is empty.
func (a *app) readFlagFile(flag, name string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	p, err := a.abs(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeNotFound, err, "%s", flag)
	}
	return b, nil
}

// readAllowFile reads finding ids, one a line; blank lines and # comments are
// ignored.
func (a *app) readAllowFile(name string) (map[string]bool, error) {
	ids := map[string]bool{}
	b, err := a.readFlagFile("--allow", name)
	if err != nil || b == nil {
		return ids, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			ids[line] = true
		}
	}
	return ids, nil
}

// readBaseline reads a previous --format json report and returns the ids of
// its findings (recomputed, so reports without IDs work too).
func (a *app) readBaseline(name string) (map[string]bool, error) {
	ids := map[string]bool{}
	b, err := a.readFlagFile("--baseline", name)
	if err != nil || b == nil {
		return ids, err
	}
	var fs []scan.Finding
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--baseline %s: not a `rekey scan --format json` report: %v", name, err).WithHint("create one with `rekey scan --history --format json > %s`", name)
	}
	for _, f := range fs {
		ids[scan.FindingID(f)] = true
	}
	return ids, nil
}

// progressPrinter returns a Progress callback printing "scanned N MB of M MB"
// on w at most once per interval (the first time after one interval: short
// scans print nothing), and a func ending the line.
func progressPrinter(w io.Writer, now func() time.Time, interval time.Duration) (func(done, total int64), func()) {
	next := now().Add(interval)
	printed := false
	const mb = 1 << 20
	return func(done, total int64) {
			if t := now(); !t.Before(next) {
				next = t.Add(interval)
				printed = true
				fmt.Fprintf(w, "\rrekey: scanned %d MB of %d MB", done/mb, (total+mb-1)/mb)
			}
		}, func() {
			if printed {
				fmt.Fprint(w, "\n")
			}
		}
}

const hookMarker = "# installed by rekey scan --install-hook"

// installHook writes the repository's pre-commit hook.
func (a *app) installHook(ctx context.Context, o scanOptions, args []string) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	dir := cfg.Dir
	if len(args) == 1 {
		if dir, err = a.abs(args[0]); err != nil {
			return err
		}
	}
	if !isGitRepo(ctx, dir) {
		return rekey.Errorf(rekey.CodeInvalid, "%s is not in a git repository", dir)
	}
	hooks, err := gitsafe.Command(ctx, dir, "rev-parse", "--path-format=absolute", "--git-path", "hooks").Output()
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "git rev-parse --git-path hooks")
	}
	hookDir := strings.TrimSpace(string(hooks))
	bin, err := selfPath()
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "find the rekey binary")
	}
	script := fmt.Sprintf(`#!/bin/sh
%s
# Blocks a commit whose staged files (or worktree) hold a value rekey manages,
# or a secret a rule finds. It needs the master key: REKEY_MASTER_KEY in the
# environment of git commit, or the key file %s names.
# Suppress a finding with a "rekey:allow" comment on its line; bypass once
# with git commit --no-verify.
exec %s --config %s scan --staged
`, hookMarker, filepath.Base(cfg.Path), shellQuote(bin), shellQuote(cfg.Path))
	path := filepath.Join(hookDir, "pre-commit")
	if old, err := os.ReadFile(path); err == nil {
		switch {
		case string(old) == script:
			fmt.Fprintf(a.out(), "pre-commit hook %s is already installed\n", textsafe.Quote(path))
			return nil
		case !o.force && !strings.Contains(string(old), hookMarker):
			return rekey.Errorf(rekey.CodeConflict, "%s exists and is not rekey's hook", path).WithHint("add `%s --config %s scan --staged` to it yourself, or replace it with --install-hook --force", bin, cfg.Path)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return rekey.Wrap(rekey.CodeInternal, err, "read pre-commit hook")
	}
	if err := os.MkdirAll(hookDir, 0o755); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "create hooks directory")
	}
	// A new file (O_EXCL never follows a link someone left at tmp).
	tmp := path + ".rekey-tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rekey.Wrap(rekey.CodeInternal, err, "write pre-commit hook")
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write pre-commit hook")
	}
	_, err = f.WriteString(script)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return rekey.Wrap(rekey.CodeInternal, err, "write pre-commit hook")
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return rekey.Wrap(rekey.CodeInternal, err, "write pre-commit hook")
	}
	fmt.Fprintf(a.out(), "installed pre-commit hook %s\nit runs: %s --config %s scan --staged\nit needs the master key (REKEY_MASTER_KEY, or the key file rekey.yaml names) when you commit\n", textsafe.Quote(path), textsafe.Quote(bin), textsafe.Quote(cfg.Path))
	return nil
}

// selfPath is the absolute path of the running binary: the name it was run
// by when that is the same file (a stable symlink such as a package manager's
// survives upgrades), else os.Executable.
func selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		if p, err = filepath.Abs(p); err == nil {
			a, err1 := os.Stat(p)
			b, err2 := os.Stat(exe)
			if err1 == nil && err2 == nil && os.SameFile(a, b) {
				return p, nil
			}
		}
	}
	return exe, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
