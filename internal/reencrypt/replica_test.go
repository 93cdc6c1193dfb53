package reencrypt

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/pgcluster"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// startReplicated starts a primary and a hot standby of it (both stopped
// at cleanup) with database lag holding patients (n rows under oldC), and
// returns a superuser connection to each.
func startReplicated(t *testing.T, cfg rekey.ReencryptSpec, oldC *Cipher, n int) (*pgtest.Cluster, *pgcluster.Replica, *pgx.Conn, *pgx.Conn) {
	t.Helper()
	c := testkit.StartCluster(t)
	rep, err := c.StartReplica()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rep.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := c.CreateDatabase("lag"); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(testCtx(t), "lag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	seedTable(t, conn, "patients", cfg, oldC, n)
	// The replica follows: the rows written on the primary appear on it.
	if err := rep.WaitReplayed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	rconn, err := rep.Connect(testCtx(t), "lag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rconn.Close(context.Background()) })
	var rows int
	if err := rconn.QueryRow(testCtx(t), "SELECT count(*) FROM patients").Scan(&rows); err != nil || rows != n {
		t.Fatalf("the replica has %d rows (%v), want %d", rows, err, n)
	}
	return c, rep, conn, rconn
}

// lagBeyond pauses the replica's replay and writes on the primary until
// query (on conn: the primary's view, or the replica's own) reads a lag
// over ceiling, in seconds.
func lagBeyond(t *testing.T, primary, rconn, conn *pgx.Conn, query string, ceiling time.Duration) {
	t.Helper()
	mustExec(t, rconn, "SELECT pg_wal_replay_pause()")
	ctx := testCtx(t)
	for i := 0; ; i++ {
		mustExec(t, primary, "UPDATE patients SET name = $1 WHERE id = 1", strconv.Itoa(i))
		var secs float64
		if err := conn.QueryRow(ctx, query).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		if time.Duration(secs*float64(time.Second)) > ceiling {
			t.Logf("replica lag %.3fs before the run", secs)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the paused replica's lag never went over %s", ceiling)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lagRun runs j in the background, resumes the replica's replay once the
// run has logged a hold (it holds before its first batch: no row may have
// moved yet), and returns the run's result and its decisions.
func lagRun(t *testing.T, j Job, conn, rconn *pgx.Conn, oldC *Cipher, n int) (*Result, []LagDecision, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var decisions []LagDecision
	var maxLag time.Duration
	held := make(chan struct{})
	j.OnLag = func(d LagDecision) {
		t.Log(d)
		mu.Lock()
		defer mu.Unlock()
		if d.Action == LagHold && !containsAction(decisions, LagHold) {
			close(held)
		}
		decisions = append(decisions, d)
	}
	j.Progress = func(p Progress) { maxLag = max(maxLag, p.ReplicaLag) }
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(testCtx(t), j)
		done <- outcome{res, err}
	}()
	select {
	case <-held:
	case o := <-done:
		t.Fatalf("the run ended without holding for the lagging replica: %v", o.err)
	}
	checkDecrypts(t, conn, "patients", oldC, n, "email", "ssn") // held before the first batch
	mustExec(t, rconn, "SELECT pg_wal_replay_resume()")
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if want := (Totals{Rows: int64(n), Reencrypted: 2 * int64(n)}); o.res.Totals != want {
		t.Fatalf("totals %+v, want %+v", o.res.Totals, want)
	}
	mu.Lock()
	defer mu.Unlock()
	return o.res, decisions, maxLag
}

func containsAction(ds []LagDecision, action string) bool {
	for _, d := range ds {
		if d.Action == action {
			return true
		}
	}
	return false
}

// holdsResumed checks that the throttle decisions alternate hold, resume
// (starting with a hold for replica, over the hold threshold).
func holdsResumed(t *testing.T, ds []LagDecision, replica string, ceiling time.Duration) {
	t.Helper()
	var hr []LagDecision
	for _, d := range ds {
		if d.Action == LagHold || d.Action == LagResume {
			hr = append(hr, d)
		}
	}
	if len(hr) < 2 || len(hr)%2 != 0 {
		t.Fatalf("decisions %v: want hold, resume (repeated)", hr)
	}
	for i, d := range hr {
		want := LagHold
		if i%2 == 1 {
			want = LagResume
		}
		if d.Action != want || d.Ceiling != ceiling || d.Table != "public.patients" {
			t.Fatalf("decision %d: %+v, want %s", i, d, want)
		}
	}
	if h := hr[0]; h.Replica != replica || h.Lag <= time.Duration(float64(ceiling)*LagHoldFraction) || !strings.Contains(h.String(), "holding public.patients: replica "+replica) {
		t.Fatalf("first hold: %+v (%s)", h, h)
	}
}

// TestReplicaLagHold: with a replica whose replay is paused while the
// primary writes, the run holds before its next batch (no row moves),
// says so, and goes on once the replay resumes; the replica then has every
// row on the new key.
func TestReplicaLagHold(t *testing.T) {
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 100, ReplicaLagCeiling: 500 * time.Millisecond}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	const n = 1000
	c, rep, conn, rconn := startReplicated(t, cfg, oldC, n)
	lagBeyond(t, conn, rconn, conn, "SELECT coalesce(extract(epoch FROM replay_lag), 0)::float8 FROM pg_stat_replication", cfg.ReplicaLagCeiling)
	// A hold is bounded: past replicaHoldMax the run stops, nothing moved.
	defer func(d time.Duration) { replicaHoldMax = d }(replicaHoldMax)
	replicaHoldMax = time.Millisecond
	if _, err := Run(testCtx(t), job(c.SuperConnString("lag"), cfg, oldK, newK, "lag")); rekey.ErrorCode(err) != rekey.CodeConflict ||
		!strings.Contains(err.Error(), "over the lag ceiling") || !strings.Contains(rekey.ErrorHint(err), "run again") {
		t.Fatalf("a hold past replicaHoldMax: %v (%s)", err, rekey.ErrorHint(err))
	}
	checkDecrypts(t, conn, "patients", oldC, n, "email", "ssn")
	replicaHoldMax = 10 * time.Minute
	_, ds, maxLag := lagRun(t, job(c.SuperConnString("lag"), cfg, oldK, newK, "lag"), conn, rconn, oldC, n)
	holdsResumed(t, ds, rep.Role, cfg.ReplicaLagCeiling)
	if containsAction(ds, LagUnmonitored) {
		t.Fatalf("a superuser was told to grant pg_monitor: %v", ds)
	}
	t.Logf("max replica lag seen by progress after the hold: %s", maxLag)
	checkDecrypts(t, conn, "patients", newC, n, "email", "ssn")
	if err := rep.WaitReplayed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkDecrypts(t, rconn, "patients", newC, n, "email", "ssn")
}

// TestReplicaLagUnmonitored: a role without pg_monitor sees no lag in
// pg_stat_replication: the run says once what to grant, and throttles on a
// replica named in the config (its own connection) all the same. With
// pg_monitor granted, nothing is said.
func TestReplicaLagUnmonitored(t *testing.T) {
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 100, ReplicaLagCeiling: 500 * time.Millisecond}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	const n = 500
	c, rep, conn, rconn := startReplicated(t, cfg, oldC, n)
	const pw = "lag-app-password-1"
	mustExec(t, conn, "CREATE ROLE lag_app LOGIN")
	testkit.SetPassword(t, c.SuperConnString("lag"), "lag_app", pw)
	mustExec(t, conn, "ALTER TABLE patients OWNER TO lag_app")
	mustExec(t, conn, "GRANT CREATE ON SCHEMA public TO lag_app")
	if err := rep.WaitReplayed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	lagBeyond(t, conn, rconn, rconn, `SELECT CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
		THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END::float8`, cfg.ReplicaLagCeiling)
	j := job(c.ConnString("lag_app", pw, "lag"), cfg, oldK, newK, "unmonitored")
	j.Replicas = []Replica{{Name: "REPLICA_URL", DSN: rep.ConnString("lag_app", pw, "lag")}}
	_, ds, _ := lagRun(t, j, conn, rconn, oldC, n)
	holdsResumed(t, ds, "REPLICA_URL", cfg.ReplicaLagCeiling)
	var un []LagDecision
	for _, d := range ds {
		if d.Action == LagUnmonitored {
			un = append(un, d)
		}
	}
	if len(un) != 1 || un[0].Role != "lag_app" || un[0].Count != 1 || !strings.Contains(un[0].String(), "GRANT pg_monitor TO lag_app") {
		t.Fatalf("want one decision naming GRANT pg_monitor TO lag_app, got %v", un)
	}
	checkDecrypts(t, conn, "patients", newC, n, "email", "ssn")

	mustExec(t, conn, "GRANT pg_monitor TO lag_app")
	j = job(c.ConnString("lag_app", pw, "lag"), cfg, newK, oldK, "monitored")
	var said []LagDecision
	j.OnLag = func(d LagDecision) { said = append(said, d) }
	if _, err := Run(testCtx(t), j); err != nil {
		t.Fatal(err)
	}
	if containsAction(said, LagUnmonitored) {
		t.Fatalf("with pg_monitor: %v", said)
	}
}

// TestReplicaLagNoReplayedTransaction: a replica that has replayed no
// transaction since it started (no pg_last_xact_replay_timestamp) and whose
// replay is stuck behind still reads as lagging: by how long its replay
// position has not moved.
func TestReplicaLagNoReplayedTransaction(t *testing.T) {
	c := testkit.StartCluster(t)
	testkit.Exec(t, c, "CREATE TABLE stuck (v int)")
	rep, err := c.StartReplica()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rep.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := testCtx(t)
	rconn, err := rep.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	mustExec(t, rconn, "SELECT pg_wal_replay_pause()")
	testkit.Exec(t, c, "INSERT INTO stuck VALUES (1)")
	n := &namedReplica{conn: rconn}
	for {
		l, err := n.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.lag > 300*time.Millisecond {
			if l.bytes <= 0 {
				t.Fatalf("lagging with nothing to replay: %+v", l)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the stuck replica never read as lagging")
		case <-time.After(50 * time.Millisecond):
		}
	}
	var noTS bool
	if err := rconn.QueryRow(ctx, "SELECT pg_last_xact_replay_timestamp() IS NULL").Scan(&noTS); err != nil || !noTS {
		t.Fatalf("the replica replayed a transaction (%v): this test measures nothing new", err)
	}
	mustExec(t, rconn, "SELECT pg_wal_replay_resume()")
	if err := rep.WaitReplayed(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := n.read(ctx); err != nil || l.lag != 0 || l.bytes != 0 {
		t.Fatalf("caught up: %+v, %v", l, err)
	}
}
