package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/scan"
	"github.com/spf13/cobra"
)

type scanOptions struct {
	history, staged bool
	since, format   string
}

func (a *app) scanCommand() *cobra.Command {
	var o scanOptions
	c := &cobra.Command{
		Use:   "scan [PATH] [--history] [--staged] [--since DATE] [--format text|json]",
		Short: "Find the exact values rekey manages (every version) in files and the whole git history",
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
(Not yet: pattern rules for unmanaged secrets, gitleaks rules, SARIF, baselines,
allowlists, --install-hook.)`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runScan(cmd.Context(), o, args) },
	}
	c.Flags().BoolVar(&o.history, "history", false, "scan every object of the git repository")
	c.Flags().BoolVar(&o.staged, "staged", false, "scan the blobs in the git index")
	c.Flags().StringVar(&o.since, "since", "", "with --history, only commits newer than DATE (as git log --since)")
	c.Flags().StringVar(&o.format, "format", "text", "text or json")
	return c
}

func (a *app) runScan(ctx context.Context, o scanOptions, args []string) error {
	if o.format != "text" && o.format != "json" {
		return rekey.Errorf(rekey.CodeInvalid, "--format %q: want text or json", o.format)
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
	err = st.View(ctx, func(tx rekey.Tx) error {
		envs, err := tx.Environments()
		if err != nil {
			return err
		}
		for _, env := range envs {
			names, err := tx.Names(env)
			if err != nil {
				return err
			}
			for _, name := range names {
				vs, err := tx.Versions(env, name)
				if err != nil {
					return err
				}
				for _, v := range vs {
					val, err := tx.Value(env, name, v.N)
					if err != nil {
						return err
					}
					secrets = append(secrets, scan.Secret{Env: env, Name: name, Version: v.N, Current: v.Label == rekey.LabelCurrent, Fingerprint: v.Fingerprint, Value: val})
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m := scan.NewMatcher(secrets)
	defer m.Wipe()
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
			cmd := exec.CommandContext(ctx, "git", "-C", filepath.Dir(full), "check-ignore", "-q", filepath.Base(full))
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
				return false // tracked or not ignored: a finding
			}
			return err == nil || !isGitRepo(ctx, filepath.Dir(full)) // outside git, the target is its own place
		}
	}
	var findings []scan.Finding
	if isGitRepo(ctx, dir) {
		top, _ := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--show-toplevel").Output()
		findings, err = scan.ScanRepo(ctx, dir, m, scan.Options{History: o.history, Staged: o.staged, Since: o.since, Ignore: ignore(strings.TrimSpace(string(top)))})
	} else {
		if o.history || o.staged {
			return rekey.Errorf(rekey.CodeInvalid, "%s is not in a git repository", dir).WithHint("drop --history/--staged to scan the files only")
		}
		findings, err = scan.ScanDir(ctx, dir, m, ignore(dir))
	}
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "scan")
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "scan", Outcome: fmt.Sprintf("%d findings", len(findings)), Detail: fmt.Sprintf("history=%v staged=%v", o.history, o.staged)}); err != nil {
		return err
	}
	if o.format == "json" {
		if findings == nil {
			findings = []scan.Finding{}
		}
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			loc := f.Path
			if loc == "" {
				loc = "blob " + f.Blob
			}
			where := f.Where
			if f.Commit != "" {
				where += " " + f.Commit[:min(12, len(f.Commit))] + " " + f.AuthorDate.UTC().Format("2006-01-02")
			}
			state := "retired"
			if f.Current {
				state = "CURRENT: rotate now"
			}
			fmt.Fprintf(a.out(), "%s:%d: %s v%d (%s) %s as %s [%s] %s — %s\n", loc, f.Line, f.Secret, f.Version, f.Env, f.Redacted, f.Encoding, where, f.Fingerprint, state)
		}
		if len(findings) == 0 {
			fmt.Fprintf(a.out(), "no managed value found (%d versions searched)\n", len(secrets))
		}
	}
	if len(findings) > 0 {
		a.exit = 1
	}
	return nil
}

func isGitRepo(ctx context.Context, dir string) bool {
	return exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--git-dir").Run() == nil
}
