package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/gitsafe"
	"github.com/rekeyhq/rekey/internal/scan"
	"github.com/spf13/cobra"
)

// The statuses of a doctor check.
const (
	checkPass = "PASS"
	checkWarn = "WARN"
	checkFail = "FAIL"
)

// doctorCheck is one line of `rekey doctor`. Detail and Fix never hold a value.
type doctorCheck struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// maxTrackedFile is the size above which tracked-values does not read a file.
const maxTrackedFile = 10 << 20

// minSearchLen is the shortest value tracked-values searches for: shorter
// ones would match by chance (and are reported as weak by strength).
const minSearchLen = 8

func (a *app) doctorCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "Check the project against the runbook's best practices",
		Long: `doctor checks the project against the Best Practices of the rotation
runbook and prints one line per practice, PASS, WARN or FAIL, with a fix for
each that does not pass:

  env-ignored          every .env target is ignored by git
  env-never-committed  no commit in any ref ever contained a .env target
  example              a .env.example sits beside each .env and holds no real
                       value: no stored version of a secret, and no value that
                       looks like a credential (a provider prefix such as sk-
                       or whsec_, a high-entropy string, a URL with a
                       credential), managed or not
  file-modes           no secret file is readable by others; the store and the
                       master key file are 0600; a .env its group can read is a
                       warning; the detail says who can read each file
  env-distinct         no secret has the same current value in two environments
  strength             no secret is weak
  schedule             nothing is overdue (due-soon is a warning)
  log-level            the production .env does not log at debug or trace
  tracked-values       no managed value, old or current, is in a file tracked by git
  audit-chain          the audit log's hash chain is intact
  master-key-outside   the master key file is outside the project and the repository
  config-approved      rekey.yaml is approved on this machine as it is (` + "`rekey config trust`" + `)

A check that cannot run (not a git repository, git not installed) is a WARN
saying why. doctor compares values in-process only; it never prints one and
never hands one to git. It exits 0 when nothing fails and 1 when something
does. --json prints an array of {check, status, detail, fix}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDoctor(cmd.Context(), asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// doctorRun holds what the checks share.
type doctorRun struct {
	a       *app
	ctx     context.Context
	cfg     *config.Config
	st      rekey.Store
	git     *gitRepo // nil when not a git repository
	gitWhy  string   // why git is nil
	targets []config.Target
}

func (a *app) runDoctor(ctx context.Context, asJSON bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	d := &doctorRun{a: a, ctx: ctx, cfg: cfg, st: st}
	d.git, d.gitWhy = a.findGit(cfg.Dir)
	seen := map[string]bool{}
	for _, e := range cfg.Environments {
		for _, t := range e.Targets {
			if t.Type == config.TargetDotenv && !seen[t.Path] {
				seen[t.Path] = true
				d.targets = append(d.targets, t)
			}
		}
	}

	// The values of every version are unsealed once, for the checks that
	// compare them with files, and wiped at the end.
	vals, err := d.loadValues()
	defer func() {
		for _, v := range vals {
			v.wipe()
		}
	}()
	if err != nil {
		return err
	}

	checks := []doctorCheck{
		d.checkEnvIgnored(),
		d.checkEnvNeverCommitted(),
		d.checkExample(vals),
		d.checkFileModes(),
		d.checkEnvDistinct(),
	}
	strength, schedule, err := d.checkStatus()
	if err != nil {
		return err
	}
	checks = append(checks, strength, schedule, d.checkLogLevel(), d.checkTrackedValues(vals), d.checkAuditChain(), d.checkMasterKeyOutside(), d.checkTLS(), d.checkConfigApproved())

	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "doctor", Outcome: "ok", Detail: doctorSummary(checks)}); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(checks); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(w, "%s\t%s\t%s\n", c.Status, c.Check, c.Detail)
			if c.Status != checkPass && c.Fix != "" {
				fmt.Fprintf(w, "\t\tfix: %s\n", c.Fix)
			}
		}
		w.Flush()
		fmt.Fprintf(a.out(), "\n%s\n", doctorSummary(checks))
	}
	for _, c := range checks {
		if c.Status == checkFail {
			a.exit = 1
		}
	}
	return nil
}

func doctorSummary(checks []doctorCheck) string {
	n := map[string]int{}
	for _, c := range checks {
		n[c.Status]++
	}
	return fmt.Sprintf("%d passed, %d warnings, %d failed", n[checkPass], n[checkWarn], n[checkFail])
}

func pass(check, detail string) doctorCheck {
	return doctorCheck{Check: check, Status: checkPass, Detail: detail}
}

func warn(check, detail, fix string) doctorCheck {
	return doctorCheck{Check: check, Status: checkWarn, Detail: detail, Fix: fix}
}

func fail(check, detail, fix string) doctorCheck {
	return doctorCheck{Check: check, Status: checkFail, Detail: detail, Fix: fix}
}

func (d *doctorRun) rel(p string) string { return relTo(d.cfg.Dir, p) }

// noGit is the WARN of a git check that cannot run.
func (d *doctorRun) noGit(check string) doctorCheck {
	return warn(check, "skipped: "+d.gitWhy, "run rekey doctor inside the project's git repository")
}

// storedValue is one unsealed version. Its value is never printed.
type storedValue struct {
	env, name string
	n         int
	value     rekey.Value
	needles   [][]byte // the value, and its percent-encoded forms when they differ
}

// wipe zeroes the value and its encoded forms.
func (v storedValue) wipe() {
	v.value.Wipe()
	for _, n := range v.needles {
		clear(n)
	}
}

// in reports whether data holds the value as is or percent-encoded (as a
// derived URL embeds it).
func (v storedValue) in(data []byte) bool {
	for _, n := range v.needles {
		if len(n) > 0 && bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

func (v storedValue) label() string { return fmt.Sprintf("%s v%d (%s)", v.name, v.n, v.env) }

func (d *doctorRun) loadValues() ([]storedValue, error) {
	var out []storedValue
	err := eachVersion(d.ctx, d.st, func(v rekey.Version, val rekey.Value) {
		sv := storedValue{env: v.Env, name: v.Name, n: v.N, value: val, needles: [][]byte{val.Reveal()}}
		for _, q := range []string{url.QueryEscape(val.RevealString()), url.PathEscape(val.RevealString())} {
			if q != val.RevealString() {
				sv.needles = append(sv.needles, []byte(q))
			}
		}
		out = append(out, sv)
	})
	return out, err
}

// --- git ---------------------------------------------------------------------

// gitRepo runs git in a repository. Its children get no secret: values are
// compared in-process, and the environment is stripped of rekey's keys and of
// every managed name.
type gitRepo struct {
	root string
	env  []string
}

func (a *app) findGit(dir string) (*gitRepo, string) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, "git is not installed"
	}
	g := &gitRepo{env: a.gitEnv()}
	out, err := g.run(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, "not a git repository"
	}
	g.root = strings.TrimRight(string(out), "\r\n")
	if r, err := filepath.EvalSymlinks(g.root); err == nil {
		g.root = r
	}
	return g, ""
}

// gitEnv is the environment of git children: ours and the test overrides,
// without REKEY_* and without any variable named like a managed secret or
// derived value (rekey doctor may run under rekey run).
func (a *app) gitEnv() []string {
	drop := map[string]bool{}
	if a.cfg != nil {
		for _, s := range a.cfg.Secrets {
			drop[s.Name] = true
		}
		for _, e := range a.cfg.Environments {
			for _, dv := range a.cfg.DerivedFor(e.Name) {
				drop[dv.Name] = true
			}
		}
	}
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	for k, v := range a.m.Env {
		vars[k] = v
	}
	var out []string
	for _, k := range sortedKeys(vars) {
		if strings.HasPrefix(k, "REKEY_") || drop[k] {
			continue
		}
		out = append(out, k+"="+vars[k])
	}
	return append(out, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
}

func (g *gitRepo) cmd(dir string, args ...string) *exec.Cmd {
	c := gitsafe.CommandEnv(context.Background(), g.env, dir, args...)
	c.Stdin = nil
	return c
}

func (g *gitRepo) run(dir string, args ...string) ([]byte, error) {
	var errb bytes.Buffer
	c := g.cmd(dir, args...)
	c.Stderr = &errb
	out, err := c.Output()
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return out, fmt.Errorf("git %s: %v: %s", args[0], err, msg)
	}
	return out, nil
}

// inside reports whether path is in the repository, and its slash path there.
func (g *gitRepo) inside(path string) (string, bool) {
	return insideDir(g.root, path)
}

// insideDir reports whether path is dir or below it (after resolving
// symbolic links of the folders that exist), and the relative slash path.
func insideDir(dir, path string) (string, bool) {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	path = resolveExisting(path)
	r, err := filepath.Rel(dir, path)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// resolveExisting resolves the symbolic links of the longest existing prefix of path.
func resolveExisting(path string) string {
	path = filepath.Clean(path)
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	parent := filepath.Dir(path)
	if parent == path {
		return path
	}
	return filepath.Join(resolveExisting(parent), filepath.Base(path))
}

// ignored reports whether git ignores the repository path rel.
func (g *gitRepo) ignored(rel string) (bool, error) {
	c := g.cmd(g.root, "check-ignore", "-q", "--", rel)
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("git check-ignore: %v", err)
	}
}

// --- checks ------------------------------------------------------------------

func (d *doctorRun) checkEnvIgnored() doctorCheck {
	const name = "env-ignored"
	if d.git == nil {
		return d.noGit(name)
	}
	var bad, ok, outside []string
	for _, t := range d.targets {
		rel, in := d.git.inside(t.Path)
		if !in {
			outside = append(outside, d.rel(t.Path))
			continue
		}
		ign, err := d.git.ignored(rel)
		if err != nil {
			return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
		}
		if ign {
			ok = append(ok, rel)
		} else {
			bad = append(bad, rel)
		}
	}
	if len(bad) > 0 {
		return fail(name, "not ignored by git: "+strings.Join(bad, ", "),
			"add "+strings.Join(bad, ", ")+" to .gitignore (and `git rm --cached` it if it is tracked)")
	}
	detail := "ignored by git: " + strings.Join(ok, ", ")
	if len(ok) == 0 {
		detail = "no .env target inside the repository"
	}
	if len(outside) > 0 {
		detail += "; outside the repository: " + strings.Join(outside, ", ")
	}
	return pass(name, detail)
}

func (d *doctorRun) checkEnvNeverCommitted() doctorCheck {
	const name = "env-never-committed"
	if d.git == nil {
		return d.noGit(name)
	}
	var bad []string
	var checked []string
	for _, t := range d.targets {
		rel, in := d.git.inside(t.Path)
		if !in {
			continue
		}
		out, err := d.git.run(d.git.root, "log", "--all", "--format=%H", "--", rel)
		if err != nil {
			if strings.Contains(err.Error(), "does not have any commits") {
				checked = append(checked, rel)
				continue
			}
			return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			checked = append(checked, rel)
			continue
		}
		first := ids[len(ids)-1] // log lists newest first
		bad = append(bad, fmt.Sprintf("%s is in the history since commit %s (%d commits touch it)", rel, first, len(ids)))
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "),
			"every secret in it is exposed: `rekey rotate --all --emergency`, rotate the user-managed keys at their providers (`rekey set`), then `rekey scan --history`")
	}
	if len(checked) == 0 {
		return pass(name, "no .env target inside the repository")
	}
	return pass(name, "never committed in any ref: "+strings.Join(checked, ", "))
}

func (d *doctorRun) checkExample(vals []storedValue) doctorCheck {
	const name = "example"
	fps := map[string][]storedValue{}
	for _, v := range vals {
		fp := d.st.Fingerprint(v.value)
		fps[fp] = append(fps[fp], v)
	}
	var missing, leaks, credLike, ok []string
	done := map[string]bool{}
	for _, t := range d.targets {
		p := filepath.Join(filepath.Dir(t.Path), ".env.example")
		if done[p] {
			continue
		}
		done[p] = true
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, d.rel(p))
			continue
		}
		if err != nil {
			return warn(name, fmt.Sprintf("skipped: cannot read %s", d.rel(p)), "make it readable")
		}
		found := map[string]string{} // version label → how it is there
		var looks []string           // values that look like credentials, managed or not
		if f, err := dotenv.Parse(d.rel(p), data); err == nil {
			for _, k := range f.Keys() {
				v, _ := f.Get(k)
				if v == "" {
					continue
				}
				val := rekey.NewValueString(v)
				for _, sv := range fps[d.st.Fingerprint(val)] {
					found[sv.label()] = k + " is " + sv.label()
				}
				val.Wipe()
				if why := exampleCredential(k, v); why != "" {
					looks = append(looks, fmt.Sprintf("%s:%d: %s holds %s", d.rel(p), f.Line(k), k, why))
				}
			}
		}
		// Values embedded in longer ones (a password inside DATABASE_URL).
		for _, sv := range vals {
			if _, ok := found[sv.label()]; !ok && sv.value.Len() >= minSearchLen && sv.in(data) {
				found[sv.label()] = "holds " + sv.label()
			}
		}
		if len(found) > 0 {
			var what []string
			for _, l := range sortedKeys(found) {
				what = append(what, found[l])
			}
			leaks = append(leaks, d.rel(p)+": "+strings.Join(what, ", "))
		}
		credLike = append(credLike, looks...)
		if len(found) == 0 && len(looks) == 0 {
			ok = append(ok, d.rel(p))
		}
	}
	if len(leaks) > 0 || len(credLike) > 0 {
		var detail []string
		if len(leaks) > 0 {
			detail = append(detail, "real values in "+strings.Join(leaks, "; "))
		}
		if len(credLike) > 0 {
			detail = append(detail, "values that look like credentials: "+strings.Join(credLike, "; "))
		}
		return fail(name, strings.Join(detail, "; "),
			"treat them as leaked: rotate the managed ones (`rekey rotate NAME --emergency`) and the others at their providers, then rewrite the file with `rekey example --force` (placeholders only)")
	}
	if len(missing) > 0 {
		return warn(name, "missing: "+strings.Join(missing, ", "), "run `rekey example` and commit the result")
	}
	if len(ok) == 0 {
		return pass(name, "no .env target")
	}
	return pass(name, "no real value in "+strings.Join(ok, ", "))
}

// defaultScanRules are scan's built-in rules, compiled once.
var defaultScanRules = sync.OnceValue(scan.DefaultRules)

// exampleCredential says why the value v of key in a .env.example looks
// like a credential ("" when it does not): rekey.CredentialLike (a provider
// prefix, a connection string with a credential, a high-entropy string, a
// password-like value under a secret's name), or a format of scan's built-in
// rules (a JWT, a PEM private key, a cloud key). Never the value.
func exampleCredential(key, v string) string {
	if v == examplePlaceholder {
		return ""
	}
	if why := rekey.CredentialLike(key, v); why != "" {
		return why
	}
	for _, r := range defaultScanRules().Rules {
		if r.ID == "generic-secret" || r.Regex == nil {
			continue // CredentialLike covers it, on the value alone
		}
		m := r.Regex.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		secret := m[0]
		for _, g := range m[1:] {
			if g != "" {
				secret = g
				break
			}
		}
		if r.Entropy == 0 || scan.Entropy([]byte(secret)) >= r.Entropy {
			return "a " + r.Description
		}
	}
	return ""
}

// checkFileModes: no secret file is open to others (FAIL); the store and
// the master key file are 0600 or stricter (FAIL: nothing but rekey reads
// them); a .env target readable by its group is a WARN (a service may read it
// through its group: rotations keep those bits). The detail says who can
// read each file.
func (d *doctorRun) checkFileModes() doctorCheck {
	const name = "file-modes"
	type secretFile struct {
		path   string
		target bool // a .env target (else the store or the key file)
	}
	var files []secretFile
	for _, t := range d.targets {
		files = append(files, secretFile{t.Path, true})
	}
	files = append(files, secretFile{d.cfg.Store.Path, false})
	if p, ok := strings.CutPrefix(d.cfg.Store.MasterKey, config.MasterKeyFile); ok {
		files = append(files, secretFile{p, false})
	}
	var bad, badNames, groupRead, missing, who []string
	fix := map[string]string{}
	for _, f := range files {
		rel := d.rel(f.path)
		fi, err := os.Stat(f.path)
		if err != nil {
			missing = append(missing, rel)
			continue
		}
		perm := fi.Mode().Perm()
		ids, readers := fileAccess(fi)
		who = append(who, rel+" ("+ids+"): "+readers)
		switch {
		case perm&0o007 != 0 || (!f.target && perm&0o077 != 0):
			bad = append(bad, fmt.Sprintf("%s is %04o", rel, perm))
			badNames = append(badNames, rel)
			if f.target && perm&0o070 != 0 {
				fix[rel] = fmt.Sprintf("chmod 600 %s (or chmod %03o %s if a service reads it through its group)", rel, secretMode(perm), rel)
			} else {
				fix[rel] = "chmod 600 " + rel
			}
		case perm&0o070 != 0:
			_, gid := fileIDs(fi)
			groupRead = append(groupRead, fmt.Sprintf("%s is %04o: group %s can read it", rel, perm, groupName(gid)))
		}
	}
	readers := "who can read them (root aside): " + strings.Join(who, "; ")
	if len(bad) > 0 {
		var fixes []string
		for _, n := range badNames {
			fixes = append(fixes, fix[n])
		}
		f := strings.Join(fixes, "; ")
		if len(fixes) > 1 && !strings.Contains(f, "(") {
			f = "chmod 600 " + strings.Join(badNames, " ")
		}
		return fail(name, strings.Join(bad, ", ")+" — "+readers, f)
	}
	if len(missing) > 0 {
		return warn(name, "cannot stat "+strings.Join(missing, ", "), "create them, or fix their paths in rekey.yaml")
	}
	if len(groupRead) > 0 {
		return warn(name, strings.Join(groupRead, ", ")+" — "+readers,
			"make sure only the users of the service that reads it are in that group; if none reads it through its group, chmod 600 it")
	}
	return pass(name, fmt.Sprintf("%d files are 0600 or stricter — %s", len(files), readers))
}

func (d *doctorRun) checkEnvDistinct() doctorCheck {
	const name = "env-distinct"
	// secret name → fingerprint → environments
	shared := map[string]map[string][]string{}
	var envs []string
	err := d.st.View(d.ctx, func(tx rekey.Tx) error {
		var err error
		envs, err = tx.Environments()
		if err != nil {
			return err
		}
		for _, env := range envs {
			cur, err := tx.AllLabeled(env, rekey.LabelCurrent)
			if err != nil {
				return err
			}
			for n, v := range cur {
				if shared[n] == nil {
					shared[n] = map[string][]string{}
				}
				shared[n][v.Fingerprint] = append(shared[n][v.Fingerprint], env)
			}
		}
		return nil
	})
	if err != nil {
		return warn(name, "skipped: "+err.Error(), "run `rekey status` to see why the store cannot be read")
	}
	if len(envs) < 2 {
		return pass(name, fmt.Sprintf("%d environment in the store: nothing to compare", len(envs)))
	}
	var bad []string
	for _, n := range sortedKeys(shared) {
		for _, fp := range sortedKeys(shared[n]) {
			if e := shared[n][fp]; len(e) > 1 {
				sort.Strings(e)
				bad = append(bad, fmt.Sprintf("%s is the same in %s", n, strings.Join(e, ", ")))
			}
		}
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "), "rotate it in all but one of them: `rekey rotate NAME -e ENV` (user-managed keys: issue one per environment, `rekey set NAME -e ENV`)")
	}
	return pass(name, fmt.Sprintf("current values differ across %s", strings.Join(envs, ", ")))
}

func (d *doctorRun) checkStatus() (strength, schedule doctorCheck, err error) {
	var weak, overdue, soon []string
	for _, e := range d.cfg.Environments {
		rows, err := d.a.computeStatus(d.ctx, d.cfg, d.st, e.Name)
		if err != nil {
			return doctorCheck{}, doctorCheck{}, err
		}
		for _, r := range rows {
			id := r.Name + " (" + e.Name + ")"
			switch r.State {
			case rekey.StateWeak:
				weak = append(weak, fmt.Sprintf("%s: %d bits", id, r.Bits))
			case rekey.StateOverdue:
				overdue = append(overdue, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			case rekey.StateDueSoon:
				soon = append(soon, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			}
		}
	}
	if len(weak) > 0 {
		strength = fail("strength", "weak: "+strings.Join(weak, ", "), "rotate them to generated values: `rekey rotate NAME` (user-managed keys: get a longer one, `rekey set NAME`)")
	} else {
		strength = pass("strength", "no weak secret")
	}
	switch {
	case len(overdue) > 0:
		schedule = fail("schedule", "overdue: "+strings.Join(overdue, ", "), "`rekey rotate --due`, and rotate user-managed keys at their providers (`rekey set NAME`)")
	case len(soon) > 0:
		schedule = warn("schedule", "due soon: "+strings.Join(soon, ", "), "`rekey rotate --due` when they fall due, or now")
	default:
		schedule = pass("schedule", "nothing overdue or due soon")
	}
	return strength, schedule, nil
}

// isLogLevelKey reports whether key names a log level setting.
func isLogLevelKey(key string) bool {
	k := strings.ToUpper(key)
	return k == "RUST_LOG" || k == "LOG_LEVEL" || strings.HasSuffix(k, "_LOG_LEVEL")
}

// verboseLevel returns "debug" or "trace" when a log filter (RUST_LOG syntax:
// level, or target=level directives separated by commas) enables one.
func verboseLevel(v string) string {
	for _, dir := range strings.Split(strings.ToLower(v), ",") {
		dir = strings.TrimSpace(dir)
		if i := strings.IndexByte(dir, '/'); i >= 0 { // RUST_LOG's "/regex" filter
			dir = dir[:i]
		}
		if i := strings.LastIndexByte(dir, '='); i >= 0 {
			dir = dir[i+1:]
		}
		if dir = strings.TrimSpace(dir); dir == "debug" || dir == "trace" {
			return dir
		}
	}
	return ""
}

func (d *doctorRun) checkLogLevel() doctorCheck {
	const name = "log-level"
	env, ok := d.cfg.Environment("production")
	if !ok {
		var err error
		if env, err = d.a.environment(d.cfg); err != nil {
			return warn(name, "skipped: no production environment", "name the production environment \"production\" in rekey.yaml")
		}
	}
	var bad, seen []string
	for _, t := range env.Targets {
		if t.Type != config.TargetDotenv {
			continue
		}
		data, err := os.ReadFile(t.Path)
		if err != nil {
			return warn(name, "skipped: cannot read "+d.rel(t.Path), "create it, or fix its path in rekey.yaml")
		}
		f, err := dotenv.Parse(d.rel(t.Path), data)
		if err != nil {
			return warn(name, "skipped: "+d.rel(t.Path)+" does not parse", "run `rekey status` to see the error")
		}
		for _, k := range f.Keys() {
			if !isLogLevelKey(k) {
				continue
			}
			v, _ := f.Get(k)
			seen = append(seen, k)
			if lvl := verboseLevel(v); lvl != "" {
				bad = append(bad, fmt.Sprintf("%s in %s enables %s", k, d.rel(t.Path), lvl))
			}
		}
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "), "set RUST_LOG=info (LOG_LEVEL=info) in production: debug logs leak secrets")
	}
	if len(seen) == 0 {
		return pass(name, "no log level set in "+env.Name)
	}
	return pass(name, "no debug or trace logging in "+env.Name+": "+strings.Join(seen, ", "))
}

func (d *doctorRun) checkTrackedValues(vals []storedValue) doctorCheck {
	const name = "tracked-values"
	if d.git == nil {
		return d.noGit(name)
	}
	skip := map[string]bool{} // .env targets that git ignores
	for _, t := range d.targets {
		if rel, in := d.git.inside(t.Path); in {
			if ign, err := d.git.ignored(rel); err == nil && ign {
				skip[rel] = true
			}
		}
	}
	out, err := d.git.run(d.git.root, "ls-files", "-z", "--cached")
	if err != nil {
		return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
	}
	var search []storedValue
	short := 0
	for _, v := range vals {
		if v.value.Len() >= minSearchLen {
			search = append(search, v)
		} else if v.value.Len() > 0 {
			short++
		}
	}
	files, big := 0, 0
	found := map[string]bool{}
	var hits []string
	for _, rel := range strings.Split(string(out), "\x00") {
		if rel == "" || skip[rel] {
			continue
		}
		p := filepath.Join(d.git.root, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, a symbolic link or a submodule
		}
		if fi.Size() > maxTrackedFile {
			big++
			continue
		}
		data, err := readFileLimit(p, maxTrackedFile)
		if err != nil {
			continue
		}
		files++
		for _, v := range search {
			if v.in(data) {
				h := rel + ": " + v.label()
				if !found[h] {
					found[h] = true
					hits = append(hits, h)
				}
			}
		}
		clear(data)
	}
	if len(hits) > 0 {
		return fail(name, "managed values in tracked files: "+strings.Join(hits, "; "),
			"rotate each named secret (`rekey rotate NAME --emergency`, user-managed: at the provider) and remove the value from the file")
	}
	detail := fmt.Sprintf("%d values searched in %d tracked files", len(search), files)
	if big > 0 {
		detail += fmt.Sprintf(" (%d files over 10 MB skipped)", big)
	}
	if short > 0 {
		detail += fmt.Sprintf(" (%d values under %d bytes not searched)", short, minSearchLen)
	}
	return pass(name, detail)
}

func readFileLimit(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(bufio.NewReader(io.LimitReader(f, limit+1)))
}

func (d *doctorRun) checkAuditChain() doctorCheck {
	const name = "audit-chain"
	n, err := d.st.VerifyAudit(d.ctx)
	var missing []string
	if au, ok := d.st.(interface {
		Authenticate(context.Context, bool) error
		Unaudited(context.Context) ([]string, error)
	}); ok && err == nil {
		if err = au.Authenticate(d.ctx, true); err == nil {
			missing, err = au.Unaudited(d.ctx)
		}
	}
	if err != nil {
		return fail(name, err.Error(), "the store was edited outside rekey: restore it from a backup and find out who had write access to "+d.rel(d.cfg.Store.Path))
	}
	if len(missing) > 0 {
		return fail(name, fmt.Sprintf("%d versions or rotations have no audit entry (first: %s)", len(missing), missing[0]), "they were made outside rekey or their entries were cut: restore the store from a backup; `rekey audit verify` lists them")
	}
	return pass(name, fmt.Sprintf("audit chain ok: %d entries; every row authenticated and audited", n))
}

func (d *doctorRun) checkMasterKeyOutside() doctorCheck {
	const name = "master-key-outside"
	p, ok := strings.CutPrefix(d.cfg.Store.MasterKey, config.MasterKeyFile)
	if !ok {
		return pass(name, "the master key is not a file ("+d.cfg.Store.MasterKey+")")
	}
	if _, in := insideDir(d.cfg.Dir, p); in {
		return fail(name, "the master key file "+d.rel(p)+" is inside the project folder", "move it out (e.g. to ~/.config/rekey/keys/) and update store.master_key in rekey.yaml")
	}
	if d.git != nil {
		if _, in := d.git.inside(p); in {
			return fail(name, "the master key file "+p+" is inside the git repository "+d.git.root, "move it out of the repository and update store.master_key in rekey.yaml")
		}
	}
	return pass(name, "the master key file is outside the project and the repository")
}
