package main

// Ctrl-C (a real SIGINT) in the middle of a re-encryption, against a real
// PostgreSQL: the run is held at a row another session has locked (so the
// signal lands mid-run whatever the machine's speed), then interrupted.
// Exit 130 and the one line; `reencrypt --verify` counts the rows already
// moved as under the pending key, not as opening with neither; status
// reports the incomplete state and exits 8; recover (or re-running
// reencrypt) completes; every row opens with the new key.

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// heldRow locks row id of patients in an open transaction until release
// is called (or the test ends): a re-encryption that reaches the row waits.
func (p *rcProject) heldRow(id int64) (release func()) {
	t := p.t
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM patients WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			_ = tx.Rollback(ctx)
			conn.Close(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

// interruptWhenBlocked runs rekey with args, waits until one of its
// sessions waits on a row lock (so some batches before the held row are
// written and the run cannot finish), sends it SIGINT and waits for it.
func (p *rcProject) interruptWhenBlocked(args ...string) ctResult {
	t := p.t
	t.Helper()
	cmd, stdout, stderr := p.command(nil, args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hung := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer hung.Stop()
	blocked := false
	for deadline := time.Now().Add(time.Minute); !blocked && time.Now().Before(deadline); {
		p.withDB(func(ctx context.Context, conn *pgx.Conn) {
			err := conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
				WHERE application_name = 'rekey' AND wait_event_type = 'Lock'`).Scan(&blocked)
			if err != nil {
				t.Fatal(err)
			}
		})
		if !blocked {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !blocked {
		cmd.Process.Kill()
		t.Fatalf("rekey %s never reached the locked row", strings.Join(args, " "))
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	return p.finish(cmd, cmd.Wait(), stdout, stderr, args, start)
}

var interruptedLine = regexp.MustCompile("(?m)^rekey: interrupted \\(SIGINT\\): what it had started is journaled in the store; run `rekey recover` to complete it or roll it back$")

// checkInterrupted requires exit 130 and the one line, with no error of
// the step that was cut.
func checkInterrupted(t *testing.T, r ctResult) {
	t.Helper()
	if r.code != 130 || !interruptedLine.MatchString(r.stderr) || strings.Count(r.stderr, "rekey: interrupted") != 1 {
		t.Fatalf("want exit 130 and the interrupted line: %v", r)
	}
	for _, bad := range []string{"rekey: error", "FAILED", "hint:", "open with neither", "rolled back", "re-encrypted "} {
		if strings.Contains(r.stderr, bad) {
			t.Fatalf("the interrupted run says %q:\n%s", bad, r.stderr)
		}
	}
}

// verifyCounts runs `reencrypt --verify` and returns the counts of the
// email column per key heading ("v2 (pending)") and its stdout.
func (p *rcProject) verifyCounts() (map[string]int64, string) {
	t := p.t
	t.Helper()
	r := p.run("reencrypt", "--verify")
	if r.code != 0 {
		t.Fatalf("reencrypt --verify: %v", r)
	}
	lines := strings.Split(r.stdout, "\n")
	head := regexp.MustCompile(`v\d+ \([a-z]+\)`).FindAllString(lines[0], -1)
	out := map[string]int64{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == len(head)+3 && f[0] == "public.patients.email" {
			for i, h := range head {
				n, err := strconv.ParseInt(f[1+i], 10, 64)
				if err != nil {
					t.Fatalf("count %q in:\n%s", f[1+i], r.stdout)
				}
				out[h] = n
			}
			if f[len(f)-2] != "0" {
				t.Fatalf("values open with neither key:\n%s", r.stdout)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no count of patients.email in:\n%s", r.stdout)
	}
	return out, r.stdout
}

func TestReencryptInterruptedRotation(t *testing.T) {
	const rows = 3000 // batches of 500: the rows before 2001 move, then the run waits
	p := rcNewProject(t, "atlas", rows)
	old, _ := p.envKeys()
	release := p.heldRow(2001)
	r := p.interruptWhenBlocked("rotate", "ENCRYPTION_KEY")
	release()
	checkInterrupted(t, r)
	if !strings.Contains(r.stderr, "re-encryption of ENCRYPTION_KEY stopped by the interruption") {
		t.Fatalf("the narration does not say the re-encryption stopped:\n%s", r.stderr)
	}

	// Rows are on two keys now: the current (old) one and the pending
	// rotation's; --verify counts both, none under "neither".
	counts, out := p.verifyCounts()
	if counts["v2 (pending)"] == 0 || counts["v1 (current)"] == 0 || counts["v2 (pending)"]+counts["v1 (current)"] != rows {
		t.Fatalf("reencrypt --verify after the interruption (want rows on v1 and on the pending v2, %d in all):\n%s", rows, out)
	}
	if !strings.Contains(out, "a rotation to v2 is not finished") || !strings.Contains(out, "rekey recover") {
		t.Fatalf("reencrypt --verify does not say the rotation is open:\n%s", out)
	}

	s := p.run("status")
	if s.code != 8 || !strings.Contains(s.stdout+s.stderr, "interrupted") || !strings.Contains(s.stdout+s.stderr, "rekey recover") {
		t.Fatalf("status after the interruption: want exit 8 naming the interrupted rotation: %v", s)
	}

	p.recoverOK()
	key, prev := p.envKeys()
	if key == old || prev != "" {
		t.Fatal("after recover the .env should hold the new key alone")
	}
	if got := strings.TrimSpace(p.must("get", "ENCRYPTION_KEY")); got != key {
		t.Fatal("the .env key is not the store's current")
	}
	p.check(key)
	if s := p.run("status"); s.code != 0 {
		t.Fatalf("status after recover: %v", s)
	}
	if _, out := p.verifyCounts(); !strings.Contains(out, "every value is on the current key") {
		t.Fatalf("reencrypt --verify after recover:\n%s", out)
	}
}

// `rekey reencrypt` (finishing an incomplete re-encryption) interrupted:
// exit 130, status stays non-zero (reencrypt-incomplete), and running it
// again completes from its checkpoint.
func TestReencryptInterruptedFinish(t *testing.T) {
	const rows = 3000
	p := rcNewProject(t, "atlas", rows)
	old, _ := p.envKeys()
	// A corrupt row leaves the rotation's re-encryption incomplete.
	p.exec(`UPDATE patients SET email = 'bm90IGEgY2lwaGVydGV4dCBhdCBhbGwsIGp1c3QgdGV4dA==' WHERE id = 7`)
	if r := p.run("rotate", "ENCRYPTION_KEY"); r.code != 7 {
		t.Fatalf("want exit 7: %v", r)
	}
	// Repaired, and more rows written under the old key by a replica that
	// still had it, so that the finish has work to do.
	p.exec(`UPDATE patients SET email = $1 WHERE id = 7`, rcSeal(t, old, p.plain[7][0]))
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		batch := &pgx.Batch{}
		for id := int64(1000); id <= rows; id++ {
			batch.Queue(`UPDATE patients SET email = $1 WHERE id = $2`, rcSeal(t, old, p.plain[id][0]), id)
		}
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			t.Fatal(err)
		}
	})
	release := p.heldRow(2501)
	r := p.interruptWhenBlocked("reencrypt")
	release()
	checkInterrupted(t, r)
	if s := p.run("status"); s.code != 8 || !strings.Contains(s.stdout, "reencrypt-incomplete") {
		t.Fatalf("status after the interrupted reencrypt: want exit 8 and reencrypt-incomplete: %v", s)
	}
	counts, out := p.verifyCounts()
	if counts["v1 (previous)"] == 0 || counts["v2 (current)"]+counts["v1 (previous)"] != rows {
		t.Fatalf("reencrypt --verify after the interruption:\n%s", out)
	}
	if r := p.run("reencrypt"); r.code != 0 || !strings.Contains(r.stdout, "every row is on the current key") {
		t.Fatalf("reencrypt again: %v", r)
	}
	key, prev := p.envKeys()
	if prev != "" {
		t.Fatal("ENCRYPTION_KEY_PREVIOUS still in the .env")
	}
	p.check(key)
	if s := p.run("status"); s.code != 0 {
		t.Fatalf("status after the finish: %v", s)
	}
}
