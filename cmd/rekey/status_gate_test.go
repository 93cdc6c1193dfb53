package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// TestStatusGateOpenIncident: an open incident of the environment (put in
// the real store through its API) stops the pre-deploy gate (exit 9, its
// command); closed, it does not.
func TestStatusGateOpenIncident(t *testing.T) {
	p := newReadByProject(t, nil)
	if out, errs, code := p.run("status", "--due-within", "14d"); code != 0 {
		t.Fatalf("gate before the incident: exit %d\n%s%s", code, out, errs)
	}
	inc := &rekey.Incident{ID: "INC-20260601-0a1b2c", Env: "production", OpenedAt: readByNow.Add(-time.Hour), OpenedBy: "alice",
		Reason: "pasted in a chat", State: rekey.IncidentOpen, Secrets: []rekey.IncidentSecret{{Name: "JWT_SECRET", ExposedVersion: 1}},
		FollowUps: []rekey.FollowUp{{Key: "report", Title: "write the report", Due: readByNow.Add(-time.Minute)}}}
	putIncident(t, p, inc)
	out, errs, code := p.run("status", "--due-within", "14d")
	if code != 9 || !strings.Contains(out, "incident: incident INC-20260601-0a1b2c is open (since 2026-05-31 23:00Z), 1 follow-ups past their deadline → rekey incident status INC-20260601-0a1b2c") {
		t.Errorf("gate with an open incident: exit %d, want 9 naming it\n%s%s", code, out, errs)
	}
	out, _, _ = p.run("status", "--due-within", "14d", "--json")
	var g struct {
		Reasons []struct{ Reason, Command string } `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &g); err != nil || len(g.Reasons) != 1 || g.Reasons[0].Reason != "incident" {
		t.Errorf("--json reasons: %v %+v\n%s", err, g, out)
	}
	// Plain status: exit 8 while a follow-up is past its deadline, naming it.
	out, errs, code = p.run("status")
	if code != 8 || !strings.Contains(errs, "incident INC-20260601-0a1b2c is open (since 2026-05-31 23:00Z), 1 follow-up(s) past their deadline: `rekey incident status INC-20260601-0a1b2c`") {
		t.Errorf("status with an overdue incident: exit %d, want 8 naming it\n%s%s", code, out, errs)
	}
	inc.FollowUps[0].Due = readByNow.Add(time.Hour)
	putIncident(t, p, inc)
	if out, errs, code = p.run("status"); code != 0 || !strings.Contains(errs, "incident INC-20260601-0a1b2c is open") || strings.Contains(errs, "past their deadline") {
		t.Errorf("status with an open incident within its deadlines: exit %d, want 0 and the incident named\n%s%s", code, out, errs)
	}
	inc.State, inc.ClosedAt, inc.ClosedBy = rekey.IncidentClosed, readByNow, "alice"
	putIncident(t, p, inc)
	if out, errs, code := p.run("status", "--due-within", "14d"); code != 0 {
		t.Errorf("gate after the incident closed: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := p.run("status"); code != 0 || strings.Contains(errs, "incident") {
		t.Errorf("status after the incident closed: exit %d\n%s%s", code, out, errs)
	}
}

// putIncident writes inc into p's store through the store's API.
func putIncident(t *testing.T, p *inProject, inc *rekey.Incident) {
	t.Helper()
	key, err := seal.ParseKey(p.env["REKEY_MASTER_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	anchors := filepath.Join(approval.StateDir(func(k string) string { return p.env[k] }), "anchors")
	st, err := sqlite.Open(ctx, filepath.Join(p.dir, ".rekey", "rekey.db"), key, sqlite.WithAnchor(anchors))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(ctx, func(tx rekey.Tx) error { return tx.PutIncident(inc) }); err != nil {
		t.Fatal(err)
	}
}
