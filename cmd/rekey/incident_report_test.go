package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIncidentReport: an incident opened for JWT_SECRET (an http check
// presents {{ JWT_SECRET | jwt }} to a real app) gives a report, written
// with -o atomically and mode 0600, that holds the timeline, the proof that
// the old value is dead, the replacement's fingerprint and the access
// review; writing it marks the report follow-up done and is audited. No
// value, in any encoding, is in the report nor in any output.
func TestIncidentReport(t *testing.T) {
	p := ctInitProject(t, t.TempDir(), ".env", "report-test", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\nSESSION_SECRET="+ctRandB64(32, base64.StdEncoding)+"\nRUST_LOG=info\n")
	var st jwtAppState
	app := jwtApp(t, p.envPath, &st)
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checks := "\nchecks:\n  me:\n    http:\n      url: " + app.URL + "/me\n      headers: {Authorization: \"Bearer {{ JWT_SECRET | jwt }}\"}\n"
	// Two channels: one delivers (the message on stdin, into a file), one
	// fails; the report shows each notification with its delivery status.
	checks += "notify:\n  channels:\n    sec-log: {type: command, command: [sh, -c, 'cat > notified.json']}\n    pager-down: {type: command, command: [sh, -c, 'exit 3']}\n"
	if err := os.WriteFile(cfg, append(raw, checks...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	values := []string{p.get(1), p.must("get", "SESSION_SECRET", "-n")}
	var outputs []string
	run := func(want int, args ...string) ctResult {
		t.Helper()
		r := p.run(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		if r.code != want {
			t.Fatalf("exit %d, want %d: %v", r.code, want, r)
		}
		return r
	}
	r := run(0, "incident", "open", "--secret", "JWT_SECRET", "--reason", "pasted in a public issue", "--json")
	var open incidentOpenOut
	if err := json.Unmarshal([]byte(r.stdout), &open); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	id, sec := open.Incident.ID, open.Incident.Secrets[0]
	values = append(values, p.get(2))
	// incident open delivered at its end: one channel took it, the other
	// failed and waits for its next attempt.
	if st := run(0, "notify", "status", "--all").stdout; !strings.Contains(st, "delivered") || !strings.Contains(st, "failed") {
		t.Fatalf("after incident open, notify status:\n%s", st)
	}

	run(2, "incident", "report", id, "--format", "xml")
	run(3, "incident", "report", "INC-20000101-000000")
	out := filepath.Join(p.dir, "incident-report.md")
	r = run(0, "incident", "report", id, "-o", out)
	if !strings.Contains(r.stdout, "report written to "+out) {
		t.Errorf("report -o: %v", r)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("report mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(data)
	outputs = append(outputs, md)
	if msg, err := os.ReadFile(filepath.Join(p.dir, "notified.json")); err != nil || !strings.Contains(string(msg), id) {
		t.Errorf("the sec-log channel got no message of %s: %v", id, err)
	} else {
		outputs = append(outputs, string(msg))
	}
	for _, want := range []string{
		"# Incident Report - " + id, "Reason: pasted in a public issue.",
		"| JWT_SECRET | v1 | " + sec.ExposedFingerprint + " | v2 | " + sec.ReplacementFingerprint + " |",
		"## 🕒 Timeline (UTC)", "| rotate | JWT_SECRET | ✅ ok |", "| prove-dead | JWT_SECRET | ✅ ok | dead (v1, check me)",
		"| access-review | - | ✅ ok |", "| scan | - |", "| notify | - |",
		"- ✅ JWT_SECRET v1 **dead** by check me", "| report-test | get | JWT_SECRET | 1 |",
		"- [ ] **rotate-all**", "- [x] **report** - write the incident report (done ", "by report-test: rekey incident report (md) to " + out,
		"| incident.open | ok | incident " + id,
		"| sec-log | incident.opened | ✅ delivered |", "| pager-down | incident.opened | ❌ failed |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}

	r = run(0, "incident", "status", id, "--json")
	var sts []struct {
		FollowUps []struct {
			Key  string `json:"key"`
			Done bool   `json:"done"`
		} `json:"follow_ups"`
		Timeline []struct{ Action, Detail string } `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	for _, f := range sts[0].FollowUps {
		if f.Done != (f.Key == "report") {
			t.Errorf("follow-up %s done=%v", f.Key, f.Done)
		}
	}
	if last := sts[0].Timeline[len(sts[0].Timeline)-1]; last.Action != "follow-up" || !strings.HasPrefix(last.Detail, "done: report") {
		t.Errorf("timeline's last event: %+v", last)
	}

	// Again, as JSON on stdout: the follow-up stays done, the report is
	// audited each time.
	r = run(0, "incident", "report", id, "--format", "json")
	var rep struct {
		ID     string `json:"id"`
		Proofs []struct {
			Secret, Verdict, Method string
			Version                 int
		} `json:"proofs"`
		FollowUps []struct{ Key, Status string } `json:"follow_ups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if rep.ID != id || len(rep.Proofs) != 1 || rep.Proofs[0].Verdict != "dead" || rep.Proofs[0].Method != "check me" || rep.Proofs[0].Version != 1 {
		t.Errorf("report JSON: %+v", rep)
	}
	r = run(0, "audit")
	if n := strings.Count(r.stdout, "incident.report"); n != 2 {
		t.Errorf("%d incident.report audit entries, want 2:\n%s", n, r.stdout)
	}

	for _, v := range values {
		for _, f := range forms(v) {
			for _, o := range outputs {
				if strings.Contains(o, f) {
					t.Fatal("a value in the incident report or an output of rekey incident")
				}
			}
		}
	}
}
