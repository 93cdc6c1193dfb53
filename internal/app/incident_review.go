package app

// An incident's access review and scan (issue 15, item 1): who read the
// exposed secrets, by the audit log's evidence (readby.go's evidenceOf),
// and where the exposed versions still appear in the project.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/proc"
	"github.com/rekeyhq/rekey/internal/report"
)

// AccessReview is the access review of an incident (report.AccessReview):
// the reads of its exposed secrets since Since, grouped by actor and
// action, and the processes `rekey run` started with them.
type AccessReview = report.AccessReview

// accessReview gathers the review from the verified audit chain and
// records it as one event (failed when the chain is broken: no evidence).
func (r *incidentRun) accessReview(ctx context.Context, _ *config.Config, res *IncidentResult) error {
	rev, err := r.s.accessReview(ctx, r.st, r.inc, r.inc.OpenedAt.Add(-IncidentWindow))
	if err != nil {
		return r.event(ctx, rekey.ActionAccessReview, "", rekey.OutcomeFailed, err.Error())
	}
	res.Access = rev
	return r.event(ctx, rekey.ActionAccessReview, "", rekey.OutcomeOK, rev.Summary())
}

// accessReview lists every audit entry of inc's environment since since
// that put one of inc's secrets in a person's hands (a `rekey get`, a
// `rekey run`, a value supplied), grouped by actor and action, in order of
// first appearance.
func (s *Session) accessReview(ctx context.Context, st rekey.Store, inc *rekey.Incident, since time.Time) (*AccessReview, error) {
	entries, n, err := verifiedAudit(ctx, st, "access review", "")
	if err != nil {
		return nil, err
	}
	exposed := map[string]bool{}
	for _, sec := range inc.Secrets {
		exposed[sec.Name] = true
	}
	out := &AccessReview{Since: since, Checked: n, Reads: []report.AccessRead{}, Processes: []report.RunProcess{}}
	idx := map[[2]string]int{}
	for _, e := range entries {
		if e.Env != inc.Env || e.Time.Before(since) || e.Time.After(inc.OpenedAt) {
			continue
		}
		_, names := evidenceOf(e)
		k := [2]string{e.Actor, e.Action}
		for _, name := range names {
			if !exposed[name] {
				continue
			}
			i, ok := idx[k]
			if !ok {
				i = len(out.Reads)
				idx[k] = i
				out.Reads = append(out.Reads, report.AccessRead{Actor: e.Actor, Action: e.Action})
			}
			rd := &out.Reads[i]
			rd.Count++
			rd.Last = e.Time
			if !slices.Contains(rd.Secrets, name) {
				rd.Secrets = append(rd.Secrets, name)
			}
		}
		if p, ok := runProcessOf(e, exposed); ok {
			out.Processes = append(out.Processes, p)
		}
	}
	return out, nil
}

// runProcessMark is what a `rekey run` audit entry records of the process
// holding the values: "process PID/MARK; " (proc.Started), or "" when the
// mark cannot be read.
func runProcessMark() string {
	pid := os.Getpid()
	if m, ok := proc.Started(pid); ok {
		return fmt.Sprintf("process %d/%d; ", pid, m)
	}
	return ""
}

// runProcessOf is the process a `rekey run` entry started with one of the
// exposed secrets, and whether it still runs (false when the entry does
// not record one: an older rekey).
func runProcessOf(e rekey.AuditEntry, exposed map[string]bool) (report.RunProcess, bool) {
	if e.Action != "run" || e.Outcome != "ok" {
		return report.RunProcess{}, false
	}
	_, names := evidenceOf(e)
	var held []string
	for _, n := range names {
		if exposed[n] {
			held = append(held, n)
		}
	}
	parts := strings.Split(e.Detail, "; ")
	if len(held) == 0 || len(parts) < 2 {
		return report.RunProcess{}, false
	}
	var pid int
	var mark uint64
	if _, err := fmt.Sscanf(parts[1], "process %d/%d", &pid, &mark); err != nil {
		return report.RunProcess{}, false
	}
	p := report.RunProcess{Actor: e.Actor, PID: pid, Started: e.Time, Secrets: held, Running: proc.Alive(pid, mark)}
	for _, part := range parts[2:] {
		if c, ok := strings.CutPrefix(part, "command: "); ok {
			p.Command = c
			break
		}
	}
	return p, true
}

// ScanExposed looks for inc's exposed versions in the project folder (and
// its git history when it is a repository), managed values only, and says
// where they were found (paths and commits, never a value).
func (s *Session) ScanExposed(ctx context.Context, inc *rekey.Incident) (string, error) {
	cfg, err := s.Config()
	if err != nil {
		return "", err
	}
	history := isGitRepo(ctx, cfg.Dir)
	rep, err := s.Scan(ctx, ScanRequest{NoRules: true, History: history})
	if err != nil {
		return "", err
	}
	want := map[string]int{}
	for _, sec := range inc.Secrets {
		want[sec.Name] = sec.ExposedVersion
	}
	var found []string
	for _, f := range rep.Findings {
		if f.Env != inc.Env || want[f.Secret] == 0 || want[f.Secret] != f.Version {
			continue
		}
		where := f.Where + " " + f.Path
		if f.Commit != "" {
			where += "@" + f.Commit[:min(12, len(f.Commit))]
		}
		found = append(found, fmt.Sprintf("%s v%d in %s:%d", f.Secret, f.Version, where, f.Line))
	}
	scope := "the project folder"
	if history {
		scope = "the project folder and its git history"
	}
	if len(found) == 0 {
		return fmt.Sprintf("no exposed version found in %s (%d versions looked for)", scope, rep.Versions), nil
	}
	return fmt.Sprintf("%d findings of exposed versions in %s: %s", len(found), scope, strings.Join(found, "; ")), nil
}

// refuseValueIn refuses free text (a reason, a note) that holds a value the
// store keeps (any version, any environment, at least 8 bytes): pasting the
// leaked value into --reason must not copy it into the incident and the
// audit log. The error names the flag, never the value.
func refuseValueIn(ctx context.Context, st rekey.Store, flag, text string) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	found := ""
	err := EachVersion(ctx, st, func(v rekey.Version, val rekey.Value) {
		if found == "" && val.Len() >= 8 && bytes.Contains([]byte(text), val.Reveal()) {
			found = fmt.Sprintf("%s v%d", v.Name, v.N)
		}
		val.Wipe()
	})
	if err != nil {
		return err
	}
	if found != "" {
		return rekey.Errorf(rekey.CodeUnsafe, "%s holds the value of %s: it would be recorded in the incident and the audit log", flag, found).
			WithHint("describe what happened without the value (name the secret, the place it leaked)")
	}
	return nil
}
