package main

// `rekey reencrypt pause|resume|pace` from another process against a real
// re-encryption on a real PostgreSQL: 3,000 rows at rows_per_second 500
// (batches of 125), so the run lasts several seconds. Every wait is on a
// condition (the run's snapshot), never a sleep compared with a clock.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// controlRun is a rekey child re-encrypting in the background.
type controlRun struct {
	p      *rcProject
	cmd    *exec.Cmd
	done   chan ctResult
	result *ctResult
}

func (p *rcProject) startControlled(args ...string) *controlRun {
	p.t.Helper()
	cmd, stdout, stderr := p.command(nil, args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	r := &controlRun{p: p, cmd: cmd, done: make(chan ctResult, 1)}
	hung := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	go func() {
		err := cmd.Wait()
		hung.Stop()
		r.done <- p.finish(cmd, err, stdout, stderr, args, start)
	}()
	p.t.Cleanup(func() { cmd.Process.Kill(); r.wait() })
	return r
}

func (r *controlRun) wait() ctResult {
	if r.result == nil {
		res := <-r.done
		r.result = &res
	}
	return *r.result
}

// snapshot reads the run's status snapshot (nil: none yet).
func (p *rcProject) snapshot() *rkapp.ReencryptSnapshot {
	p.t.Helper()
	m, _ := filepath.Glob(filepath.Join(p.dir, ".rekey", "reencrypt-status-*"))
	if len(m) == 0 {
		return nil
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		return nil // renamed away meanwhile
	}
	var s rkapp.ReencryptSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		p.t.Fatalf("snapshot %s: %v", b, err)
	}
	return &s
}

// waitSnap waits until the run's snapshot satisfies cond; the run ending
// first fails the test.
func (r *controlRun) waitSnap(what string, cond func(*rkapp.ReencryptSnapshot) bool) *rkapp.ReencryptSnapshot {
	t := r.p.t
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if s := r.p.snapshot(); s != nil && s.PID == r.cmd.Process.Pid && cond(s) {
			return s
		}
		select {
		case res := <-r.done:
			r.result = &res
			t.Fatalf("the run ended before %s: %v", what, res)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("never %s", what)
	return nil
}

func (p *rcProject) control(args ...string) ctResult {
	p.t.Helper()
	r := p.run(append([]string{"reencrypt"}, args...)...)
	if r.code != 0 {
		p.t.Fatalf("%v", r)
	}
	return r
}

// assertHeld: paused, the done count does not move across many polls of
// the control file (the in-flight batches commit within the first ones).
func (r *controlRun) assertHeld() int64 {
	t := r.p.t
	t.Helper()
	s := r.waitSnap("paused", func(s *rkapp.ReencryptSnapshot) bool { return s.Paused })
	s = r.waitSnap("polled 3 times paused", func(x *rkapp.ReencryptSnapshot) bool { return x.Polls >= s.Polls+3 })
	done := s.Done
	s = r.waitSnap("polled 7 more times paused", func(x *rkapp.ReencryptSnapshot) bool { return x.Polls >= s.Polls+7 })
	if s.Done != done || !s.Paused || s.Done >= s.Total {
		t.Fatalf("paused, the run moved from %d to %d rows (of %d)", done, s.Done, s.Total)
	}
	return done
}

func TestReencryptControl(t *testing.T) {
	const rows = 3000
	p := rcNewProject(t, "atlas", rows)
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "batch_size: 500}", "batch_size: 500, rows_per_second: 500, pace: full}") // the operator's pace alone
	p.must("config", "trust")

	// Nothing running: exit 3 and the next command.
	if r := p.run("reencrypt", "pause"); r.code != 3 || !strings.Contains(r.stderr, "no re-encryption is running") || !strings.Contains(r.stderr, "rekey rotate NAME") {
		t.Fatalf("pause with nothing running: want exit 3 and the hint: %v", r)
	}

	run := p.startControlled("rotate", "ENCRYPTION_KEY")
	run.waitSnap("started", func(s *rkapp.ReencryptSnapshot) bool { return s.Done > 0 })

	// A pace above the ceiling is capped at rows_per_second.
	r := p.control("pace", "100000")
	s := p.snapshot()
	if s.Pace != 500 || s.Ceiling != 500 || !strings.Contains(r.stdout, "at most 500 rows/s") || !strings.Contains(r.stdout, "capped at rows_per_second") {
		t.Fatalf("pace 100000 (ceiling 500): %+v\n%v", s, r)
	}
	if r = p.control("pace", "200"); !strings.Contains(r.stdout, "at most 200 rows/s") || p.snapshot().Pace != 200 {
		t.Fatalf("pace 200: %v", r)
	}
	if r = p.control("pace", "auto"); !strings.Contains(r.stdout, "at most 500 rows/s (rows_per_second)") || p.snapshot().Pace != 0 {
		t.Fatalf("pace auto: %v", r)
	}

	r = p.control("pause")
	if !strings.Contains(r.stdout, "paused ENCRYPTION_KEY's re-encryption at ") || !strings.Contains(r.stdout, "`rekey reencrypt resume` continues") {
		t.Fatalf("pause: %v", r)
	}
	run.assertHeld()
	st := p.run("status")
	if !strings.Contains(st.stdout, "re-encryption of ENCRYPTION_KEY (pid "+strconv.Itoa(run.cmd.Process.Pid)+")") || !strings.Contains(st.stdout, "PAUSED by") {
		t.Fatalf("status while paused: %v", st)
	}

	// A forged control file for the running pid asking for more than the
	// ceiling, with a terminal escape in "by": capped, and quoted in status.
	forged := rkapp.ReencryptControl{PID: run.cmd.Process.Pid, Paused: true, Pace: 1_000_000, By: "mallory\x1b[2J", At: time.Now().UTC()}
	b, _ := json.Marshal(forged)
	m, _ := filepath.Glob(filepath.Join(p.dir, ".rekey", "reencrypt-control-*"))
	if len(m) != 1 {
		t.Fatalf("control file: %v", m)
	}
	if err := os.WriteFile(m[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = run.waitSnap("the forged control applied", func(s *rkapp.ReencryptSnapshot) bool { return s.At.Equal(forged.At) })
	if s.Pace != 500 || !s.Paused {
		t.Fatalf("a forged pace of 1,000,000 rows/s: want capped at 500: %+v", s)
	}
	if st = p.run("status"); strings.Contains(st.stdout+st.stderr, "\x1b") || !strings.Contains(st.stdout, `PAUSED by "mallory\x1b[2J"`) {
		t.Fatalf("status prints the forged name raw: %q", st.stdout)
	}
	if r = p.control("resume"); !strings.Contains(r.stdout, "resumed ENCRYPTION_KEY's re-encryption at ") {
		t.Fatalf("resume: %v", r)
	}
	if res := run.wait(); res.code != 0 || !strings.Contains(res.stderr, "re-encryption of ENCRYPTION_KEY: pause, asked by ") ||
		!strings.Contains(res.stderr, `asked by "mallory\x1b[2J"`) || strings.Contains(res.stderr, "\x1b") {
		t.Fatalf("the controlled rotation: want exit 0 and each control narrated, quoted: %v", res)
	}
	key, _ := p.envKeys()
	p.check(key)
	if h := p.must("audit", "--secret", "ENCRYPTION_KEY", "--json"); strings.Count(h, "reencrypt.control") < 6 || !strings.Contains(h, "mallory") || strings.Contains(h, "\x1b") {
		t.Fatalf("want the controls in the audit log:\n%s", h)
	}
	if m, _ := filepath.Glob(filepath.Join(p.dir, ".rekey", "reencrypt-*")); len(m) != 0 {
		t.Fatalf("files left after the run: %v", m)
	}
	// Secret names still go to `reencrypt NAME...` beside the subcommands.
	if r := p.run("reencrypt", "ENCRYPTION_KEY"); r.code != 0 || !strings.Contains(r.stdout, "nothing to finish") {
		t.Fatalf("reencrypt ENCRYPTION_KEY: %v", r)
	}

	// kill -9 while paused: recover resumes at the configured pace (the
	// dead run's pause is not honoured) and every row ends on the new key.
	run = p.startControlled("rotate", "ENCRYPTION_KEY")
	run.waitSnap("started", func(s *rkapp.ReencryptSnapshot) bool { return s.Done > 0 })
	p.control("pause")
	held := run.assertHeld()
	run.cmd.Process.Kill()
	if res := run.wait(); res.sig == 0 {
		t.Fatalf("want killed: %v", res)
	}
	if r := p.run("reencrypt", "resume"); r.code != 3 {
		t.Fatalf("resume with the run dead: want exit 3: %v", r)
	}
	p.recoverOK()
	key2, prev := p.envKeys()
	if key2 == key || prev != "" {
		t.Fatalf("after recover the .env should hold the new key alone (killed at %d rows)", held)
	}
	p.check(key2)
}

// The status line of a running re-encryption: pace and what sets it, the
// adaptive pace's probe p99 and the replica lag when measured, the ETA,
// and every string quoted.
func TestReencryptStatusLine(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := &rkapp.ReencryptSnapshot{PID: 42, Secret: "ENCRYPTION_KEY", Table: "public.patients\x1b]0;x\a", Done: 412_000, Total: 1_000_000,
		RowsPerSecond: 1000, Ceiling: 5000, Adaptive: 1200, ProbeP99: 1500 * time.Microsecond, ReplicaLag: 1200 * time.Millisecond, Updated: now}
	got := reencryptStatusLine(s, now)
	want := `re-encryption of ENCRYPTION_KEY (pid 42): 412,000/1,000,000 rows (41%) in "public.patients\x1b]0;x\a", 1000 rows/s so far, pace: at most 1,200 rows/s (adaptive pace), probe p99 1.5ms, replica lag 1.2s, ETA 9m48s`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	s.Pace, s.Paused, s.By, s.At = 800, true, "alice", now
	got = reencryptStatusLine(s, now.Add(time.Minute))
	if !strings.Contains(got, "pace: at most 800 rows/s (set by `rekey reencrypt pace`)") || strings.Contains(got, "ETA") ||
		!strings.Contains(got, "PAUSED by alice at 12:00:00Z: `rekey reencrypt resume` continues (as of 1m0s ago)") {
		t.Fatalf("paused: %s", got)
	}
}
