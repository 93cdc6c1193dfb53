package report

// The incident report (issue 15, item 3): what the runbook's "Incident
// report - Document timeline and actions" asks for, from an incident's
// record, its notifications in the outbox and its audit entries. Pure: it
// reads no store. It never contains a value: versions by number and
// fingerprint, and every free text (reasons, details, a receiver's answer)
// is quoted when it holds a control character and escaped in tables.

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// IncidentInput is what the incident report is made of.
type IncidentInput struct {
	Incident *rekey.Incident
	// Access is the access review (nil: the timeline's access-review
	// event stands for it).
	Access *AccessReview
	// Outbox are the incident's notifications (any order).
	Outbox []rekey.OutboxItem
	// Audit are the audit entries of the incident (in the log's order).
	Audit []rekey.AuditEntry
	// Generated is when the report is made: follow-ups of an open
	// incident are overdue against it, and an open incident's duration
	// runs until it.
	Generated time.Time
}

// AccessRead is one row of the access review: the reads of the exposed
// secrets by one actor through one action.
type AccessRead struct {
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Secrets []string  `json:"secrets"`
	Count   int       `json:"count"`
	Last    time.Time `json:"last"`
}

// RunProcess is a process `rekey run` started with exposed secrets in its
// environment (the rekey process, parent of the command, by its audit
// entry): Running says whether it still runs, so still holds the exposed
// values whatever the rotation published.
type RunProcess struct {
	Actor   string    `json:"actor"`
	Command string    `json:"command"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Secrets []string  `json:"secrets"`
	Running bool      `json:"running"`
}

// AccessReview is who read the exposed secrets since Since, by the
// verified audit log (Checked entries), and the `rekey run` processes
// started with them.
type AccessReview struct {
	Since     time.Time    `json:"since"`
	Checked   int          `json:"audit_entries_verified"`
	Reads     []AccessRead `json:"reads"`
	Processes []RunProcess `json:"run_processes"`
}

// StillRunning are the processes still running with an exposed value.
func (a *AccessReview) StillRunning() []RunProcess {
	var out []RunProcess
	for _, p := range a.Processes {
		if p.Running {
			out = append(out, p)
		}
	}
	return out
}

// Summary is the review in one line (no value).
func (a *AccessReview) Summary() string {
	var s string
	if len(a.Reads) == 0 {
		s = fmt.Sprintf("no read of the exposed secrets since %s (%d audit entries verified)", a.Since.UTC().Format("2006-01-02"), a.Checked)
	} else {
		var parts []string
		for _, r := range a.Reads {
			parts = append(parts, fmt.Sprintf("%s %s %s %s (last %s)", r.Actor, r.Action, strings.Join(r.Secrets, ","), times(r.Count), r.Last.UTC().Format("2006-01-02")))
		}
		s = fmt.Sprintf("reads of the exposed secrets since %s, by actor and action: %s", a.Since.UTC().Format("2006-01-02"), strings.Join(parts, "; "))
	}
	if run := a.StillRunning(); len(run) > 0 {
		var ps []string
		for _, p := range run {
			ps = append(ps, fmt.Sprintf("pid %d %s (%s, since %s)", p.PID, p.Command, p.Actor, p.Started.UTC().Format("2006-01-02 15:04Z")))
		}
		s += fmt.Sprintf("; STILL RUNNING with an exposed value, started by rekey run: %s (restart or stop them)", strings.Join(ps, ", "))
	}
	return s
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// IncidentReport is the data behind the incident report (its JSON).
type IncidentReport struct {
	ID            string                 `json:"id"`
	Environment   string                 `json:"environment"`
	Reason        string                 `json:"reason"`
	State         string                 `json:"state"`
	Generated     time.Time              `json:"generated"`
	Summary       IncidentSummary        `json:"summary"`
	Secrets       []rekey.IncidentSecret `json:"secrets"`
	Timeline      []rekey.IncidentEvent  `json:"timeline"`
	Proofs        []ProofRow             `json:"proofs"`
	AccessReview  *AccessReview          `json:"access_review,omitempty"`
	AccessEvents  []rekey.IncidentEvent  `json:"access_review_events"`
	Scan          []rekey.IncidentEvent  `json:"scan"`
	Notifications []NotificationRow      `json:"notifications"`
	FollowUps     []FollowUpRow          `json:"follow_ups"`
	Audit         []AuditRow             `json:"audit"`
}

// IncidentSummary is who opened and closed the incident, when, and how
// long it lasted (until Generated while it is open).
type IncidentSummary struct {
	OpenedAt    time.Time `json:"opened_at"`
	OpenedBy    string    `json:"opened_by"`
	ClosedAt    time.Time `json:"closed_at,omitzero"`
	ClosedBy    string    `json:"closed_by,omitempty"`
	CloseReason string    `json:"close_reason,omitempty"`
	Forced      bool      `json:"forced"`
	Duration    string    `json:"duration"`
	DurationSec int64     `json:"duration_seconds"`
}

// ProofRow is one liveness proof, read from a prove-dead event.
type ProofRow struct {
	At      time.Time `json:"at"`
	Secret  string    `json:"secret"`
	Version int       `json:"version,omitempty"`
	Method  string    `json:"method,omitempty"`
	Verdict string    `json:"verdict"`
	Detail  string    `json:"detail"`
}

// The delivery states of a notification (NotificationRow.Status).
const (
	DeliveryDelivered = "delivered"
	DeliveryPending   = "pending" // not tried yet
	DeliveryFailed    = "failed"  // tried, not delivered (retried later)
)

// NotificationRow is one notification of the incident and its delivery.
type NotificationRow struct {
	Channel        string    `json:"channel"`
	Event          string    `json:"event"`
	IdempotencyKey string    `json:"idempotency_key"`
	Created        time.Time `json:"created"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	Delivered      time.Time `json:"delivered,omitzero"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
}

// The states of a follow-up item (FollowUpRow.Status).
const (
	FollowUpDone    = "done"
	FollowUpDue     = "due"
	FollowUpOverdue = "overdue"
)

// FollowUpRow is one follow-up item and its state.
type FollowUpRow struct {
	Key    string    `json:"key"`
	Title  string    `json:"title"`
	Status string    `json:"status"`
	Due    time.Time `json:"due"`
	DoneAt time.Time `json:"done_at,omitzero"`
	DoneBy string    `json:"done_by,omitempty"`
	Note   string    `json:"note,omitempty"`
}

// AuditRow is one audit entry of the incident.
type AuditRow struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// proofDetail is the shape of a prove-dead event's detail (app/incident.go):
// "dead (v1, check me): 401 with a token of v1".
var proofDetail = regexp.MustCompile(`^([a-z]+) \(v(\d+), ([^)]*)\): (.*)$`)

// BuildIncident assembles the incident report from in.
func BuildIncident(in IncidentInput) *IncidentReport {
	inc := in.Incident
	r := &IncidentReport{ID: inc.ID, Environment: inc.Env, Reason: inc.Reason, State: string(inc.State), Generated: in.Generated.UTC(),
		Secrets: orNone(inc.Secrets), Timeline: orNone(inc.Timeline), Proofs: []ProofRow{}, AccessReview: in.Access,
		AccessEvents: []rekey.IncidentEvent{}, Scan: []rekey.IncidentEvent{}, Notifications: []NotificationRow{}, FollowUps: []FollowUpRow{}, Audit: []AuditRow{}}
	end := in.Generated
	if !inc.IsOpen() {
		end = inc.ClosedAt
	}
	d := end.Sub(inc.OpenedAt).Round(time.Second)
	r.Summary = IncidentSummary{OpenedAt: inc.OpenedAt.UTC(), OpenedBy: inc.OpenedBy, ClosedAt: inc.ClosedAt.UTC(), ClosedBy: inc.ClosedBy,
		CloseReason: inc.CloseReason, Forced: inc.Forced, Duration: d.String(), DurationSec: int64(d / time.Second)}
	for _, ev := range inc.Timeline {
		switch ev.Action {
		case rekey.ActionProveDead:
			r.Proofs = append(r.Proofs, proofOf(ev))
		case rekey.ActionAccessReview:
			r.AccessEvents = append(r.AccessEvents, ev)
		case rekey.ActionScan:
			r.Scan = append(r.Scan, ev)
		}
	}
	for _, o := range in.Outbox {
		n := NotificationRow{Channel: o.Channel, Event: o.Event, IdempotencyKey: o.IdempotencyKey, Created: o.Created.UTC(), Status: DeliveryPending,
			Attempts: o.Attempts, LastError: o.LastError}
		switch {
		case !o.Delivered.IsZero():
			n.Status, n.Delivered = DeliveryDelivered, o.Delivered.UTC()
		case o.Attempts > 0:
			n.Status, n.NextAttempt = DeliveryFailed, o.NextAttempt.UTC()
		}
		r.Notifications = append(r.Notifications, n)
	}
	for _, f := range inc.FollowUps {
		row := FollowUpRow{Key: f.Key, Title: f.Title, Status: FollowUpDue, Due: f.Due.UTC(), DoneBy: f.DoneBy, Note: f.Note}
		switch {
		case f.Done:
			row.Status, row.DoneAt = FollowUpDone, f.DoneAt.UTC()
		case !f.Due.IsZero() && f.Due.Before(end):
			row.Status = FollowUpOverdue
		}
		r.FollowUps = append(r.FollowUps, row)
	}
	for _, e := range in.Audit {
		r.Audit = append(r.Audit, AuditRow{Seq: e.Seq, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action, Outcome: e.Outcome, Detail: e.Detail})
	}
	return r
}

func orNone[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// proofOf reads a prove-dead event; a detail of another shape is kept
// whole, with the event's outcome as the verdict.
func proofOf(ev rekey.IncidentEvent) ProofRow {
	p := ProofRow{At: ev.At.UTC(), Secret: ev.Secret, Verdict: ev.Outcome, Detail: ev.Detail}
	if m := proofDetail.FindStringSubmatch(ev.Detail); m != nil {
		v, _ := strconv.Atoi(m[2])
		p.Verdict, p.Version, p.Method, p.Detail = m[1], v, m[3], m[4]
	}
	return p
}

// WriteJSON writes the incident report as indented JSON.
func (r *IncidentReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// stamp is a time in the report: UTC to the second, "-" when zero.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// text is free text outside a table: control characters quoted.
func text(s string) string {
	if s == "" {
		return "-"
	}
	return textsafe.Quote(s)
}

// WriteMarkdown writes the incident report in the runbook's style.
func (r *IncidentReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Incident Report - %s\n\n", text(r.ID))
	fmt.Fprintf(&b, "Environment: %s. Reason: %s.\nGenerated by rekey from its store on %s; no value appears in this file, only fingerprints.\n\n",
		text(r.Environment), text(r.Reason), stamp(r.Generated))
	r.summaryMD(&b)
	r.secretsMD(&b)
	r.timelineMD(&b)
	r.proofsMD(&b)
	r.accessMD(&b)
	r.scanMD(&b)
	r.notificationsMD(&b)
	r.followUpsMD(&b)
	r.auditMD(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *IncidentReport) summaryMD(b *strings.Builder) {
	s := r.Summary
	b.WriteString("## 🚨 Summary\n\n| | |\n|---|---|\n")
	state := r.State
	if s.Forced {
		state += " (by force, with follow-ups remaining)"
	}
	fmt.Fprintf(b, "| State | %s |\n", cell(state))
	fmt.Fprintf(b, "| Opened | %s by %s |\n", stamp(s.OpenedAt), cell(s.OpenedBy))
	if !s.ClosedAt.IsZero() {
		fmt.Fprintf(b, "| Closed | %s by %s |\n", stamp(s.ClosedAt), cell(s.ClosedBy))
	}
	if s.CloseReason != "" {
		label := "Close reason"
		if s.Forced {
			label = "Forced close reason"
		}
		fmt.Fprintf(b, "| %s | %s |\n", label, cell(s.CloseReason))
	}
	dur := s.Duration
	if s.ClosedAt.IsZero() {
		dur += " (still open)"
	}
	fmt.Fprintf(b, "| Duration | %s |\n", dur)
}

func (r *IncidentReport) secretsMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 🔐 Exposed Secrets and Replacements\n\n")
	b.WriteString("| Secret | Exposed | Exposed Fingerprint | Replacement | Replacement Fingerprint |\n|--------|---------|---------------------|-------------|-------------------------|\n")
	if len(r.Secrets) == 0 {
		b.WriteString("| (none) | - | - | - | - |\n")
	}
	for _, s := range r.Secrets {
		repl, fp := "NOT replaced", "-"
		if s.Replacement > 0 {
			repl, fp = "v"+strconv.Itoa(s.Replacement), s.ReplacementFingerprint
		}
		fmt.Fprintf(b, "| %s | v%d | %s | %s | %s |\n", cell(s.Name), s.ExposedVersion, cell(s.ExposedFingerprint), repl, cell(fp))
	}
}

func (r *IncidentReport) timelineMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 🕒 Timeline (UTC)\n\n")
	b.WriteString("| Time | Action | Secret | Outcome | Detail |\n|------|--------|--------|---------|--------|\n")
	if len(r.Timeline) == 0 {
		b.WriteString("| - | (no event) | - | - | - |\n")
	}
	for _, ev := range r.Timeline {
		fmt.Fprintf(b, "| %s | %s | %s | %s %s | %s |\n", stamp(ev.At), cell(ev.Action), cell(ev.Secret), outcomeMark(ev.Outcome), cell(ev.Outcome), cell(ev.Detail))
	}
}

// outcomeMark is the runbook's mark for an outcome.
func outcomeMark(outcome string) string {
	switch outcome {
	case rekey.OutcomeOK:
		return "✅"
	case rekey.OutcomeSkipped:
		return "⏭️"
	case rekey.OutcomeInterrupted:
		return "⚠️"
	}
	return "❌"
}

func (r *IncidentReport) proofsMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## ☠️ Liveness Proofs (old values dead)\n\n")
	if len(r.Proofs) == 0 {
		b.WriteString("- ⚠️ (no proof recorded: run `rekey verify --dead NAME`)\n")
	}
	for _, p := range r.Proofs {
		mark := "❌"
		switch p.Verdict {
		case "dead":
			mark = "✅"
		case "manual":
			mark = "⚠️"
		}
		version := ""
		if p.Version > 0 {
			version = fmt.Sprintf(" v%d", p.Version)
		}
		method := ""
		if p.Method != "" {
			method = " by " + text(p.Method)
		}
		fmt.Fprintf(b, "- %s %s%s **%s**%s (%s): %s\n", mark, text(p.Secret), version, text(p.Verdict), method, stamp(p.At), text(p.Detail))
	}
}

func (r *IncidentReport) accessMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 🔎 Access Review\n\n")
	if a := r.AccessReview; a != nil {
		fmt.Fprintf(b, "Reads of the exposed secrets since %s, by actor and action (%d audit entries verified):\n\n", day(a.Since), a.Checked)
		b.WriteString("| Actor | Action | Secrets | Reads | Last |\n|-------|--------|---------|-------|------|\n")
		if len(a.Reads) == 0 {
			b.WriteString("| (none) | - | - | 0 | - |\n")
		}
		for _, rd := range a.Reads {
			fmt.Fprintf(b, "| %s | %s | %s | %d | %s |\n", cell(rd.Actor), cell(rd.Action), cell(strings.Join(rd.Secrets, ", ")), rd.Count, stamp(rd.Last))
		}
		if len(a.Processes) > 0 {
			b.WriteString("\nProcesses started by `rekey run` with an exposed secret in their environment:\n\n")
			b.WriteString("| PID | Command | Actor | Secrets | Started | Now |\n|-----|---------|-------|---------|---------|-----|\n")
			for _, p := range a.Processes {
				now := "exited"
				if p.Running {
					now = "⚠️ **still running**: restart or stop it"
				}
				fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s |\n", p.PID, cell(p.Command), cell(p.Actor), cell(strings.Join(p.Secrets, ", ")), stamp(p.Started), now)
			}
		}
		return
	}
	if len(r.AccessEvents) == 0 {
		b.WriteString("- ⚠️ (no access review recorded)\n")
	}
	for _, ev := range r.AccessEvents {
		fmt.Fprintf(b, "- %s %s (%s)\n", outcomeMark(ev.Outcome), text(ev.Detail), stamp(ev.At))
	}
}

func (r *IncidentReport) scanMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 🧭 Scan Findings\n\n")
	if len(r.Scan) == 0 {
		b.WriteString("- ⚠️ (no scan recorded: run `rekey scan --history`)\n")
	}
	for _, ev := range r.Scan {
		fmt.Fprintf(b, "- %s %s (%s)\n", outcomeMark(ev.Outcome), text(ev.Detail), stamp(ev.At))
	}
}

func (r *IncidentReport) notificationsMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 📣 Notifications\n\n")
	if len(r.Notifications) == 0 {
		b.WriteString("- (none in the outbox for this incident)\n")
		return
	}
	b.WriteString("| Channel | Event | Status | Attempts | Created | Delivered | Last Error | Idempotency Key |\n|---------|-------|--------|----------|---------|-----------|------------|-----------------|\n")
	for _, n := range r.Notifications {
		mark := map[string]string{DeliveryDelivered: "✅", DeliveryPending: "⏳", DeliveryFailed: "❌"}[n.Status]
		fmt.Fprintf(b, "| %s | %s | %s %s | %d | %s | %s | %s | %s |\n", cell(n.Channel), cell(n.Event), mark, n.Status, n.Attempts,
			stamp(n.Created), stamp(n.Delivered), cell(n.LastError), cell(n.IdempotencyKey))
	}
}

func (r *IncidentReport) followUpsMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 📋 Follow-up Actions (< 24 hours)\n\n")
	if len(r.FollowUps) == 0 {
		b.WriteString("- (none)\n")
	}
	for _, f := range r.FollowUps {
		switch f.Status {
		case FollowUpDone:
			note := ""
			if f.Note != "" {
				note = ": " + text(f.Note)
			}
			fmt.Fprintf(b, "- [x] **%s** - %s (done %s by %s%s)\n", text(f.Key), text(f.Title), stamp(f.DoneAt), text(f.DoneBy), note)
		case FollowUpOverdue:
			fmt.Fprintf(b, "- [ ] **%s** - %s (⚠️ OVERDUE since %s)\n", text(f.Key), text(f.Title), stamp(f.Due))
		default:
			fmt.Fprintf(b, "- [ ] **%s** - %s (due %s)\n", text(f.Key), text(f.Title), stamp(f.Due))
		}
	}
}

func (r *IncidentReport) auditMD(b *strings.Builder) {
	b.WriteString("\n---\n\n## 🧾 Audit Trail\n\n")
	if len(r.Audit) == 0 {
		b.WriteString("- (no audit entry names this incident)\n")
		return
	}
	b.WriteString("| Seq | Time | Actor | Action | Outcome | Detail |\n|-----|------|-------|--------|---------|--------|\n")
	for _, e := range r.Audit {
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s |\n", e.Seq, stamp(e.Time), cell(e.Actor), cell(e.Action), cell(e.Outcome), cell(e.Detail))
	}
}
