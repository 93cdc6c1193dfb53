package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// incidentOpenOut is what the test reads of `incident open --json`.
type incidentOpenOut struct {
	Incident struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Secrets []struct {
			Name                   string `json:"name"`
			ExposedVersion         int    `json:"exposed_version"`
			ExposedFingerprint     string `json:"exposed_fingerprint"`
			Replacement            int    `json:"replacement"`
			ReplacementFingerprint string `json:"replacement_fingerprint"`
		} `json:"secrets"`
		Timeline []struct {
			Action, Secret, Outcome, Detail string
		} `json:"timeline"`
		FollowUps []struct {
			Key  string    `json:"key"`
			Due  time.Time `json:"due"`
			Done bool      `json:"done"`
		} `json:"follow_ups"`
	} `json:"incident"`
	Proofs []proofLine `json:"proofs"`
}

// TestIncident: a project with JWT_SECRET (an http check presents
// {{ JWT_SECRET | jwt }} to the app), a PostgreSQL password and
// SESSION_SECRET. `incident open --secret JWT_SECRET --secret
// DATABASE_PASSWORD` rotates both in emergency mode, proves the old values
// dead (the app refuses the old token, the server the old password), and
// leaves the incident open with its follow-ups; status shows them (exit 8
// once overdue); status --due-within fails; rollback and set refuse the
// exposed versions; close refuses while items remain; follow-up --done and
// --rotate-all mark them; close --force --reason closes. No value appears
// in any output nor in the store's files.
func TestIncident(t *testing.T) {
	c := startCluster(t)
	role := fmt.Sprintf("rekey_incident_%d", os.Getpid())
	pw := ctRandB64(24, base64.RawURLEncoding)
	testkit.Exec(t, c, "CREATE ROLE "+role+" LOGIN")
	testkit.SetPassword(t, c.SuperConnString("postgres"), role, pw)
	p := ctInitProject(t, t.TempDir(), ".env", "incident-test", "DATABASE_URL="+c.ConnString(role, pw, "postgres")+"\n"+
		"DATABASE_PASSWORD="+pw+"\n"+
		"JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n"+
		"SESSION_SECRET="+ctRandB64(32, base64.StdEncoding)+"\n"+
		"RUST_LOG=info\n")
	var st jwtAppState
	app := jwtApp(t, p.envPath, &st)
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	checks := "\nchecks:\n  me:\n    http:\n      url: " + app.URL + "/me\n      headers: {Authorization: \"Bearer {{ JWT_SECRET | jwt }}\"}\n"
	if err := os.WriteFile(cfgPath, append(raw, checks...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	values := []string{pw, p.get(1), p.must("get", "SESSION_SECRET", "-n")}
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

	// The leaked value pasted into --reason is refused, not recorded.
	if r := run(5, "incident", "open", "--secret", "JWT_SECRET", "--reason", "leaked: "+values[1]); !strings.Contains(r.stderr, "--reason holds the value of JWT_SECRET v1") {
		t.Fatalf("a value in --reason: %v", r)
	}
	if r := run(0, "incident", "status"); !strings.Contains(r.stdout, "no open incident") {
		t.Fatalf("an incident was recorded: %v", r)
	}
	r := run(0, "incident", "open", "--secret", "JWT_SECRET", "--secret", "DATABASE_PASSWORD", "--reason", "leaked", "--json")
	var open incidentOpenOut
	if err := json.Unmarshal([]byte(r.stdout), &open); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	inc := open.Incident
	id := inc.ID
	if !strings.HasPrefix(id, "INC-") || inc.State != "open" || len(inc.Secrets) != 2 {
		t.Fatalf("incident: %+v", inc)
	}
	for _, s := range inc.Secrets {
		if s.ExposedVersion != 1 || s.Replacement != 2 || s.ExposedFingerprint == "" || s.ReplacementFingerprint == "" || s.ExposedFingerprint == s.ReplacementFingerprint {
			t.Fatalf("secret not rotated as expected: %+v", s)
		}
	}
	methods := map[string]string{}
	for _, pr := range open.Proofs {
		methods[pr.Secret+" "+pr.Method] = pr.Verdict
	}
	if methods["JWT_SECRET check me"] != "dead" || methods["DATABASE_PASSWORD postgres login"] != "dead" || len(open.Proofs) != 2 {
		t.Fatalf("proofs: %+v", open.Proofs)
	}
	actions := map[string]string{}
	for _, ev := range inc.Timeline {
		actions[ev.Action+" "+ev.Secret] = ev.Outcome
	}
	for _, want := range []string{"rotate JWT_SECRET", "rotate DATABASE_PASSWORD", "verify ", "prove-dead JWT_SECRET", "prove-dead DATABASE_PASSWORD", "access-review ", "scan "} {
		if actions[want] != "ok" {
			t.Errorf("timeline: %q is %q, want ok: %+v", want, actions[want], inc.Timeline)
		}
	}
	if actions["notify "] != "skipped" {
		t.Errorf("notify: %q", actions["notify "])
	}
	if !strings.Contains(r.stderr, "prove-dead JWT_SECRET") || !strings.Contains(r.stderr, "access-review") {
		t.Errorf("no narration of the timeline on stderr:\n%s", r.stderr)
	}
	keys := map[string]bool{}
	for _, f := range inc.FollowUps {
		keys[f.Key] = true
		if f.Done || f.Due.IsZero() {
			t.Errorf("follow-up %+v", f)
		}
	}
	for _, k := range []string{"rotate-all", "scan-history", "doctor", "report"} {
		if !keys[k] {
			t.Errorf("no follow-up %s: %v", k, keys)
		}
	}
	if loginURL(t, c.ConnString(role, pw, "postgres")) {
		t.Fatal("the old database password still logs in")
	}
	values = append(values, p.get(2), p.must("get", "DATABASE_PASSWORD", "-n"))

	r = run(0, "incident", "status")
	for _, want := range []string{id, "rotate-all", "scan-history", "rekey incident follow-up " + id + " --rotate-all", "prove-dead"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	later := []string{"REKEY_TEST_NOW=" + time.Now().Add(25*time.Hour).UTC().Format(time.RFC3339)}
	if r := p.runEnv(later, "incident", "status", id); r.code != 8 || !strings.Contains(r.stdout, "OVERDUE") {
		t.Fatalf("overdue follow-ups: %v", r)
	}
	r = run(9, "status", "--due-within", "1d")
	if !strings.Contains(r.stdout+r.stderr, "incident "+id+" is open") {
		t.Errorf("the gate does not name the incident: %v", r)
	}

	// The exposed versions can never be made current again.
	r = run(5, "rollback", "JWT_SECRET")
	if !strings.Contains(r.stderr, "was exposed") {
		t.Errorf("rollback: %v", r)
	}
	cmd, stdout, stderr := p.command(nil, "set", "DATABASE_PASSWORD")
	cmd.Stdin = strings.NewReader(pw + "\n")
	start := time.Now()
	sr := p.finish(cmd, cmd.Run(), stdout, stderr, []string{"set", "DATABASE_PASSWORD"}, start)
	outputs = append(outputs, sr.stdout, sr.stderr)
	if sr.code != 5 || !strings.Contains(sr.stderr, "was exposed") {
		t.Errorf("set to the exposed password: %v", sr)
	}

	r = run(4, "incident", "close", id)
	if !strings.Contains(r.stderr, "follow-ups remaining") || !strings.Contains(r.stderr, "rekey incident follow-up "+id+" --rotate-all") {
		t.Errorf("close with items remaining: %v", r)
	}
	run(0, "incident", "follow-up", id, "--done", "doctor", "--note", "rekey doctor: clean")
	run(4, "incident", "follow-up", id, "--done", "doctor")
	run(3, "incident", "follow-up", id, "--done", "nonsense")
	r = run(0, "incident", "follow-up", id, "--rotate-all")
	if !strings.Contains(r.stdout, "SESSION_SECRET v2") || strings.Contains(r.stdout, "JWT_SECRET v3") {
		t.Errorf("rotate-all should rotate the other secrets only: %v", r)
	}
	values = append(values, p.must("get", "SESSION_SECRET", "-n"))
	r = run(0, "incident", "status", id, "--json")
	var sts []struct {
		State     string `json:"state"`
		FollowUps []struct {
			Key  string `json:"key"`
			Done bool   `json:"done"`
		} `json:"follow_ups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	for _, f := range sts[0].FollowUps {
		if want := f.Key == "doctor" || f.Key == "rotate-all"; f.Done != want {
			t.Errorf("follow-up %s done=%v", f.Key, f.Done)
		}
	}
	run(2, "incident", "close", id, "--force")
	r = run(0, "incident", "close", id, "--force", "--reason", "report handled outside rekey")
	if !strings.Contains(r.stdout, "closed by force") {
		t.Errorf("close --force: %v", r)
	}
	r = run(0, "incident", "status", id)
	if !strings.Contains(r.stdout, "closed by force") || !strings.Contains(r.stdout, "report handled outside rekey") {
		t.Errorf("status after close: %s", r.stdout)
	}
	run(0, "incident", "status") // no open incident
	r = run(0, "audit")
	for _, want := range []string{"incident.open", "incident.follow-up", "incident.close"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit lacks %s", want)
		}
	}

	// The canary: no value in any output, nor in the store's files.
	store := filepath.Join(p.dir, ".rekey")
	ents, err := os.ReadDir(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if data, err := os.ReadFile(filepath.Join(store, e.Name())); err == nil {
			outputs = append(outputs, string(data))
		}
	}
	for _, v := range values {
		for _, f := range forms(v) {
			for _, o := range outputs {
				if bytes.Contains([]byte(o), []byte(f)) {
					t.Fatal("a value in an output of rekey incident or in the store's files")
				}
			}
		}
	}
}

// TestIncidentRunProcesses: a process `rekey run` started with the exposed
// secret before the incident still holds the old value whatever the
// rotation publishes: the access review names it as still running (pid,
// command, actor), and the report, written after it exited, says exited.
func TestIncidentRunProcesses(t *testing.T) {
	p := ctInitProject(t, t.TempDir(), ".env", "run-review", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\nRUST_LOG=info\n")
	cmd, _, _ := p.command(nil, "run", "--", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // rekey run and sleep, killed together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			kill()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.must("audit"), "run"); {
		if time.Now().After(deadline) {
			t.Fatal("rekey run did not record its read")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var open struct {
		Incident struct {
			ID string `json:"id"`
		} `json:"incident"`
		Access struct {
			Processes []struct {
				Actor, Command string
				PID            int
				Running        bool
				Secrets        []string
			} `json:"run_processes"`
		} `json:"access_review"`
	}
	r := p.run("incident", "open", "--secret", "JWT_SECRET", "--reason", "pasted in a ticket", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &open); err != nil || r.code != 0 {
		t.Fatalf("incident open: %v\n%v", err, r)
	}
	ps := open.Access.Processes
	if len(ps) != 1 || !ps[0].Running || ps[0].PID != cmd.Process.Pid || ps[0].Command != "sleep" || ps[0].Actor != "run-review" || len(ps[0].Secrets) != 1 {
		t.Fatalf("run processes: %+v (rekey run is pid %d)", ps, cmd.Process.Pid)
	}
	if !strings.Contains(r.stderr, "STILL RUNNING with an exposed value, started by rekey run: pid "+strconv.Itoa(cmd.Process.Pid)+" sleep") {
		t.Errorf("incident open does not say the process still runs:\n%s", r.stderr)
	}
	kill()
	report := p.must("incident", "report", open.Incident.ID)
	if !strings.Contains(report, "| "+strconv.Itoa(cmd.Process.Pid)+" | sleep | run-review | JWT_SECRET |") || !strings.Contains(report, "| exited |") {
		t.Errorf("the report's run processes:\n%s", report)
	}
}

// followUpDone says whether follow-up key is done in statusJSON, the output
// of `incident status ID --json` (one incident); it fails the test when the
// incident has no such follow-up.
func followUpDone(t *testing.T, statusJSON, key string) bool {
	t.Helper()
	var incs []struct {
		FollowUps []struct {
			Key  string `json:"key"`
			Done bool   `json:"done"`
		} `json:"follow_ups"`
	}
	if err := json.Unmarshal([]byte(statusJSON), &incs); err != nil || len(incs) != 1 {
		t.Fatalf("incident status --json: %v\n%s", err, statusJSON)
	}
	for _, f := range incs[0].FollowUps {
		if f.Key == key {
			return f.Done
		}
	}
	t.Fatalf("the incident has no follow-up %s: %+v", key, incs[0].FollowUps)
	return false
}
