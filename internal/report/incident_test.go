package report

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// incidentCanary is a value that must never reach a report: the fixture
// holds fingerprints only, and the renderer is given nothing else.
const incidentCanary = "c2VjcmV0LWNhbmFyeS12YWx1ZS0xMjM0NTY3ODkw"

// fixtureIncident is an incident of production opened on 2026-12-08 09:00
// for JWT_SECRET, DATABASE_PASSWORD and the user-managed ANTHROPIC_API_KEY,
// closed by force 26 hours later with the scan-history item overdue; two
// notifications (one delivered, one failing); its audit entries.
func fixtureIncident() IncidentInput {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	due := at(24 * time.Hour)
	inc := &rekey.Incident{
		ID: "INC-20261208-0a1b2c", Env: "production", OpenedAt: t0, OpenedBy: "alice", Reason: "pushed to a public fork | by mistake",
		State: rekey.IncidentClosed, ClosedAt: at(26 * time.Hour), ClosedBy: "bob", CloseReason: "history scan moved to SEC-42", Forced: true,
		Secrets: []rekey.IncidentSecret{
			{Name: "JWT_SECRET", ExposedVersion: 4, ExposedFingerprint: "fp:0123456789abcdef", Replacement: 5, ReplacementFingerprint: "fp:fedcba9876543210"},
			{Name: "DATABASE_PASSWORD", ExposedVersion: 2, ExposedFingerprint: "fp:2222222222222222", Replacement: 3, ReplacementFingerprint: "fp:3333333333333333"},
			{Name: "ANTHROPIC_API_KEY", ExposedVersion: 1, ExposedFingerprint: "fp:4444444444444444"},
		},
		Timeline: []rekey.IncidentEvent{
			{At: at(0), Action: rekey.ActionRotate, Secret: "ANTHROPIC_API_KEY", Outcome: rekey.OutcomeSkipped, Detail: "user-managed: revoke and reissue it at its provider, then record it with `rekey set ANTHROPIC_API_KEY`"},
			{At: at(1 * time.Second), Action: rekey.ActionRotate, Secret: "JWT_SECRET", Outcome: rekey.OutcomeOK, Detail: "emergency rotation 20261208T090000Z-1a2b3c4d: v4 fp:0123456789abcdef → v5 fp:fedcba9876543210 (no grace; v4 marked exposed)"},
			{At: at(1 * time.Second), Action: rekey.ActionRotate, Secret: "DATABASE_PASSWORD", Outcome: rekey.OutcomeOK, Detail: "emergency rotation 20261208T090000Z-1a2b3c4d: v2 fp:2222222222222222 → v3 fp:3333333333333333 (no grace; v2 marked exposed)"},
			{At: at(2 * time.Second), Action: rekey.ActionRestart, Outcome: rekey.OutcomeOK, Detail: "rotation 20261208T090000Z-1a2b3c4d: api restarted"},
			{At: at(2 * time.Second), Action: rekey.ActionSessions, Outcome: rekey.OutcomeSkipped, Detail: "rotation 20261208T090000Z-1a2b3c4d: no on_rotate hook"},
			{At: at(3 * time.Second), Action: "verify", Outcome: rekey.OutcomeOK, Detail: "rotation 20261208T090000Z-1a2b3c4d: 1 check passed"},
			{At: at(4 * time.Second), Action: rekey.ActionProveDead, Secret: "JWT_SECRET", Outcome: rekey.OutcomeOK, Detail: "dead (v4, check me): 401 with a token of v4; 200 with the current v5"},
			{At: at(4 * time.Second), Action: rekey.ActionProveDead, Secret: "DATABASE_PASSWORD", Outcome: rekey.OutcomeOK, Detail: "dead (v2, postgres login): the server refused v2 (28P01); v3 logs in"},
			{At: at(4 * time.Second), Action: rekey.ActionProveDead, Secret: "ANTHROPIC_API_KEY", Outcome: rekey.OutcomeSkipped, Detail: "manual (v1, none): user-managed: rotate it at the provider, then test the old key there"},
			{At: at(5 * time.Second), Action: rekey.ActionAccessReview, Outcome: rekey.OutcomeOK, Detail: "reads of the exposed secrets since 2026-09-09, by actor and action: carol get JWT_SECRET once (last 2026-12-01)"},
			{At: at(6 * time.Second), Action: rekey.ActionScan, Outcome: rekey.OutcomeOK, Detail: "1 findings of exposed versions in the project folder and its git history: JWT_SECRET v4 in history config/dev.env@0123456789ab:3"},
			{At: at(7 * time.Second), Action: rekey.ActionNotify, Outcome: rekey.OutcomeOK, Detail: "2 notifications handed to the outbox (security, oncall)"},
			{At: at(7 * time.Second), Action: "follow-up", Outcome: rekey.OutcomeOK, Detail: "5 follow-ups due by 2026-12-09T09:00:00Z"},
			{At: at(2 * time.Hour), Action: "follow-up", Outcome: rekey.OutcomeOK, Detail: "done: rotate-all (rotation 20261208T110000Z-5e6f7a8b: ENCRYPTION_KEY v4 fp:5555555555555555)"},
			{At: at(26 * time.Hour), Action: "close", Outcome: rekey.OutcomeOK, Detail: "closed by force with scan-history,provider:ANTHROPIC_API_KEY remaining: history scan moved to SEC-42"},
		},
		FollowUps: []rekey.FollowUp{
			{Key: rekey.FollowUpRotateAll, Title: "rotate every other secret of the environment", Due: due, Done: true, DoneAt: at(2 * time.Hour), DoneBy: "alice", Note: "rotation 20261208T110000Z-5e6f7a8b: ENCRYPTION_KEY v4 fp:5555555555555555"},
			{Key: rekey.FollowUpScanHistory, Title: "scan the git history: clean, or each finding acknowledged", Due: due},
			{Key: rekey.FollowUpDoctor, Title: "rekey doctor clean", Due: due, Done: true, DoneAt: at(3 * time.Hour), DoneBy: "bob", Note: "rekey doctor: clean"},
			{Key: rekey.FollowUpProvider + "ANTHROPIC_API_KEY", Title: "rotate ANTHROPIC_API_KEY at its provider and record it with `rekey set ANTHROPIC_API_KEY`", Due: at(48 * time.Hour)},
			{Key: rekey.FollowUpReport, Title: "write the incident report", Due: due, Done: true, DoneAt: at(25 * time.Hour), DoneBy: "bob", Note: "rekey incident report (md)"},
		},
	}
	return IncidentInput{
		Incident: inc,
		Access: &AccessReview{Since: t0.Add(-90 * 24 * time.Hour), Checked: 42, Reads: []AccessRead{
			{Actor: "carol", Action: "get", Secrets: []string{"JWT_SECRET"}, Count: 1, Last: time.Date(2026, 12, 1, 14, 30, 0, 0, time.UTC)},
			{Actor: "ci", Action: "run", Secrets: []string{"JWT_SECRET", "DATABASE_PASSWORD"}, Count: 12, Last: time.Date(2026, 12, 8, 8, 0, 0, 0, time.UTC)},
		}, Processes: []RunProcess{
			{Actor: "ci", Command: "./bin/worker", PID: 4242, Started: time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC), Secrets: []string{"JWT_SECRET"}, Running: true},
			{Actor: "ci", Command: "cargo | test", PID: 4343, Started: time.Date(2026, 12, 8, 8, 0, 0, 0, time.UTC), Secrets: []string{"JWT_SECRET", "DATABASE_PASSWORD"}},
		}},
		Outbox: []rekey.OutboxItem{
			{ID: 7, Created: at(7 * time.Second), Env: "production", Channel: "security", Event: rekey.EventIncidentOpened, IdempotencyKey: "rekey-00112233445566778899aabbccddeeff",
				Body: []byte(`{"incident_id":"INC-20261208-0a1b2c"}`), Attempts: 1, Delivered: at(8 * time.Second)},
			{ID: 8, Created: at(7 * time.Second), Env: "production", Channel: "oncall", Event: rekey.EventIncidentOpened, IdempotencyKey: "rekey-ffeeddccbbaa99887766554433221100",
				Body: []byte(`{"incident_id":"INC-20261208-0a1b2c"}`), Attempts: 3, NextAttempt: at(30 * time.Minute), LastError: "503 Service Unavailable: \"down\nfor maintenance\""},
		},
		Audit: []rekey.AuditEntry{
			{Seq: 101, Time: at(0), Actor: "alice", Action: "incident.open", Env: "production", Outcome: "ok", Detail: "incident INC-20261208-0a1b2c: secrets JWT_SECRET,DATABASE_PASSWORD,ANTHROPIC_API_KEY; reason: pushed to a public fork | by mistake"},
			{Seq: 120, Time: at(2 * time.Hour), Actor: "alice", Action: "incident.follow-up", Env: "production", Outcome: "ok", Detail: "incident INC-20261208-0a1b2c: done: rotate-all"},
			{Seq: 131, Time: at(26 * time.Hour), Actor: "bob", Action: "incident.close", Env: "production", Outcome: "ok", Detail: "incident INC-20261208-0a1b2c: closed by force"},
		},
		Generated: at(27 * time.Hour),
	}
}

func TestIncidentMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := BuildIncident(fixtureIncident()).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "incident.md.golden", b.Bytes())
}

func TestIncidentJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := BuildIncident(fixtureIncident()).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "incident.json.golden", b.Bytes())
}

// TestIncidentSections: the report's parts are read from the record as
// the issue asks: proofs from the prove-dead events, follow-ups done,
// due and overdue (against the close), notifications with their delivery
// state, the forced close and the duration.
func TestIncidentSections(t *testing.T) {
	r := BuildIncident(fixtureIncident())
	if len(r.Proofs) != 3 || r.Proofs[0].Verdict != "dead" || r.Proofs[0].Version != 4 || r.Proofs[0].Method != "check me" || r.Proofs[2].Verdict != "manual" {
		t.Errorf("proofs: %+v", r.Proofs)
	}
	status := map[string]string{}
	for _, f := range r.FollowUps {
		status[f.Key] = f.Status
	}
	want := map[string]string{"rotate-all": "done", "scan-history": "overdue", "doctor": "done", "provider:ANTHROPIC_API_KEY": "due", "report": "done"}
	for k, v := range want {
		if status[k] != v {
			t.Errorf("follow-up %s: %q, want %q", k, status[k], v)
		}
	}
	if r.Notifications[0].Status != DeliveryDelivered || r.Notifications[1].Status != DeliveryFailed {
		t.Errorf("notifications: %+v", r.Notifications)
	}
	if !r.Summary.Forced || r.Summary.Duration != "26h0m0s" || r.Summary.DurationSec != 26*3600 {
		t.Errorf("summary: %+v", r.Summary)
	}
	if len(r.Scan) != 1 || len(r.Timeline) != 15 || len(r.Audit) != 3 {
		t.Errorf("scan %d, timeline %d, audit %d", len(r.Scan), len(r.Timeline), len(r.Audit))
	}
	// An open incident: overdue against the time of the report, its
	// duration runs until then.
	in := fixtureIncident()
	in.Incident.State, in.Incident.ClosedAt, in.Incident.ClosedBy, in.Incident.CloseReason, in.Incident.Forced = rekey.IncidentOpen, time.Time{}, "", "", false
	in.Generated = in.Incident.OpenedAt.Add(time.Hour)
	r = BuildIncident(in)
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if r.FollowUps[1].Status != FollowUpDue || !strings.Contains(b.String(), "| Duration | 1h0m0s (still open) |") || strings.Contains(b.String(), "| Closed |") {
		t.Errorf("open incident:\n%s", b.String())
	}
}

// TestIncidentNoValue: the report, in both formats, holds no value in
// any encoding: the fixture's texts carry fingerprints only, and a
// receiver's answer with a newline cannot break the Markdown's table.
func TestIncidentNoValue(t *testing.T) {
	r := BuildIncident(fixtureIncident())
	var md, js bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(js.Bytes()) {
		t.Fatal("invalid JSON")
	}
	for _, f := range []string{incidentCanary, hex.EncodeToString([]byte(incidentCanary)), base64.StdEncoding.EncodeToString([]byte(incidentCanary))} {
		if bytes.Contains(md.Bytes(), []byte(f)) || bytes.Contains(js.Bytes(), []byte(f)) {
			t.Fatal("a value in the incident report")
		}
	}
	if !strings.Contains(md.String(), `503 Service Unavailable: \"down\nfor maintenance\"`) || !strings.Contains(md.String(), `pushed to a public fork \| by mistake`) {
		t.Errorf("free text not quoted and escaped in the tables:\n%s", md.String())
	}
}
