package reencrypt

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// Phases of a paceScenario.
const (
	paceIdle, paceLoaded, paceRecovering, paceDone = 0, 1, 2, 3
)

// paceScenario runs a re-encryption of 300 rows at adaptive pace while a
// load is started and stopped, driven by the decisions themselves: load
// on after 3 decisions under target, off after backoffs back-offs of reason, and
// the run's writes wait until 5 decisions in a row under target are seen.
// It returns the decisions by phase and the last progress; the assertions
// are on them, never on timing.
func paceScenario(t *testing.T, dsn string, conn *pgx.Conn, cfg rekey.ReencryptSpec, reason string, backoffs int, on, off func()) ([4][]PaceDecision, Progress) {
	t.Helper()
	cfg.Columns, cfg.BatchSize, cfg.Mode = []string{"patients.email"}, 50, rekey.ReencryptOnline
	oldK, newK, _, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 300)
	ctx := testCtx(t)
	var (
		mu      sync.Mutex
		phase   = paceIdle
		log     [4][]PaceDecision
		count   int
		release = make(chan struct{})
	)
	j := job(dsn, cfg, oldK, newK, "pace")
	j.PaceCalibration, j.PaceMinRows = 300*time.Millisecond, -1
	j.OnPace = func(table string, d PaceDecision) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s: %v", table, d)
		log[phase] = append(log[phase], d)
		switch {
		case phase == paceIdle && d.Reason == PaceUnder:
			if count++; count == 3 {
				on()
				phase, count = paceLoaded, 0
			}
		case phase == paceLoaded && d.Reason == reason:
			if count++; count == backoffs {
				off()
				phase, count = paceRecovering, 0
			}
		case phase == paceRecovering && d.Reason == PaceUnder:
			if count++; count == 5 {
				phase = paceDone
				close(release)
			}
		case phase == paceRecovering:
			count = 0 // five in a row
		}
	}
	var last Progress
	j.Progress = func(p Progress) { last = p }
	testHookBeforeWrite = func(string, int) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	defer func() { testHookBeforeWrite = nil }()
	res, err := Run(ctx, j)
	if err != nil || res.Reencrypted != 300 {
		t.Fatalf("%v %+v", err, res)
	}
	checkDecrypts(t, conn, "patients", newC, 300, "email")
	mu.Lock()
	defer mu.Unlock()
	if phase != paceDone {
		t.Fatalf("the run ended in phase %d", phase)
	}
	if cal := log[paceIdle][0]; cal.Reason != PaceCalibrated || cal.Target < paceMinTarget || cal.Target < 2*cal.P99 {
		t.Fatalf("first decision %v, want the calibration (target twice the idle p99, at least %v)", cal, paceMinTarget)
	}
	// While the load lasts: back-offs, each multiplying the rate by
	// paceDecrease, the decisions in between settling.
	ld := log[paceLoaded]
	var seen int
	for _, d := range ld {
		if (d.P99 > d.Target || d.LockWaits > 0) && d.NewRate >= d.OldRate && d.OldRate > paceMinRate && d.Reason != PaceSettling {
			t.Errorf("p99 over target or lock waits without a back-off: %v", d)
		}
		if d.Reason == reason {
			seen++
			if d.NewRate != max(paceMinRate, d.OldRate*paceDecrease) {
				t.Errorf("back-off not multiplicative: %v", d)
			}
		}
	}
	if seen != backoffs || ld[len(ld)-1].NewRate >= ld[0].OldRate {
		t.Fatalf("under load: %d back-offs, rate %v → %v", seen, ld[0].OldRate, ld[len(ld)-1].NewRate)
	}
	// After: a slow, additive recovery.
	rc := log[paceRecovering]
	tail := rc[len(rc)-5:]
	for _, d := range tail {
		step := d.NewRate - d.OldRate
		additive := math.Abs(step-paceIncrease) < 1e-6 || math.Abs(step-paceNearIncrease) < 1e-6
		if d.Reason != PaceUnder || !additive || d.P99 > d.Target || d.LockWaits != 0 {
			t.Errorf("recovery: %v", d)
		}
	}
	if tail[4].NewRate <= tail[0].OldRate {
		t.Errorf("no recovery: %v after %v", tail[4], tail[0])
	}
	return log, last
}

// TestPaceBacksOffOnProbeLatency: a load that slows the probe (a custom
// probe that sleeps while a flag is set, as a busy server would) makes the
// adaptive pace back off while it lasts and recover after; pace: full and
// maintenance mode probe nothing.
func TestPaceBacksOffOnProbeLatency(t *testing.T) {
	dsn, conn := newDB(t, false)
	mustExec(t, conn, `CREATE TABLE pace_flag (slow boolean NOT NULL)`)
	mustExec(t, conn, `INSERT INTO pace_flag VALUES (false)`)
	flag, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer flag.Close(context.Background())
	setFlag := func(v bool) func() {
		return func() {
			if _, err := flag.Exec(testCtx(t), `UPDATE pace_flag SET slow = $1`, v); err != nil {
				t.Error(err)
			}
		}
	}
	// A fixed target and a slow probe of twice it: a busy machine's idle
	// probes (tens of ms) stay under it, the slow ones over it (and under
	// paceSevere times it), whatever the load.
	cfg := rekey.ReencryptSpec{Probe: `SELECT pg_sleep(CASE WHEN slow THEN 0.6 ELSE 0 END) FROM pace_flag`, TargetP99: 300 * time.Millisecond}
	_, last := paceScenario(t, dsn, conn, cfg, PaceOverTarget, 3, setFlag(true), setFlag(false))
	if last.Pace <= 0 || last.ProbeP99 <= 0 {
		t.Errorf("progress: pace %v, probe p99 %v", last.Pace, last.ProbeP99)
	}

	for _, c := range []rekey.ReencryptSpec{{Pace: rekey.PaceFull, Mode: rekey.ReencryptOnline}, {Mode: rekey.ReencryptMaintenance}} {
		c.Columns = []string{"patients.email"}
		oldK, newK, _, _ := keyPair(t, c)
		called := false
		j := job(dsn, c, oldK, newK, "pace-full-"+c.Mode)
		j.OnPace = func(string, PaceDecision) { called = true }
		j.Progress = func(p Progress) { last = p }
		res, err := Run(testCtx(t), j)
		if res == nil || called || last.Pace != 0 {
			t.Fatalf("%s %s: %v %+v, OnPace called %v, progress %+v", c.Mode, c.Pace, err, res, called, last)
		}
	}
}

// TestPaceBacksOffOnLockWaits: an application session waiting for a row
// lock on the table (another holds the row) makes the default probe's
// pace back off ("lock waits") while it waits and recover after.
func TestPaceBacksOffOnLockWaits(t *testing.T) {
	dsn, conn := newDB(t, false)
	holder, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	waiter, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close(context.Background())
	var tx pgx.Tx
	waited := make(chan error, 1)
	on := func() {
		var err error
		if tx, err = holder.Begin(testCtx(t)); err == nil {
			_, err = tx.Exec(testCtx(t), `SELECT 1 FROM patients WHERE id = 1 FOR UPDATE`)
		}
		if err != nil {
			t.Error(err)
		}
		go func() {
			_, err := waiter.Exec(testCtx(t), `UPDATE patients SET name = 'waited' WHERE id = 1`)
			waited <- err
		}()
	}
	off := func() {
		if err := tx.Commit(testCtx(t)); err != nil {
			t.Error(err)
		}
		if err := <-waited; err != nil {
			t.Error(err)
		}
	}
	log, _ := paceScenario(t, dsn, conn, rekey.ReencryptSpec{}, PaceLockWaits, 3, on, off)
	for _, d := range log[paceLoaded] {
		if d.Reason == PaceLockWaits && d.LockWaits != 1 {
			t.Errorf("%v: want the one waiting session", d)
		}
	}
}

// TestPaceBadProbe: a probe that fails is refused before anything is
// written, naming the probe: setting.
func TestPaceBadProbe(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}, Mode: rekey.ReencryptOnline, Probe: "SELECT nope FROM nowhere"}
	oldK, newK, oldC, _ := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, 10)
	j := job(dsn, cfg, oldK, newK, "bad-probe")
	j.PaceCalibration, j.PaceMinRows = 100*time.Millisecond, -1
	res, err := Run(testCtx(t), j)
	if err == nil || !strings.Contains(err.Error(), "probe failed") || !strings.Contains(rekey.ErrorHint(err), "probe:") {
		t.Fatalf("%v (hint %q)", err, rekey.ErrorHint(err))
	}
	if res != nil && res.Reencrypted != 0 {
		t.Fatalf("%+v", res)
	}
	checkDecrypts(t, conn, "patients", oldC, 10, "email")
}

// TestPaceProbeReconnects: the probe's connection terminated by the server
// counts as a probe over target (one back-off), is replaced, and the pace
// recovers.
func TestPaceProbeReconnects(t *testing.T) {
	dsn, conn := newDB(t, false)
	kill := func() {
		var n int
		err := conn.QueryRow(testCtx(t), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%pg_locks w%'`).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("terminated %d probe connections: %v", n, err)
		}
	}
	paceScenario(t, dsn, conn, rekey.ReencryptSpec{}, PaceOverTarget, 1, kill, func() {})
}

// TestPaceSmallRun: an adaptive run with fewer rows left than
// DefaultPaceMinRows neither calibrates nor probes (no decision): it goes
// at the start rate, or rows_per_second when lower.
func TestPaceSmallRun(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}, Mode: rekey.ReencryptOnline}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, 300)
	called := false
	j := job(dsn, cfg, oldK, newK, "pace-small")
	j.OnPace = func(string, PaceDecision) { called = true }
	res, err := Run(testCtx(t), j)
	if err != nil || res.Reencrypted != 300 || called {
		t.Fatalf("%v %+v; pace decisions: %t", err, res, called)
	}
	checkDecrypts(t, conn, "patients", newC, 300, "email")
	for _, c := range []struct{ ceiling, want int }{{0, int(paceStartRate)}, {2000, 2000}, {50000, int(paceStartRate)}} {
		r := &runner{cfg: rekey.ReencryptSpec{Mode: rekey.ReencryptOnline, RowsPerSecond: c.ceiling}, total: 300}
		if r.smallRun(); r.adaptive() || r.cfg.RowsPerSecond != c.want {
			t.Errorf("rows_per_second %d: adaptive %t at %d rows/s, want %d unprobed", c.ceiling, r.adaptive(), r.cfg.RowsPerSecond, c.want)
		}
	}
	r := &runner{cfg: rekey.ReencryptSpec{Mode: rekey.ReencryptOnline}, total: DefaultPaceMinRows}
	if r.smallRun(); !r.adaptive() {
		t.Errorf("%d rows: want adaptive", DefaultPaceMinRows)
	}
}
