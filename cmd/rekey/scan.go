package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/scan"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

type scanOptions struct {
	rkapp.ScanRequest
	format, reportPath string
	installHook, force bool
}

// scanLong is `rekey scan --help`.
const scanLong = `scan looks for every value the store holds — current, previous and retired
versions of every environment — in the working tree (default: the project
folder), and with --history in every object of the git repository: every
commit of every branch and tag, merge commits' own changes, stashes, and blobs
that no ref reaches any more (a value "removed" by a rewrite is still in the
object store). --staged scans the index. Each value is looked for raw, as
base64 and base64url at every byte alignment, as hex, URL-encoded and
JSON-escaped, also when it is wrapped across lines (a PEM body, MIME base64
at 64 or 76 columns, an indented YAML block: encoding "raw-wrapped",
"base64-wrapped"...). The values stay in memory only.

The project is --config's, else the rekey.yaml of the working directory
or above, else that of the scanned folder or above. Without one, scan runs
the pattern rules only, in any folder or git repository, and says so in
one line on stderr: a team can run it in CI before adopting the rest.

In the history a finding is reported once, at the commit that added its
line (as gitleaks reports what "git log -p" adds): a secret that stays in
a file through later edits and renames is not reported again for each.

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
(e.g. in a comment) reports nothing. The .gitleaksignore of the scanned
folder and of the repository's top level is honoured as gitleaks reads it:
"COMMIT:PATH:RULE:LINE" hides that commit's finding, "PATH:RULE:LINE" that
line in every commit and in the worktree (--no-gitleaksignore ignores it;
the built-in rules that gitleaks also has carry gitleaks' rule ids).
--allow FILE lists ids in the same forms, one a line (# comments): the id
of --report-format json, "[COMMIT:]PATH:RULE:LINE" or
"[COMMIT:]PATH:SECRET/ENV/vN:LINE", or a managed version's fingerprint
("fp:…", as rekey history prints it) to suppress every finding of that
version. Ids are made of the location, never of the value. --baseline FILE
takes a previous --report-format json (or gitleaks) report: the findings
it holds are not reported again.

--report-format (or --format) json writes rekey's findings (snake_case
keys, no empty field but "current"); sarif writes SARIF 2.1.0 (for
code-scanning dashboards): a current managed value or a rule match is an
error, a retired version a warning; gitleaks writes gitleaks' JSON report (RuleID,
StartLine, Commit, Fingerprint... as gitleaks v8 writes them, columns
counted as gitleaks counts them) so what reads gitleaks' reports reads
rekey's: Secret and Match are always "REDACTED" (rekey never writes the
matched text), a managed value's RuleID is "rekey-managed-secret".
--report-path FILE writes the report to FILE instead of stdout.

--install-hook writes the repository's pre-commit hook to run
"rekey scan --staged" (this binary, this rekey.yaml) and block a commit on
findings; it refuses to replace another hook without --force. The hook
needs the master key, like every rekey command: REKEY_MASTER_KEY in the
environment of git commit, or the key file rekey.yaml names.

Files and blobs larger than 4 MiB are read in overlapping windows of 4 MiB,
never whole: memory stays bounded (tens of MiB) whatever their size, and a
value across a window boundary is still found at its line. In such an input
a rule match longer than 64 KiB may be missed, and a "rekey:allow" on a
line longer than 64 KiB may not apply to a match far from it. Such a blob
is not diffed with its parents' either (git would load both whole): each
commit that changes it reports its secrets again.

In text output a path, rule or preview holding a control character (an
escape sequence, a line break) or a bidi override is printed quoted with
escapes ("a\x1b[2K.env"), as git does; the JSON reports keep it exact.

On a terminal, a long --history scan shows its progress on stderr.`

func (a *app) scanCommand() *cobra.Command {
	var o scanOptions
	c := &cobra.Command{
		Use: "scan [PATH] [--history] [--staged] [--since DATE] [--report-format text|json|sarif|gitleaks] [--report-path FILE] [--rules FILE] [--allow FILE] [--baseline FILE] [--install-hook]",
		Example: `  rekey scan
  rekey scan --history --report-format sarif > rekey.sarif
  rekey scan --history --report-format gitleaks --report-path gitleaks-report.json
  rekey scan --install-hook`,
		Short: "Find leaks: every managed version exactly, and well-known secret formats, in files and the whole git history",
		Long:  scanLong,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Path = args[0]
			}
			return a.runScan(cmd.Context(), o)
		},
	}
	c.Flags().BoolVar(&o.History, "history", false, "scan every object of the git repository")
	c.Flags().BoolVar(&o.Staged, "staged", false, "scan the blobs in the git index")
	c.Flags().StringVar(&o.Since, "since", "", "with --history, only commits newer than DATE (as git log --since)")
	c.Flags().StringVar(&o.format, "report-format", "text", "text, json, sarif or gitleaks (gitleaks' JSON report)")
	c.Flags().StringVar(&o.format, "format", "text", "the same as --report-format")
	c.Flags().StringVar(&o.reportPath, "report-path", "", "write the report to `FILE` instead of stdout")
	c.Flags().BoolVar(&o.NoGitleaksIgnore, "no-gitleaksignore", false, "do not honour the repository's .gitleaksignore")
	c.Flags().StringVar(&o.Rules, "rules", "", "gitleaks-format TOML rules `FILE` (replaces the built-in rules unless [extend] useDefault = true)")
	c.Flags().BoolVar(&o.NoRules, "no-rules", false, "look for managed values only")
	c.Flags().StringVar(&o.Allow, "allow", "", "`FILE` of finding ids not to report, one a line")
	c.Flags().StringVar(&o.Baseline, "baseline", "", "previous --format json report `FILE`: its findings are not reported again")
	c.Flags().BoolVar(&o.installHook, "install-hook", false, "install a git pre-commit hook running `rekey scan --staged`")
	c.Flags().BoolVar(&o.force, "force", false, "with --install-hook, replace an existing pre-commit hook")
	return c
}

func (a *app) runScan(ctx context.Context, o scanOptions) error {
	a.findingsExit = true
	switch o.format {
	case "text", "json", "sarif", "gitleaks":
	default:
		return rekey.Errorf(rekey.CodeInvalid, "--report-format %q: want text, json, sarif or gitleaks", o.format)
	}
	if o.installHook {
		h, err := a.s().InstallHook(ctx, o.Path, o.force)
		if err != nil {
			return err
		}
		if h.Already {
			fmt.Fprintf(a.out(), "pre-commit hook %s is already installed\n", textsafe.Quote(h.Path))
			return nil
		}
		fmt.Fprintf(a.out(), "installed pre-commit hook %s\nit runs: %s --config %s scan --staged\nit needs the master key (REKEY_MASTER_KEY, or the key file rekey.yaml names) when you commit\n", textsafe.Quote(h.Path), textsafe.Quote(h.Bin), textsafe.Quote(h.ConfigPath))
		return nil
	}
	if f, ok := a.m.Stderr.(*os.File); ok && o.History && !a.quiet && term.IsTerminal(int(f.Fd())) {
		o.Progress = func() (func(done, total int64), func()) { return progressPrinter(f, time.Now, time.Second) }
	}
	r, err := a.s().Scan(ctx, o.ScanRequest)
	if err != nil {
		return err
	}
	if r.NoProject {
		fmt.Fprintf(a.m.Stderr, "rekey: %s\n", rkapp.NoProjectNote)
	}
	if len(r.Findings) > 0 {
		a.exit = 1
	}
	w, done, err := a.reportWriter(o.reportPath)
	if err != nil {
		return err
	}
	switch o.format {
	case "sarif":
		err = scan.WriteSARIF(w, r.Findings, r.Rules, "")
	case "gitleaks":
		err = scan.WriteGitleaks(w, r.Findings, r.Rules)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(append([]scan.Finding{}, r.Findings...)) // [] when none, never null
	default:
		a.printFindings(w, r)
	}
	return done(err)
}

// reportWriter is where the report goes: stdout, or the file path (created
// or truncated; done closes it).
func (a *app) reportWriter(path string) (io.Writer, func(error) error, error) {
	if path == "" {
		return a.out(), func(err error) error { return err }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, rekey.Wrap(rekey.CodeInvalid, err, "--report-path")
	}
	return f, func(err error) error {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = rekey.Wrap(rekey.CodeInternal, cerr, "--report-path")
		}
		return err
	}, nil
}

// printFindings prints a scan's findings as text. Paths, rule ids and the
// matched text come from the repository and the rules file: quoted when
// they hold a control character (textsafe), so they cannot rewrite or add
// lines.
func (a *app) printFindings(w io.Writer, r *rkapp.ScanReport) {
	q := textsafe.Quote
	for _, f := range r.Findings {
		loc := q(f.Path)
		if f.Path == "" {
			loc = "blob " + q(f.Blob)
		}
		where := f.Where
		if f.Commit != "" {
			where += " " + q(f.Commit[:min(12, len(f.Commit))]) + " " + f.AuthorDate.UTC().Format("2006-01-02")
		}
		if f.Rule != "" {
			fmt.Fprintf(w, "%s:%d: %s %s [%s] %s — not managed by rekey: revoke it where it was issued\n", loc, f.Line, q(f.Rule), q(f.Redacted), where, q(f.ID))
			continue
		}
		state := "retired"
		if f.Current {
			state = "CURRENT: rotate now"
		}
		fmt.Fprintf(w, "%s:%d: %s v%d (%s) %s as %s [%s] %s — %s\n", loc, f.Line, q(f.Secret), f.Version, q(f.Env), q(f.Redacted), f.Encoding, where, q(f.Fingerprint), state)
	}
	if len(r.Findings) == 0 {
		rs := ""
		if r.Rules != nil {
			rs = fmt.Sprintf("; no rule matched (%d rules)", len(r.Rules.Rules))
		}
		if r.NoProject {
			fmt.Fprintf(w, "no rule matched (%d rules)\n", len(r.Rules.Rules))
		} else {
			fmt.Fprintf(w, "no managed value found (%d versions searched)%s\n", r.Versions, rs)
		}
	}
	if r.Suppressed > 0 {
		fmt.Fprintf(w, "%d findings suppressed by --allow/--baseline/.gitleaksignore\n", r.Suppressed)
	}
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
