package reencrypt

// This file throttles a run on the replay lag of streaming replicas: a
// full-table rewrite is a burst of WAL that every replica must replay, and
// an app reading from a lagging replica reads stale rows. Before each
// batch (at most every lagCheckEvery) the reader reads the lag of every
// replica; when one is above LagHoldFraction of the ceiling, the run holds
// (no new batch) until every replica is back under LagResumeFraction of
// it, polling, interruptible, for at most replicaHoldMax.
//
// Two sources, both read when both exist:
//   - the primary's pg_stat_replication (every streaming replica, no
//     configuration; not logical replication's consumers): replay_lag, and the bytes not replayed yet
//     (pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)). Its columns
//     are NULL for a role without pg_monitor (pg_read_all_stats): the run
//     then says once what to grant, and throttles on named replicas only.
//   - named replica connections (Job.Replicas, rekey.yaml's replicas:):
//     now() - pg_last_xact_replay_timestamp() on the replica, when it
//     has received WAL it has not replayed yet; at least how long its
//     replay position has not moved meanwhile (a replica that replayed no
//     transaction since it started has no timestamp).
//
// A replica that has replayed everything is not lagging, whatever its
// last measured lag says (replay_lag keeps the lag of the last WAL it
// replayed until the next status messages clear it; the last replayed
// transaction of an idle primary may be hours old).

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// DefaultReplicaLagCeiling is the replay lag a run keeps every streaming
// replica under when the config sets none.
const DefaultReplicaLagCeiling = 5 * time.Second

// The throttle's thresholds, as fractions of the ceiling: a run holds
// above LagHoldFraction (so that the lag its batches in flight still add
// does not carry a replica past the ceiling) and resumes under
// LagResumeFraction (no flapping at the threshold).
const (
	LagHoldFraction   = 0.8
	LagResumeFraction = 0.5
)

var (
	lagCheckEvery = 100 * time.Millisecond // between two reads of the lag while running
	lagPollHold   = 200 * time.Millisecond // between two reads while holding
	// replicaHoldMax bounds a hold: a replica that stays behind longer
	// (stopped, paused, broken) stops the run at its checkpoint.
	replicaHoldMax = 10 * time.Minute
)

// Replica is a replica connection named in the config (replicas:).
type Replica struct {
	Name string // the secret holding its URL (for messages)
	DSN  string // its URL; never quoted in errors
}

// Lag decisions.
const (
	LagHold        = "hold"        // a replica is behind: no new batch until it catches up
	LagResume      = "resume"      // every replica is back under the resume threshold
	LagUnmonitored = "unmonitored" // pg_stat_replication shows replicas but not their lag (no pg_monitor)
)

// LagDecision is one decision of the replica lag throttle (Job.OnLag).
type LagDecision struct {
	Table   string
	Action  string        // LagHold, LagResume or LagUnmonitored
	Replica string        // the replica furthest behind (application_name, or the secret of a named one)
	Lag     time.Duration // its replay lag
	Bytes   int64         // the WAL it has not replayed yet
	Ceiling time.Duration
	Held    time.Duration // LagResume: how long the run held
	Role    string        // LagUnmonitored: the role that needs pg_monitor
	Count   int           // LagUnmonitored: the replicas whose lag is hidden
}

// String is the decision as a line for the operator.
func (d LagDecision) String() string {
	switch d.Action {
	case LagHold:
		return fmt.Sprintf("replica lag: holding %s: replica %s is %s behind (%s of WAL not replayed; ceiling %s)",
			d.Table, d.Replica, d.Lag.Round(time.Millisecond), byteSize(d.Bytes), d.Ceiling)
	case LagResume:
		return fmt.Sprintf("replica lag: resuming %s after %s: every replica under %s (the furthest, %s, %s behind)",
			d.Table, d.Held.Round(time.Millisecond), time.Duration(float64(d.Ceiling)*LagResumeFraction), d.Replica, d.Lag.Round(time.Millisecond))
	case LagUnmonitored:
		return fmt.Sprintf("replica lag: %d streaming replica(s) in pg_stat_replication, but role %s may not see their lag: lag throttling needs `GRANT pg_monitor TO %s`, or replicas: in rekey.yaml naming secrets with the replicas' URLs",
			d.Count, d.Role, displayIdent(d.Role))
	}
	return "replica lag: " + d.Action
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// replicaLag is the lag of one replica at one reading.
type replicaLag struct {
	name  string
	lag   time.Duration
	bytes int64
}

// lagWatch is the run's throttle state (the reader goroutine's, but for
// max, which Progress reads).
type lagWatch struct {
	ceiling time.Duration
	named   []*namedReplica
	next    time.Time
	warned  bool
	max     atomic.Int64 // the largest lag at the last reading, in ns
}

// replicaLagNow is the largest replay lag of the last reading (0: none,
// or no replica).
func (r *runner) replicaLagNow() time.Duration {
	if r.lag == nil {
		return 0
	}
	return time.Duration(r.lag.max.Load())
}

// openReplicas connects to the named replicas (newRunner).
func (r *runner) openReplicas(ctx context.Context) error {
	r.lag = &lagWatch{ceiling: r.cfg.ReplicaLagCeiling}
	if r.lag.ceiling <= 0 {
		r.lag.ceiling = DefaultReplicaLagCeiling
	}
	for _, rep := range r.job.Replicas {
		cc, err := pgx.ParseConfig(rep.DSN)
		if err != nil {
			return invalid("the URL of replica %s is not a valid connection string", rep.Name).WithHint("use postgres://user:password@host:port/dbname")
		}
		if cc.RuntimeParams["application_name"] == "" {
			cc.RuntimeParams["application_name"] = "rekey"
		}
		conn, err := connect(ctx, cc)
		if err != nil {
			return dbError(err, "connect to replica %s", rep.Name).WithHint("check the URL in %s, or remove it from replicas:", rep.Name)
		}
		r.lag.named = append(r.lag.named, &namedReplica{conn: conn})
		var recovering bool
		if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&recovering); err != nil {
			return dbError(err, "read replica %s", rep.Name)
		}
		if !recovering {
			return invalid("replica %s is not in recovery: its URL is not a streaming replica's", rep.Name).WithHint("name a hot standby's URL in %s", rep.Name)
		}
	}
	return nil
}

func (w *lagWatch) close() {
	if w == nil {
		return
	}
	for _, n := range w.named {
		_ = n.conn.Close(context.Background())
	}
}

// holdForReplicas is the throttle, called by the reader before each batch.
// While it holds it moves *paced on by the time held (no burst after a
// hold to catch up with rows_per_second). It reports halt when the run
// must stop (ctx or pctx done, or a hold longer than replicaHoldMax).
func (r *runner) holdForReplicas(ctx, pctx context.Context, t *table, paced *time.Time) (halt bool, err error) {
	w := r.lag
	if w == nil || time.Now().Before(w.next) {
		return false, nil
	}
	w.next = time.Now().Add(lagCheckEvery)
	worst, err := r.readLags(ctx)
	if err != nil || worst.lag <= time.Duration(float64(w.ceiling)*LagHoldFraction) {
		return ctx.Err() != nil, err
	}
	r.decide(LagDecision{Table: t.display, Action: LagHold, Replica: worst.name, Lag: worst.lag, Bytes: worst.bytes, Ceiling: w.ceiling})
	t0 := time.Now()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-pctx.Done():
			return true, nil
		case <-time.After(lagPollHold):
		}
		if worst, err = r.readLags(ctx); err != nil {
			return true, err
		}
		if worst.lag < time.Duration(float64(w.ceiling)*LagResumeFraction) {
			held := time.Since(t0)
			*paced = paced.Add(held)
			w.next = time.Now().Add(lagCheckEvery)
			r.decide(LagDecision{Table: t.display, Action: LagResume, Replica: worst.name, Lag: worst.lag, Bytes: worst.bytes, Ceiling: w.ceiling, Held: held})
			return false, nil
		}
		if time.Since(t0) > replicaHoldMax {
			return true, rekey.Errorf(rekey.CodeConflict, "reencrypt: replica %s has been over the lag ceiling (%s) for %s: stopped at the checkpoint of %s",
				worst.name, w.ceiling, replicaHoldMax, t.display).
				WithHint("bring the replica back (is its replay paused, or its connection down?), then run again: the job resumes from its checkpoint")
		}
	}
}

func (r *runner) decide(d LagDecision) {
	if r.job.OnLag != nil {
		r.job.OnLag(d)
	}
}

// readLags reads the lag of every replica and returns the one furthest
// behind (and records its lag for Progress).
func (r *runner) readLags(ctx context.Context) (replicaLag, error) {
	worst, err := r.primaryLags(ctx)
	if err != nil {
		return worst, err
	}
	for i, n := range r.lag.named {
		l, err := n.read(ctx)
		if err != nil {
			return worst, dbError(err, "read the replay lag of replica %s", r.job.Replicas[i].Name)
		}
		if l.name = r.job.Replicas[i].Name; l.lag > worst.lag || worst.name == "" {
			worst = l
		}
	}
	r.lag.max.Store(int64(worst.lag))
	return worst, nil
}

// primaryLags reads pg_stat_replication on the reader's connection.
func (r *runner) primaryLags(ctx context.Context) (replicaLag, error) {
	rows, err := r.reader.Query(ctx, `SELECT coalesce(application_name, ''), state IS NULL,
		coalesce(extract(epoch FROM replay_lag), 0)::float8,
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::int8, current_user::text
		FROM pg_stat_replication WHERE pid NOT IN
			(SELECT active_pid FROM pg_replication_slots WHERE slot_type = 'logical' AND active_pid IS NOT NULL)`)
	if err != nil {
		return replicaLag{}, dbError(err, "read pg_stat_replication")
	}
	var worst replicaLag
	hidden, role := 0, ""
	for rows.Next() {
		var l replicaLag
		var masked bool
		var secs float64
		if err := rows.Scan(&l.name, &masked, &secs, &l.bytes, &role); err != nil {
			rows.Close()
			return worst, dbError(err, "read pg_stat_replication")
		}
		if masked {
			hidden++
			continue
		}
		if l.bytes > 0 { // else it has replayed everything: not behind
			l.lag = time.Duration(secs * float64(time.Second))
		}
		if l.lag > worst.lag || worst.name == "" {
			worst = l
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return worst, dbError(err, "read pg_stat_replication")
	}
	if hidden > 0 && !r.lag.warned {
		r.lag.warned = true
		r.decide(LagDecision{Action: LagUnmonitored, Role: role, Count: hidden, Ceiling: r.lag.ceiling})
	}
	return worst, nil
}

// namedReplica is a replica connection and how long its replay has been
// stuck behind at one position.
type namedReplica struct {
	conn     *pgx.Conn
	stuckLSN string
	since    time.Time
}

// read reads the lag of a replica on its own connection: while it has WAL
// to replay, the age of the last transaction it replayed, or (at least) how
// long its replay has not moved (no transaction replayed since it started:
// no timestamp).
func (n *namedReplica) read(ctx context.Context) (replicaLag, error) {
	var l replicaLag
	var secs float64
	var lsn string
	err := n.conn.QueryRow(ctx, `SELECT
		CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
			THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END::float8,
		coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::int8,
		coalesce(pg_last_wal_replay_lsn()::text, '')`).Scan(&secs, &l.bytes, &lsn)
	l.lag = time.Duration(max(secs, 0) * float64(time.Second))
	switch {
	case l.bytes <= 0:
		n.stuckLSN = ""
	case lsn != n.stuckLSN:
		n.stuckLSN, n.since = lsn, time.Now()
	default:
		l.lag = max(l.lag, time.Since(n.since))
	}
	return l, err
}
