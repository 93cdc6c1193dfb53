package reencrypt

// This file wires the adaptive pace (pace.go) into one table's pass: a
// probe connection calibrates the target, then probes every paceProbeEvery
// (the probe query, then lock waits and active connections), feeds the
// Controller and publishes its rate and batch size, which the reader
// follows (readLoop: each batch waits its rows' share of a second at the
// current rate after the one before: evenly spaced, no catching up).

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

const (
	// DefaultPaceCalibration is the idle window probed before the run's
	// first pass (the later tables' passes keep its target and rate).
	DefaultPaceCalibration = time.Second
	// DefaultPaceMinRows is Job.PaceMinRows's default: the rows the start
	// rate moves in the calibration window.
	DefaultPaceMinRows = int64(paceStartRate * float64(DefaultPaceCalibration/time.Second))
	paceProbeEvery     = 50 * time.Millisecond
	paceProbeTimeout   = 200 * time.Millisecond // at least: a probe waiting longer is cut short (and counts)
)

// paceStats counts the active connections of others ($1: the run's) and
// the sessions of others waiting for a lock that touch the table ($2: they
// hold or want a lock on it) or wait behind one of the run's connections.
const paceStats = `SELECT
 (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> ALL($1::int4[]))::int4,
 (SELECT count(DISTINCT w.pid) FROM pg_locks w WHERE NOT w.granted AND w.pid <> ALL($1::int4[])
    AND (EXISTS (SELECT 1 FROM pg_locks o WHERE o.pid = w.pid AND o.relation = $2::oid) OR pg_blocking_pids(w.pid) && $1::int4[]))::int4`

// adaptive says whether the run paces itself adaptively: online (Mode set
// to online) and pace not full.
func (r *runner) adaptive() bool {
	return r.cfg.Mode == rekey.ReencryptOnline && r.cfg.Pace != rekey.PaceFull
}

// smallRun turns an adaptive run with fewer than Job.PaceMinRows rows
// left into a run at the start rate (at most rows_per_second), unprobed.
func (r *runner) smallRun() {
	least := r.job.PaceMinRows
	if least == 0 {
		least = DefaultPaceMinRows
	}
	if !r.adaptive() || least < 0 || r.total-r.done >= least {
		return
	}
	r.cfg.Pace = rekey.PaceFull
	if r.cfg.RowsPerSecond <= 0 || r.cfg.RowsPerSecond > int(paceStartRate) {
		r.cfg.RowsPerSecond = int(paceStartRate)
	}
}

// pacer is the adaptive pace of one table's pass.
type pacer struct {
	r     *runner
	t     *table
	conn  *pgx.Conn
	cc    *pgx.ConnConfig
	ctl   *Controller
	probe string // the probe's SQL
	ours  []int32
	t0    time.Time

	mu      sync.Mutex
	rate    float64
	batchN  int
	p99     time.Duration
	key     []string  // a key that exists (the last read)
	last    time.Time // when the last batch was read
	lastN   int
	stopped chan struct{}
	cancel  context.CancelFunc
}

// startPace opens the probe connection, calibrates and starts probing; nil
// when the run is not adaptive.
func (r *runner) startPace(ctx context.Context, t *table) (*pacer, error) {
	if !r.adaptive() {
		return nil, nil
	}
	cc, err := r.job.connConfig()
	if err != nil {
		return nil, err
	}
	p := &pacer{r: r, t: t, cc: cc, t0: time.Now(), stopped: make(chan struct{})}
	if p.conn, err = connect(ctx, cc); err != nil {
		return nil, err
	}
	if p.ctl = r.pace; p.ctl == nil { // the run's first pass: calibrated in init
		p.ctl = NewController(PaceConfig{Ceiling: float64(r.cfg.RowsPerSecond), MaxBatch: r.cfg.BatchSize,
			Target: r.cfg.TargetP99, Factor: r.cfg.TargetFactor})
	}
	for _, c := range append([]*pgx.Conn{r.reader, p.conn}, r.writers...) {
		p.ours = append(p.ours, int32(c.PgConn().PID()))
	}
	if err := p.init(ctx); err != nil {
		_ = p.conn.Close(context.Background())
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	r.pace = p.ctl
	go p.loop(pctx)
	return p, nil
}

// init builds the probe, finds a key and, on the run's first pass,
// calibrates (later passes probe once, to plan the query and warm the
// cache).
func (p *pacer) init(ctx context.Context) error {
	t := p.t
	p.probe = p.r.cfg.Probe
	if p.probe == "" {
		var cols, order, cond []string
		for i, c := range t.pk {
			cols = append(cols, quoteIdent(c.name)+"::text")
			order = append(order, quoteIdent(c.name))
			cond = append(cond, quoteIdent(c.name)+" = $"+strconv.Itoa(i+1)+"::"+c.typ)
		}
		key := make([]string, len(t.pk))
		dst := make([]any, len(key))
		for i := range key {
			dst[i] = &key[i]
		}
		err := p.conn.QueryRow(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+t.ident+" ORDER BY "+strings.Join(order, ", ")+" LIMIT 1").Scan(dst...)
		switch {
		case err == nil:
			p.key = key
			p.probe = "SELECT 1 FROM " + t.ident + " WHERE " + strings.Join(cond, " AND ")
		case errors.Is(err, pgx.ErrNoRows):
			p.probe = "SELECT 1 FROM " + t.ident + " LIMIT 1"
		default:
			return dbError(err, "adaptive pace: read a key of %s", t.display)
		}
	}
	window := p.r.job.PaceCalibration
	if window <= 0 {
		window = DefaultPaceCalibration
	}
	var idle []PaceObservation
	for n, end := 0, time.Now().Add(window); time.Now().Before(end) || len(idle) == 0; n++ {
		o, err := p.observe(ctx)
		if err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "reencrypt: the adaptive pace's probe failed before the run").
				WithHint("check probe: in the reencrypt section (an SQL query this role may run), or set pace: full")
		}
		if p.r.pace != nil {
			return nil // a later pass: the run's first calibrated
		}
		if n > 0 { // the first one plans the query and warms the cache
			idle = append(idle, o)
		}
		if err := sleep(ctx, paceProbeEvery); err != nil {
			return err
		}
	}
	p.publish(p.ctl.Calibrate(time.Since(p.t0), idle))
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// observe runs the probe (cut short after max(paceProbeTimeout, 10 ×
// target): the time it took still counts) and the stats query.
func (p *pacer) observe(ctx context.Context) (PaceObservation, error) {
	p.mu.Lock()
	var args []any
	if p.r.cfg.Probe == "" {
		for _, k := range p.key {
			args = append(args, k)
		}
	}
	p.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, max(paceProbeTimeout, 10*p.ctl.Target()))
	start := time.Now()
	_, err := p.conn.Exec(qctx, p.probe, args...)
	o := PaceObservation{Probe: time.Since(start)}
	cut := qctx.Err() != nil && ctx.Err() == nil // cut short: a slow probe, not a failing one
	cancel()
	if err != nil && !cut {
		return o, err
	}
	o.At = time.Since(p.t0)
	err = p.conn.QueryRow(ctx, paceStats, p.ours, p.t.oid).Scan(&o.Active, &o.LockWaits)
	return o, err
}

// loop probes until ctx is done. A probe or stats query that fails counts
// as a probe over target (the rate backs off) rather than stopping the run.
func (p *pacer) loop(ctx context.Context) {
	defer close(p.stopped)
	for ctx.Err() == nil {
		o, err := p.observe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.At, o.Probe = time.Since(p.t0), max(o.Probe, p.ctl.Target()+1)
			p.reconnect(ctx)
		}
		p.publish(p.ctl.Observe(o))
		if sleep(ctx, paceProbeEvery) != nil {
			return
		}
	}
}

// reconnect replaces a probe connection the server closed (the probes
// failed meanwhile count as over target).
func (p *pacer) reconnect(ctx context.Context) {
	if !p.conn.IsClosed() {
		return
	}
	c, err := connect(ctx, p.cc)
	if err != nil {
		return
	}
	pid := int32(p.conn.PgConn().PID())
	p.conn = c
	for i, o := range p.ours {
		if o == pid {
			p.ours[i] = int32(c.PgConn().PID())
		}
	}
}

func (p *pacer) publish(d PaceDecision) {
	p.mu.Lock()
	p.rate, p.batchN, p.p99 = d.NewRate, d.Batch, d.P99
	p.mu.Unlock()
	if p.r.job.OnPace != nil {
		p.r.job.OnPace(p.t.display, d)
	}
}

func (p *pacer) stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.stopped
	_ = p.conn.Close(context.Background())
}

// batch is the rows of the next batch.
func (p *pacer) batch() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.batchN
}

// state is the current rate and probe p99 (0s for a run at full pace).
func (p *pacer) state() (float64, time.Duration) {
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate, p.p99
}

// wait waits until the next batch is due: the last batch's rows at the
// current rate after it was read (re-read every paceProbeEvery, so a back-off
// takes effect at once). It returns early when ctx or pctx is done.
func (p *pacer) wait(ctx, pctx context.Context) {
	for {
		p.mu.Lock()
		due := p.last.Add(time.Duration(float64(p.lastN) / p.rate * float64(time.Second)))
		p.mu.Unlock()
		d := time.Until(due)
		if d <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-pctx.Done():
			return
		case <-time.After(min(d, paceProbeEvery)):
		}
	}
}

// read records a batch read: its rows and last key (the default probe's
// next key: a row that exists).
func (p *pacer) read(n int, lastPK []string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.lastN = time.Now(), n
	if n > 0 && len(lastPK) == len(p.key) {
		p.key = slices.Clone(lastPK)
	}
}
