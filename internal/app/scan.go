package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/gitsafe"
	"github.com/rekeyhq/rekey/internal/scan"
	"github.com/rekeyhq/rekey/internal/sqlite"
)

// ScanRequest is what `rekey scan` looks in and for.
type ScanRequest struct {
	// Path is the folder scanned ("" = the project's).
	Path string
	// History scans every object of the git repository; Staged its index;
	// Since limits History to newer commits (as git log --since).
	History, Staged bool
	Since           string
	// Rules is a gitleaks-format TOML file ("" = the built-in rules);
	// NoRules looks for managed values only.
	Rules   string
	NoRules bool
	// Allow and Baseline are files of findings not to report: ids one a
	// line, and a previous --report-format json (or gitleaks) report.
	Allow, Baseline string
	// NoGitleaksIgnore ignores the repository's .gitleaksignore.
	NoGitleaksIgnore bool
	// Progress, when set, is called as a repository scan starts and returns
	// its progress callback and the func ending it.
	Progress func() (update func(done, total int64), done func())
}

// ScanReport is what a scan found, suppressed findings left out.
type ScanReport struct {
	Findings []scan.Finding
	// Rules are the pattern rules used (nil: --no-rules).
	Rules *scan.RuleSet
	// Versions is how many stored versions were looked for.
	Versions   int
	Suppressed int
	// NoProject: there is no rekey project (no rekey.yaml found): pattern
	// rules only, no managed value looked for, nothing audited.
	NoProject bool
	// IgnoreFiles are the .gitleaksignore files honoured.
	IgnoreFiles []string
}

// NoProjectNote is the one line a scan without a rekey project prints.
const NoProjectNote = "no rekey project here (no rekey.yaml): pattern rules only; the values rekey manages are not checked: `rekey init --env-file .env` makes a project, then scan finds every version of every secret too"

// Scan looks for every version of every secret the store holds (and, with
// rules, for well-known secret formats) in a folder or its git repository.
// The scan is audited; the values stay in memory only. Without a rekey
// project (no rekey.yaml found, no --config) it runs the pattern rules only,
// in any folder or git repository.
func (s *Session) Scan(ctx context.Context, r ScanRequest) (*ScanReport, error) {
	rules, err := s.scanRules(r)
	if err != nil {
		return nil, err
	}
	skip, err := s.suppressedIDs(r.Allow, r.Baseline)
	if err != nil {
		return nil, err
	}
	cfg, st, err := s.scanProject(ctx, r.Path)
	if err != nil {
		return nil, err
	}
	if cfg == nil && rules == nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--no-rules without a rekey project: nothing to look for (no rekey.yaml here or above)").WithHint("drop --no-rules to run the pattern rules, or run scan in a rekey project (`rekey init --env-file .env`)")
	}
	dir, err := s.scanDir(cfg, r.Path)
	if err != nil {
		return nil, err
	}
	out := &ScanReport{Rules: rules, NoProject: cfg == nil}
	if !r.NoGitleaksIgnore {
		if out.IgnoreFiles, err = readGitleaksIgnore(ctx, dir, skip); err != nil {
			return nil, err
		}
	}
	// Every version of every secret of every environment.
	var secrets []scan.Secret
	if st != nil {
		err = EachVersion(ctx, st, func(v rekey.Version, val rekey.Value) {
			secrets = append(secrets, scan.Secret{Env: v.Env, Name: v.Name, Version: v.N, Current: v.Label == rekey.LabelCurrent, Fingerprint: v.Fingerprint, Value: val})
		})
		if err != nil {
			return nil, err
		}
	}
	m := scan.NewMatcher(secrets)
	defer m.Wipe()
	m.SetRules(rules)
	for _, i := range m.Skipped() {
		s.warnf("%s v%d (%s) is shorter than %d bytes: not searched", secrets[i].Name, secrets[i].Version, secrets[i].Env, scan.MinValueLen)
	}
	findings, err := scanWhere(ctx, cfg, dir, m, r)
	if err != nil {
		return nil, err
	}
	out.Versions = len(secrets)
	for _, f := range findings {
		f.ID = scan.FindingID(f)
		// A managed version's fingerprint (fp:…) in the allow file suppresses
		// every finding of that version (e.g. a value kept in a test fixture);
		// a baseline's ids are locations, never fingerprints.
		if skip.Suppresses(f) {
			out.Suppressed++
			continue
		}
		out.Findings = append(out.Findings, f)
	}
	if st == nil {
		return out, nil
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "scan", Outcome: fmt.Sprintf("%d findings", len(out.Findings)), Detail: fmt.Sprintf("history=%v staged=%v rules=%v suppressed=%d", r.History, r.Staged, rules != nil, out.Suppressed)}); err != nil {
		return nil, err
	}
	return out, nil
}

// scanProject opens the project's store: --config's, else the rekey.yaml
// of the working directory or above, else that of the scanned path or
// above; nil, nil when there is none (a scan then runs the pattern rules
// only).
func (s *Session) scanProject(ctx context.Context, path string) (*config.Config, *sqlite.DB, error) {
	if s.Opts.ConfigPath == "" {
		wd, err := s.Wd()
		if err != nil {
			return nil, nil, err
		}
		if _, err := config.Find(wd); errors.Is(err, fs.ErrNotExist) {
			if path == "" {
				return nil, nil, nil
			}
			abs, err := s.Abs(path)
			if err != nil {
				return nil, nil, err
			}
			p, err := config.Find(abs)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, nil
			}
			if err != nil {
				return nil, nil, ConfigErr(err)
			}
			s.Opts.ConfigPath = p
		}
	}
	return s.OpenStore(ctx)
}

// readGitleaksIgnore adds the fingerprints of the .gitleaksignore of dir
// and of its git repository's top level (as gitleaks reads the one of the
// folder it scans) to ig, and returns the files read.
func readGitleaksIgnore(ctx context.Context, dir string, ig scan.Ignore) ([]string, error) {
	dirs := []string{dir}
	if top, err := gitsafe.Command(ctx, dir, "rev-parse", "--show-toplevel").Output(); err == nil {
		if t := strings.TrimSpace(string(top)); t != "" && t != dir {
			dirs = append(dirs, t)
		}
	}
	var read []string
	for _, d := range dirs {
		p := filepath.Join(d, ".gitleaksignore")
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // none (or not a regular file: never followed)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, rekey.Wrap(rekey.CodeInternal, err, "read %s", p)
		}
		lines := scan.Ignore{}
		scan.ParseIgnore(b, lines)
		for id := range lines {
			if !strings.HasPrefix(id, "fp:") { // a managed version is suppressed by --allow only
				ig[id] = true
			}
		}
		read = append(read, p)
	}
	return read, nil
}

// scanRules are the pattern rules a scan uses: none, a file's, or the
// built-in ones.
func (s *Session) scanRules(r ScanRequest) (*scan.RuleSet, error) {
	if r.Rules != "" && r.NoRules {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--rules and --no-rules exclude each other")
	}
	switch {
	case r.NoRules:
		return nil, nil
	case r.Rules == "":
		return scan.DefaultRules(), nil
	}
	p, err := s.Abs(r.Rules)
	if err != nil {
		return nil, err
	}
	rules, err := scan.LoadRules(p)
	if err != nil {
		var re *scan.RuleError
		if errors.As(err, &re) {
			code := rekey.CodeInvalid
			if errors.Is(err, os.ErrNotExist) {
				code = rekey.CodeNotFound
			}
			return nil, &rekey.Error{Code: code, Msg: re.Error(), Hint: re.Hint}
		}
		return nil, err
	}
	for _, id := range rules.Skipped {
		s.warnf("rule %q of %s has no regex (path-only rules are not supported): skipped", id, r.Rules)
	}
	return rules, nil
}

// scanDir is the folder a scan (or the hook) is about: path, else the
// project's.
func (s *Session) scanDir(cfg *config.Config, path string) (string, error) {
	if path == "" && cfg != nil {
		return cfg.Dir, nil
	}
	if path == "" {
		return s.Wd()
	}
	return s.Abs(path)
}

// scanWhere scans dir's git repository (history, index or worktree as r
// asks), or dir's files outside git. The .env files rekey writes are where
// the values belong, while git ignores them.
func scanWhere(ctx context.Context, cfg *config.Config, dir string, m *scan.Matcher, r ScanRequest) ([]scan.Finding, error) {
	targets := map[string]bool{}
	if cfg != nil {
		for _, env := range cfg.Environments {
			for _, t := range env.Targets {
				if t.File() { // a path on another machine names no file here
					targets[t.Path] = true
				}
			}
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
	var err error
	if isGitRepo(ctx, dir) {
		top, _ := gitsafe.Command(ctx, dir, "rev-parse", "--show-toplevel").Output()
		opt := scan.Options{History: r.History, Staged: r.Staged, Since: r.Since, Ignore: ignore(strings.TrimSpace(string(top)))}
		var done func()
		if r.Progress != nil {
			opt.Progress, done = r.Progress()
		}
		findings, err = scan.ScanRepo(ctx, dir, m, opt)
		if done != nil {
			done()
		}
	} else {
		if r.History || r.Staged {
			return nil, rekey.Errorf(rekey.CodeInvalid, "%s is not in a git repository", dir).WithHint("drop --history/--staged to scan the files only")
		}
		findings, err = scan.ScanDir(ctx, dir, m, ignore(dir))
	}
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "scan")
	}
	return findings, nil
}

func isGitRepo(ctx context.Context, dir string) bool {
	return gitsafe.Command(ctx, dir, "rev-parse", "--git-dir").Run() == nil
}

// readFlagFile reads the file a flag names (relative to the working
// directory); nil, nil when the flag is empty.
func (s *Session) readFlagFile(flag, name string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	p, err := s.Abs(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeNotFound, err, "%s", flag)
	}
	return b, nil
}

// suppressedIDs are the ids of the findings not to report: those of the
// allow file (one a line, as a .gitleaksignore: blank lines and # comments
// ignored) and of the findings of a previous --report-format json report
// (recomputed, so reports without ids work too) or gitleaks report (its
// fingerprints).
func (s *Session) suppressedIDs(allow, baseline string) (scan.Ignore, error) {
	ids := scan.Ignore{}
	b, err := s.readFlagFile("--allow", allow)
	if err != nil {
		return nil, err
	}
	scan.ParseIgnore(b, ids)
	if b, err = s.readFlagFile("--baseline", baseline); err != nil || b == nil {
		return ids, err
	}
	var fs []map[string]any
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--baseline %s: not a `rekey scan --report-format json` (or gitleaks) report: %v", baseline, err).WithHint("create one with `rekey scan --history --report-format json > %s`", baseline)
	}
	for _, m := range fs {
		if fp, ok := m["Fingerprint"].(string); ok && m["RuleID"] != nil {
			ids[fp] = true // a gitleaks report
			continue
		}
		var f scan.Finding
		raw, _ := json.Marshal(m)
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, rekey.Errorf(rekey.CodeInvalid, "--baseline %s: not a `rekey scan --report-format json` report: %v", baseline, err)
		}
		ids[scan.FindingID(f)] = true
	}
	return ids, nil
}

const hookMarker = "# installed by rekey scan --install-hook"

// Hook is the pre-commit hook `rekey scan --install-hook` installed.
type Hook struct {
	// Path is the hook's file; Bin and ConfigPath are what it runs.
	Path, Bin, ConfigPath string
	// Already: the same hook was installed already (nothing written).
	Already bool
}

// InstallHook writes the pre-commit hook of the git repository of path (""
// = the project's) to run `rekey scan --staged` with this binary and this
// rekey.yaml. It refuses to replace another hook unless force.
func (s *Session) InstallHook(ctx context.Context, path string, force bool) (*Hook, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	dir, err := s.scanDir(cfg, path)
	if err != nil {
		return nil, err
	}
	if !isGitRepo(ctx, dir) {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s is not in a git repository", dir)
	}
	hooks, err := gitsafe.Command(ctx, dir, "rev-parse", "--path-format=absolute", "--git-path", "hooks").Output()
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "git rev-parse --git-path hooks")
	}
	hookDir := strings.TrimSpace(string(hooks))
	bin, err := selfPath()
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "find the rekey binary")
	}
	h := &Hook{Path: filepath.Join(hookDir, "pre-commit"), Bin: bin, ConfigPath: cfg.Path}
	script := fmt.Sprintf(`#!/bin/sh
%s
# Blocks a commit whose staged files (or worktree) hold a value rekey manages,
# or a secret a rule finds. It needs the master key: REKEY_MASTER_KEY in the
# environment of git commit, or the key file %s names.
# Suppress a finding with a "rekey:allow" comment on its line; bypass once
# with git commit --no-verify.
exec %s --config %s scan --staged
`, hookMarker, filepath.Base(cfg.Path), shellQuote(bin), shellQuote(cfg.Path))
	if old, err := os.ReadFile(h.Path); err == nil {
		switch {
		case string(old) == script:
			h.Already = true
			return h, nil
		case !force && !strings.Contains(string(old), hookMarker):
			return nil, rekey.Errorf(rekey.CodeConflict, "%s exists and is not rekey's hook", h.Path).WithHint("add `%s --config %s scan --staged` to it yourself, or replace it with --install-hook --force", bin, cfg.Path)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "read pre-commit hook")
	}
	if err := os.MkdirAll(hookDir, 0o755); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "create hooks directory")
	}
	if err := writeNew(h.Path, script); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "write pre-commit hook")
	}
	return h, nil
}

// writeNew writes an executable file through a new temporary file beside
// it (O_EXCL never follows a link someone left there), renamed over path.
func writeNew(path, text string) error {
	tmp := path + ".rekey-tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
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
