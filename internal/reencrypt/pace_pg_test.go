package reencrypt

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// TestPaceBacksOffUnderLoad: a load that slows the probe (a custom probe
// that sleeps while a flag is set, as a busy server would) makes the
// adaptive pace back off while it lasts and recover after. The scenario
// is driven by the decisions themselves (the flag is set after a few
// decisions under target, cleared after a few back-offs; the run's
// writes wait until the recovery is seen), so the assertions are on the
// logged decisions, never on timing.
func TestPaceBacksOffUnderLoad(t *testing.T) {
	dsn, conn := newDB(t, false)
	mustExec(t, conn, `CREATE TABLE pace_flag (slow boolean NOT NULL)`)
	mustExec(t, conn, `INSERT INTO pace_flag VALUES (false)`)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}, BatchSize: 50, Mode: rekey.ReencryptOnline,
		Probe: `SELECT pg_sleep(CASE WHEN slow THEN 0.1 ELSE 0 END) FROM pace_flag`}
	oldK, newK, _, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 300)
	flag, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer flag.Close(context.Background())
	ctx := testCtx(t)

	const (
		idle, loaded, recovering, done = 0, 1, 2, 3
	)
	var (
		mu      sync.Mutex
		phase   = idle
		log     [4][]PaceDecision // by phase
		count   int               // decisions of the kind the phase waits for
		release = make(chan struct{})
	)
	setFlag := func(v bool) {
		if _, err := flag.Exec(ctx, `UPDATE pace_flag SET slow = $1`, v); err != nil {
			t.Error(err)
		}
	}
	j := job(dsn, cfg, oldK, newK, "pace")
	j.PaceCalibration = 300 * time.Millisecond
	j.OnPace = func(table string, d PaceDecision) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s: %v", table, d)
		log[phase] = append(log[phase], d)
		switch {
		case phase == idle && d.Reason == PaceUnder:
			if count++; count == 3 {
				setFlag(true)
				phase, count = loaded, 0
			}
		case phase == loaded && d.Reason == PaceOverTarget:
			if count++; count == 3 {
				setFlag(false)
				phase, count = recovering, 0
			}
		case phase == recovering && d.Reason == PaceUnder:
			if count++; count == 5 {
				phase = done
				close(release)
			}
		case phase == recovering:
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
	if phase != done {
		t.Fatalf("the run ended in phase %d", phase)
	}
	if cal := log[idle][0]; cal.Reason != PaceCalibrated || cal.Target < paceMinTarget || cal.Target < 2*cal.P99 {
		t.Fatalf("first decision %v, want the calibration (target twice the idle p99, at least %v)", cal, paceMinTarget)
	}
	// While the load lasts: back-offs, each halving the rate.
	ld := log[loaded]
	var backoffs int
	for _, d := range ld {
		if d.P99 > d.Target && d.Reason != PaceOverTarget {
			t.Errorf("p99 over target without a back-off: %v", d)
		}
		if d.Reason == PaceOverTarget {
			backoffs++
			if d.NewRate != max(paceMinRate, d.OldRate*paceDecrease) {
				t.Errorf("back-off not multiplicative: %v", d)
			}
		}
	}
	if backoffs != 3 || ld[len(ld)-1].NewRate >= ld[0].OldRate {
		t.Fatalf("under load: %d back-offs, rate %v → %v", backoffs, ld[0].OldRate, ld[len(ld)-1].NewRate)
	}
	// After: a slow, additive recovery.
	rc := log[recovering]
	tail := rc[len(rc)-5:]
	for _, d := range tail {
		if d.Reason != PaceUnder || d.NewRate != d.OldRate+paceIncrease || d.P99 > d.Target {
			t.Errorf("recovery: %v", d)
		}
	}
	if tail[4].NewRate <= ld[len(ld)-1].NewRate {
		t.Errorf("no recovery: %v after %v", tail[4], ld[len(ld)-1])
	}
	if last.Pace <= 0 || last.Pace > float64(1e7) {
		t.Errorf("progress pace %v", last.Pace)
	}

	// pace: full (and maintenance mode) probe nothing.
	for _, c := range []rekey.ReencryptSpec{{Pace: rekey.PaceFull, Mode: rekey.ReencryptOnline}, {Mode: rekey.ReencryptMaintenance}} {
		c.Columns, c.BatchSize = cfg.Columns, cfg.BatchSize
		called := false
		j := job(dsn, c, oldK, newK, "pace-full-"+c.Mode)
		j.OnPace = func(string, PaceDecision) { called = true }
		j.Progress = func(p Progress) { last = p }
		res, err := Run(ctx, j)
		if err != nil || res.AlreadyNew != 300 || called || last.Pace != 0 {
			t.Fatalf("%s %s: %v %+v, OnPace called %v, progress %+v", c.Mode, c.Pace, err, res, called, last)
		}
	}
}
