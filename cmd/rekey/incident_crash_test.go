package main

// Crash tests of `rekey incident open` (issue 15): the real binary is killed
// (SIGKILL) at every point of the incident's actions (after it is recorded,
// after each action, and at every step boundary of its emergency rotation),
// and at a random moment; `rekey recover` must then finish the incident's
// actions: the exposed secret rotated once, its old value proved dead, the
// follow-ups listed, the notification handed to the outbox once under the
// incident's idempotency key and delivered once, and the timeline saying
// "interrupted" then "recover". No value in any output.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// icProject is a project with JWT_SECRET, an http check presenting
// {{ JWT_SECRET | jwt }} to an app (jwtApp), and a command notify channel
// "ops" that appends each message it is given to a log outside the project.
// Like a real receiver it ignores an empty delivery: rekey killed before it
// wrote the message closes the script's stdin with nothing on it.
type icProject struct {
	*ctProject
	log     string   // the channel's receiver: one JSON message per line
	svcLog  string   // the service's commands, one per line (stop, start, restart)
	outputs []string // every stdout and stderr seen
}

func icNewProject(t *testing.T) *icProject {
	t.Helper()
	p := ctInitProject(t, t.TempDir(), ".env", "incident-crash", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\nRUST_LOG=info\n")
	var st jwtAppState
	app := jwtApp(t, p.envPath, &st)
	ext := t.TempDir()
	ip := &icProject{ctProject: p, log: filepath.Join(ext, "received.log"), svcLog: filepath.Join(ext, "service.log")}
	script := filepath.Join(ext, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nm=$(tr -d '\\n')\n[ -z \"$m\" ] || printf '%s\\n' \"$m\" >> '"+ip.log+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	svc := filepath.Join(ext, "service.sh")
	if err := os.WriteFile(svc, []byte("#!/bin/sh\necho \"$1\" >> '"+ip.svcLog+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	extra := "\nchecks:\n  me:\n    http:\n      url: " + app.URL + "/me\n      headers: {Authorization: \"Bearer {{ JWT_SECRET | jwt }}\"}\n" +
		"notify:\n  channels:\n    ops: {type: command, command: [" + script + "], timeout: 10s}\n" +
		"services:\n  api: {restart: [" + svc + ", restart], stop: [" + svc + ", stop], start: [" + svc + ", start], consumes: [JWT_SECRET]}\n"
	if err := os.WriteFile(cfg, append(raw, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	return ip
}

// runWant runs rekey, keeps its output for the canary and fails unless it
// exits want.
func (p *icProject) runWant(want int, args ...string) ctResult {
	p.t.Helper()
	r := p.run(args...)
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	if r.code != want || r.sig != 0 {
		p.t.Fatalf("want exit %d: %v", want, r)
	}
	return r
}

// icIncident is what the test reads of `incident status --json`.
type icIncident struct {
	ID      string `json:"id"`
	Env     string `json:"environment"`
	State   string `json:"state"`
	Stop    bool   `json:"stop"`
	Secrets []struct {
		Name           string `json:"name"`
		ExposedVersion int    `json:"exposed_version"`
		Replacement    int    `json:"replacement"`
	} `json:"secrets"`
	Timeline []struct {
		At                              time.Time
		Action, Secret, Outcome, Detail string
	} `json:"timeline"`
	FollowUps []struct {
		Key string `json:"key"`
	} `json:"follow_ups"`
}

// incidents is `incident status --json` (every open incident), which must exit 0.
func (p *icProject) incidents() []icIncident {
	p.t.Helper()
	r := p.runWant(0, "incident", "status", "--json")
	var out []icIncident
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		p.t.Fatalf("incident status --json: %v\n%s", err, r.stdout)
	}
	return out
}

// outbox is the incident.opened items of `notify status --all --json`.
func (p *icProject) outbox() map[string]int {
	p.t.Helper()
	r := p.runWant(0, "notify", "status", "--all", "--json")
	var items []struct {
		Event          string `json:"event"`
		Channel        string `json:"channel"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &items); err != nil {
		p.t.Fatalf("notify status --json: %v\n%s", err, r.stdout)
	}
	keys := map[string]int{}
	for _, it := range items {
		if it.Event == rekey.EventIncidentOpened {
			keys[it.IdempotencyKey]++
		}
	}
	return keys
}

// received counts the messages the channel's receiver got, by idempotency key.
func (p *icProject) received() map[string]int { return p.receivedFor("") }

// receivedFor counts the incident.opened messages the receiver got by
// idempotency key, those of incident id only when id is set.
func (p *icProject) receivedFor(id string) map[string]int {
	p.t.Helper()
	raw, err := os.ReadFile(p.log)
	if os.IsNotExist(err) {
		return map[string]int{}
	}
	if err != nil {
		p.t.Fatal(err)
	}
	keys := map[string]int{}
	for line := range strings.Lines(string(raw)) {
		var m struct {
			Event          string `json:"event"`
			IdempotencyKey string `json:"idempotency_key"`
			IncidentID     string `json:"incident_id"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			p.t.Fatalf("the receiver got %q: %v", line, err)
		}
		if m.Event == rekey.EventIncidentOpened && (id == "" || m.IncidentID == id) {
			keys[m.IdempotencyKey]++
		}
	}
	return keys
}

// checkFinished checks incident inc after recovery: the exposed JWT_SECRET
// v(exposed) replaced by the current version, created by one rotation (a
// rolled-back attempt leaves one unlabeled version before it), its proof
// dead, every action once, the follow-ups listed, the notification in the
// outbox once under the incident's key and received at least once, under
// that key only (a kill between a delivery and its record redelivers it);
// the timeline
// shows "interrupted" then "recover" as many times as it was interrupted
// (each interrupted event dated by the event saved just before it).
func (p *icProject) checkFinished(inc icIncident, exposed int, interruptions int) {
	t := p.t
	t.Helper()
	if inc.State != "open" || len(inc.Secrets) != 1 || inc.Secrets[0].ExposedVersion != exposed {
		t.Fatalf("incident: %+v", inc)
	}
	rows := p.history()
	cur := ctOneCurrent(t, rows)
	switch repl := inc.Secrets[0].Replacement; {
	case repl != cur:
		t.Fatalf("the incident's replacement is v%d, the current version v%d: %+v", repl, cur, rows)
	case cur == exposed+2:
		if r, _ := ctRowN(rows, exposed+1); r.Label != "" {
			t.Fatalf("two versions made current after v%d (rotated twice): %+v", exposed, rows)
		}
	case cur != exposed+1:
		t.Fatalf("JWT_SECRET v%d exposed, v%d current: rotated more than once? %+v", exposed, cur, rows)
	}
	if rows[len(rows)-1].N != cur {
		t.Fatalf("a version after the current one: %+v", rows)
	}
	if v, _ := ctEnvValue(p.readEnv(), "JWT_SECRET"); v != p.get(0) {
		t.Fatal("the .env does not hold the current JWT_SECRET")
	}
	count := map[string]int{}
	var order []string
	for _, ev := range inc.Timeline {
		count[ev.Action+" "+ev.Secret]++
		order = append(order, ev.Action)
		want := []string{rekey.OutcomeOK}
		switch ev.Action {
		case rekey.ActionInterrupted:
			want = []string{rekey.OutcomeInterrupted}
		case rekey.ActionRestart, rekey.ActionSessions:
			want = append(want, rekey.OutcomeSkipped) // nothing declared to restart, no hook
		}
		if !slices.Contains(want, ev.Outcome) {
			t.Errorf("timeline: %s %s is %s (%s), want %v", ev.Action, ev.Secret, ev.Outcome, ev.Detail, want)
		}
	}
	for _, k := range []string{"stop ", "rotate JWT_SECRET", "restart ", "verify ", "prove-dead JWT_SECRET", "access-review ", "scan ", "notify ", "follow-up "} {
		if k == "stop " && !inc.Stop {
			if count[k] != 0 {
				t.Errorf("timeline: a stop event without --stop: %+v", inc.Timeline)
			}
			continue
		}
		if count[k] != 1 {
			t.Errorf("timeline: %q %d times, want once: %+v", k, count[k], inc.Timeline)
		}
	}
	if count["interrupted "] != interruptions || count["recover "] != interruptions {
		t.Errorf("want %d interrupted and recover events: %v", interruptions, order)
	}
	for i, a := range order {
		if a != rekey.ActionInterrupted {
			continue
		}
		switch ev := inc.Timeline[i]; {
		case i+1 >= len(order) || order[i+1] != rekey.ActionRecover:
			t.Errorf("interrupted is not followed by recover: %v", order)
		case ev.At.After(inc.Timeline[i+1].At) || (i > 0 && !ev.At.Equal(inc.Timeline[i-1].At)):
			t.Errorf("the interruption is not dated by the last event saved before it: %+v", inc.Timeline)
		}
	}
	// The service (stopped first with --stop) is running again: the last
	// of its commands started it (the rotation's restart).
	raw, err := os.ReadFile(p.svcLog)
	if err != nil {
		t.Fatal(err)
	}
	cmds := strings.Fields(string(raw))
	if (inc.Stop && !slices.Contains(cmds, "stop")) || !slices.Contains([]string{"restart", "start"}, cmds[len(cmds)-1]) {
		t.Errorf("the service's commands: %v, want a stop and the last one a (re)start", cmds)
	}
	keys := map[string]bool{}
	for _, f := range inc.FollowUps {
		keys[f.Key] = true
	}
	for _, k := range []string{rekey.FollowUpRotateAll, rekey.FollowUpScanHistory, rekey.FollowUpDoctor, rekey.FollowUpReport} {
		if !keys[k] {
			t.Errorf("follow-up %s missing: %+v", k, inc.FollowUps)
		}
	}
	key := rkapp.IdempotencyKey(inc.Env, rekey.EventIncidentOpened, inc.ID, "ops")
	if got := p.outbox(); got[key] != 1 {
		t.Errorf("outbox: incident.opened under %s %d times, want once (%v)", key, got[key], got)
	}
	// At least once, under the one key: a kill between a delivery and
	// its record (incident open delivers when it ends) redelivers it under
	// the same key, which the receiver recognises; never under another.
	got := p.receivedFor(inc.ID)
	if got[key] < 1 || len(got) != 1 {
		t.Errorf("receiver: incident %s's incident.opened by key %v, want under %s only, at least once", inc.ID, got, key)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// canary fails if any value JWT_SECRET ever held is in an output or in
// what the receiver got.
func (p *icProject) canary() {
	p.t.Helper()
	received, _ := os.ReadFile(p.log)
	all := strings.Join(p.outputs, "\n") + string(received)
	for _, row := range p.history() {
		for _, f := range forms(p.get(row.N)) {
			if strings.Contains(all, f) {
				p.t.Fatalf("JWT_SECRET v%d is in an output or a notification", row.N)
			}
		}
	}
}

// icCrashPoints are the points of `incident open` a crash test kills it at:
// the incident's own (after it is recorded, after each action) and the
// step boundaries of its emergency rotation of JWT_SECRET (no applier;
// rollback's points are not reached by a rotation that succeeds).
func icCrashPoints() []string {
	pts := rkapp.IncidentFaultPoints(true)
	for _, fp := range engine.FaultPoints() {
		if fp.Needs == engine.NeedNothing {
			pts = append(pts, fp.Point)
		}
	}
	return pts
}

// TestIncidentCrashAtEveryPoint kills `incident open` at every crash point,
// then checks: a second `incident open` for the secret refuses (exit 4,
// naming rekey recover) while the incident is unfinished; `rekey recover`
// finishes it (exit 0, saying so); the incident is consistent
// (checkFinished, interrupted); a second recover finds nothing; `incident
// status` exits 0; no value in any output.
func TestIncidentCrashAtEveryPoint(t *testing.T) {
	app := rkapp.IncidentFaultPoints(true)
	for _, point := range icCrashPoints() {
		t.Run(strings.ReplaceAll(point, ":", "_"), func(t *testing.T) {
			t.Parallel()
			p := icNewProject(t)
			open := []string{"incident", "open", "--secret", "JWT_SECRET", "--stop", "--reason", "pasted in a public issue", "--json"}
			r := p.runEnv([]string{"REKEY_TEST_FAULT=" + point}, open...)
			p.outputs = append(p.outputs, r.stdout, r.stderr)
			if r.sig != syscall.SIGKILL {
				if r.code != 0 || r.sig != 0 || slices.Contains(app, point) {
					t.Fatalf("want death by SIGKILL at %s: %v", point, r)
				}
				t.Logf("%s is not reached by the emergency rotation of JWT_SECRET: it ran to the end", point)
				inc := p.incidents()
				p.runWant(0, "recover") // delivers the notification, finishes nothing
				p.checkFinished(inc[0], 1, 0)
				p.canary()
				return
			}
			// Before recovery: the incident is recorded, unfinished. A
			// second open refuses (the engine's recovery, which every
			// mutating command runs first, completes the rotation then:
			// only at the incident's own points, so that `rekey recover`
			// is the one that completes it at the rotation's).
			if slices.Contains(app, point) {
				if r := p.runWant(4, open...); !strings.Contains(r.stderr, "rekey recover") || !strings.Contains(r.stderr, "interrupted") {
					t.Fatalf("a second incident open: %v", r)
				}
			}
			if incs := p.incidents(); len(incs) != 1 || len(incs[0].FollowUps) != 0 {
				t.Fatalf("before recovery: %+v", incs)
			}
			if r := p.runWant(0, "incident", "status"); !strings.Contains(r.stdout, "interrupted before its actions completed") || !strings.Contains(r.stdout, "rekey recover") {
				t.Errorf("incident status before recovery does not say it was interrupted:\n%s", r.stdout)
			}
			rec := p.runWant(0, "recover")
			incs := p.incidents()
			if len(incs) != 1 {
				t.Fatalf("after recovery, want one open incident: %+v", incs)
			}
			if !strings.Contains(rec.stdout, "finished the interrupted actions of incident "+incs[0].ID) {
				t.Errorf("recover does not say it finished the incident:\n%s", rec.stdout)
			}
			p.checkFinished(incs[0], 1, 1)
			if r := p.runWant(0, "recover"); !strings.Contains(r.stdout, "nothing to recover") {
				t.Errorf("a second recover: %v", r)
			}
			p.checkFinished(p.incidents()[0], 1, 1)
			if r := p.runWant(0, "audit", "verify"); r.code != 0 {
				t.Fatalf("audit: %v", r)
			}
			p.canary()
		})
	}
}

// TestIncidentKillRandomly kills `incident open` at a random moment (up to
// the length of an uninterrupted one), then recovers, in a bounded loop:
// after each, the incident is finished and consistent (checkFinished;
// interrupted when the kill landed before its last save), then closed so
// that the next iteration opens a new one for the same secret.
func TestIncidentKillRandomly(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	p := icNewProject(t)
	open := []string{"incident", "open", "--secret", "JWT_SECRET", "--stop", "--reason", "pasted in a public issue"}
	closeAll := func() {
		for _, inc := range p.incidents() {
			p.runWant(0, "incident", "close", inc.ID, "--force", "--reason", "crash test iteration")
		}
	}
	start := time.Now()
	normal := time.Hour
	for range 2 { // the first is slower (cold caches): the shorter one
		r := p.runWant(0, open...)
		normal = min(normal, r.dur)
		closeAll()
	}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 0x1c1d))
	if seed := os.Getenv("REKEY_TEST_SEED"); seed != "" {
		var s uint64
		fmt.Sscan(seed, &s)
		rng = mrand.New(mrand.NewPCG(s, 0x1c1d))
	}
	budget := testkit.KillBudget(5 * time.Second)
	var killed, finished, iterations, unrecorded, resumed int
	for loop := time.Now(); iterations < 20 && time.Since(loop) < budget; iterations++ {
		exposed := ctOneCurrent(t, p.history())
		delay := time.Duration(rng.Int64N(int64(normal)*5/4 + 1)) // a quarter past the end: some finish
		r := p.killAfter(delay, open...)
		p.outputs = append(p.outputs, r.stdout, r.stderr)
		switch {
		case r.sig == syscall.SIGKILL:
			killed++
		case r.code == 0:
			finished++
		default:
			t.Fatalf("iteration %d (kill after %v): %v", iterations, delay, r)
		}
		p.runWant(0, "recover")
		incs := p.incidents()
		switch {
		case len(incs) == 0 && r.sig == syscall.SIGKILL:
			// Killed before the incident was recorded: nothing happened.
			if cur := ctOneCurrent(t, p.history()); cur != exposed {
				t.Fatalf("iteration %d: no incident, yet JWT_SECRET v%d is current (was v%d)", iterations, cur, exposed)
			}
			unrecorded++
			continue
		case len(incs) != 1:
			t.Fatalf("iteration %d: want one open incident: %+v", iterations, incs)
		}
		interrupted := 0
		for _, ev := range incs[0].Timeline {
			if ev.Action == rekey.ActionInterrupted {
				interrupted++
			}
		}
		if interrupted > 0 && r.sig == 0 {
			t.Fatalf("iteration %d: an incident open that exited 0 is marked interrupted", iterations)
		}
		if interrupted > 0 {
			resumed++
		}
		p.checkFinished(incs[0], exposed, interrupted)
		closeAll()
	}
	p.canary()
	if killed == 0 {
		t.Errorf("no incident open was killed mid-way in %d iterations", iterations)
	}
	t.Logf("%d iterations in %v (one incident open: %v): %d killed (%d before the incident was recorded, %d finished by recover), %d finished before the kill",
		iterations, time.Since(start).Round(time.Millisecond), normal.Round(time.Millisecond), killed, unrecorded, resumed, finished)
}

// TestIncidentCrashDuringRecover kills `incident open` after its rotation,
// then kills the `rekey recover` that finishes it after each later action
// in turn: each recover records one more interruption, and the last one
// finishes the incident with every action done once.
func TestIncidentCrashDuringRecover(t *testing.T) {
	p := icNewProject(t)
	r := p.crash(rkapp.FaultIncidentAfter(rekey.ActionRotate), "incident", "open", "--secret", "JWT_SECRET", "--reason", "pasted in a public issue")
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	later := []string{rekey.ActionProveDead, rekey.ActionScan, rekey.ActionNotify}
	for _, action := range later {
		r := p.crash(rkapp.FaultIncidentAfter(action), "recover")
		p.outputs = append(p.outputs, r.stdout, r.stderr)
	}
	if r := p.runWant(0, "recover"); !strings.Contains(r.stdout, "finished the interrupted actions") {
		t.Fatalf("the last recover: %v", r)
	}
	p.checkFinished(p.incidents()[0], 1, 1+len(later))
	p.canary()
}
