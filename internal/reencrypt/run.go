package reencrypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/rekeyhq/rekey"
)

// Job is one re-encryption: every configured column from Old to New.
type Job struct {
	// DSN is the database (postgres:// URL or key=value string). It is
	// never quoted in errors. ConnConfig, when set, is used instead.
	DSN        string
	ConnConfig *pgx.ConnConfig

	Config   rekey.ReencryptSpec
	Old, New rekey.Value
	// Also are more keys values may be under (a data key's previous or
	// pending version): a value that opens with one of them is
	// re-encrypted to New as one under Old is, and is not a failure.
	Also []rekey.Value
	// JobID names the job's checkpoint (the rotation id): a run with the
	// same JobID resumes where the last one stopped.
	JobID string
	// Progress, when set, is called after every batch is committed, from
	// Run's writer goroutines but never concurrently; keep it quick.
	Progress func(Progress)
	// Control, when set, is asked before every batch is read: it pauses
	// the run at a batch boundary or lowers its pace (control.go).
	Control Control
	// OnPace, when set, receives every decision of the adaptive pace
	// (pace_run.go) with its inputs, from its probe goroutine (never
	// concurrently); keep it quick.
	OnPace func(table string, d PaceDecision)
	// PaceCalibration is the adaptive pace's idle window before the run's
	// first pass (0: DefaultPaceCalibration).
	PaceCalibration time.Duration
	// NoProgram: EstimateRun starts no command codec's program (the
	// sample's width is measured, its re-encryption is not: every row
	// counts as written, no read+crypto speed). A dry run sets it: it may
	// load a rekey.yaml that was never approved, whose program must not
	// be handed a key.
	NoProgram bool
	// PaceMinRows: an adaptive run with fewer rows left than this goes at
	// the adaptive pace's start rate (at most rows_per_second), with no
	// calibration and no probe: calibrating would take longer than moving
	// the rows (0: DefaultPaceMinRows; negative: always probe).
	PaceMinRows int64
	// Replicas are replica connections named in the config (replicas:),
	// whose replay lag is read besides pg_stat_replication's (replica.go).
	Replicas []Replica
	// OnLag, when set, receives every decision of the replica lag
	// throttle (replica.go), from the reader goroutine; keep it quick.
	OnLag func(LagDecision)
	// Stderr receives the command codec's stderr (nil: os.Stderr).
	Stderr io.Writer
	// PGBinDir is where Rehearse looks for pg_dump and pg_restore first.
	PGBinDir string
	// AdminDSN, when set, is the connection (same server as DSN) through
	// which Rehearse makes and drops its copy: the job's role then needs no
	// CREATEDB. Never quoted in errors.
	AdminDSN string
}

// Progress is reported after every batch.
type Progress struct {
	Table         string  // schema.table being processed
	Done          int64   // rows done so far (all tables, resumed rows included)
	Total         int64   // all rows: pg_class.reltuples when fresh, else count(*) (see estimateRows)
	RowsPerSecond float64 // since this run started
	Elapsed       time.Duration
	Pace          float64       // the adaptive pace's rate in rows/s (0: pace full)
	ProbeP99      time.Duration // the adaptive pace's recent probe p99
	ReplicaLag    time.Duration // the largest replay lag of a replica at the last reading (0: none behind)
}

// Result is what a run did. Counts are of values (one per row and
// column) except Rows and Revisited.
type Result struct {
	JobID   string
	Resumed bool // a checkpoint of this JobID was found and used
	// Checkpoint is the checkpoint table ("" when the role may not
	// create it: the run then restarts from the beginning after a crash,
	// skipping rows already on the new key).
	Checkpoint string
	Tables     []TableResult
	Totals
	// Failures lists values that open with neither key (at most
	// MaxFailures; Failed counts them all).
	Failures []Failure
	Duration time.Duration
}

// Totals are the counters of a run or of one table.
type Totals struct {
	Rows        int64 // rows read in this run
	Reencrypted int64 // values re-encrypted and written
	AlreadyNew  int64 // values already on the new key (left as they were)
	Empty       int64 // NULL or empty values (left as they were)
	Failed      int64 // values that open with neither key (their rows are left as they were)
	Held        int64 // old-key values not written because another column of their row failed
	Revisited   int64 // rows written concurrently between read and write, read again and redone
	Vanished    int64 // rows deleted between read and write
}

func (t *Totals) add(o Totals) {
	t.Rows += o.Rows
	t.Reencrypted += o.Reencrypted
	t.AlreadyNew += o.AlreadyNew
	t.Empty += o.Empty
	t.Failed += o.Failed
	t.Held += o.Held
	t.Revisited += o.Revisited
	t.Vanished += o.Vanished
}

// TableResult is the outcome for one table.
type TableResult struct {
	Table   string // schema.table
	Columns []string
	Key     []string // key columns
	Resumed bool     // started after a checkpoint
	Totals
}

// Failure is a value that opens with neither key.
type Failure struct {
	Table  string     // schema.table
	Key    []KeyValue // the row's key
	Column string
}

// KeyValue is one key column of a row and its value (as text).
type KeyValue struct{ Column, Value string }

// String reads "schema.table (id)=(42) column email".
func (f Failure) String() string {
	var cols, vals []string
	for _, kv := range f.Key {
		cols = append(cols, displayIdent(kv.Column))
		vals = append(vals, kv.Value)
	}
	return fmt.Sprintf("%s (%s)=(%s) column %s", f.Table, strings.Join(cols, ", "), strings.Join(vals, ", "), displayIdent(f.Column))
}

// testHookBeforeWrite, when set (tests only), runs between the read and
// the write of every batch.
var testHookBeforeWrite func(table string, seq int)

// MaxFailures bounds Result.Failures (memory stays flat whatever the table).
const MaxFailures = 1000

const (
	lockWait      = 30 * time.Second
	pipelineDepth = 3
	writerConns   = 2 // batches written in parallel (the server's UPDATE work is most of a run)
	maxRevisits   = 5
	advisoryClass = int64(0x726b6579) // "rkey"
	// writeGrace is how long the batches in flight may still take to
	// commit after the run is cancelled (Ctrl-C) before they are cancelled.
	writeGrace = 3 * time.Second
	// cancelDeadline is how long a cancelled statement may take to end
	// after the server was asked to cancel it, before its connection is
	// closed.
	cancelDeadline = 5 * time.Second
)

// Run re-encrypts every configured column of every row from job.Old to
// job.New (see the package doc for the guarantees). It returns a Result
// even with an error when it got that far. The error wraps
// ErrUndecryptable when some values open with neither key (the run
// completed; those rows are untouched), ErrInterrupted when ctx was
// cancelled.
func Run(ctx context.Context, job Job) (*Result, error) {
	t0 := time.Now()
	r, err := newRunner(ctx, job)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res, err := r.run(ctx)
	if res != nil {
		res.Duration = time.Since(t0)
	}
	return res, err
}

type runner struct {
	job     Job
	cfg     rekey.ReencryptSpec
	specs   []TableSpec
	kr      *keyring
	cmd     *commandCodec
	keyFP   string
	writer  *pgx.Conn   // catalog, locks, checkpoint; also writers[0]
	writers []*pgx.Conn // batch writers
	reader  *pgx.Conn
	tables  []*table
	ckpt    string // checkpoint table identifier ("" when unavailable)
	res     *Result
	wsMu    sync.Mutex
	ws      map[*pgx.Conn]*writerState

	ckptSchema string      // schema of the checkpoint table
	ckptOwners []string    // owners of the tables (createCheckpoint, checkCheckpoint)
	lag        *lagWatch   // the replica lag throttle (replica.go)
	pace       *Controller // the adaptive pace, calibrated on the first pass (pace_run.go)

	total   int64
	done    int64
	started time.Time
	doneAt0 int64
}

func newRunner(ctx context.Context, job Job) (*runner, error) {
	cfg, specs, err := prepare(job.Config)
	if err != nil {
		return nil, err
	}
	if job.JobID == "" || len(job.JobID) > 200 {
		return nil, invalid("a job id (1 to 200 characters) is required")
	}
	r := &runner{job: job, cfg: cfg, specs: specs}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	keys, names := []rekey.Value{job.Old, job.New}, []string{"old key", "new key"}
	for i, k := range job.Also {
		keys, names = append(keys, k), append(names, fmt.Sprintf("other key %d", i+1))
	}
	if r.kr, r.cmd, err = newRing(cfg, keys, names, job.Stderr); err != nil {
		return nil, err
	}
	r.kr.sealWith = 1
	r.kr.header = cfg.KeyID
	if r.kr.keys[0].fp == r.kr.keys[1].fp && sameKey(cfg.Codec, job.Old, job.New) {
		return nil, invalid("the old and the new key are the same key").WithHint("nothing to re-encrypt")
	}
	r.keyFP = hex.EncodeToString(r.kr.keys[0].fp[:]) + hex.EncodeToString(r.kr.keys[1].fp[:])

	cc, err := job.connConfig()
	if err != nil {
		return nil, err
	}
	if r.writer, err = connect(ctx, cc); err != nil {
		return nil, err
	}
	r.writers = append(r.writers, r.writer)
	for len(r.writers) < writerConns {
		w, err := connect(ctx, cc)
		if err != nil {
			return nil, err
		}
		r.writers = append(r.writers, w)
	}
	if r.reader, err = connect(ctx, cc); err != nil {
		return nil, err
	}
	if err := r.openReplicas(ctx); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

func sameKey(codec string, a, b rekey.Value) bool {
	ma, err1 := keyMaterial(codec, a, "")
	mb, err2 := keyMaterial(codec, b, "")
	return err1 == nil && err2 == nil && bytes.Equal(ma, mb)
}

// newRing parses keys (in order) into a keyring, starting the command
// codec's program when needed.
func newRing(cfg rekey.ReencryptSpec, keys []rekey.Value, names []string, stderr io.Writer) (*keyring, *commandCodec, error) {
	// Parse every key before starting a program.
	for i, k := range keys {
		if _, err := keyMaterial(cfg.Codec, k, names[i]); err != nil {
			return nil, nil, err
		}
	}
	var cmd *commandCodec
	if cfg.Codec == CodecCommand {
		var err error
		if cmd, err = startCommand(cfg.Command, stderr); err != nil {
			return nil, nil, err
		}
	}
	kr := &keyring{encoding: cfg.Encoding}
	for i, k := range keys {
		kk, err := newKey(cfg.Codec, k, names[i], cmd)
		if err != nil {
			if cmd != nil {
				_ = cmd.close()
			}
			return nil, nil, err
		}
		kr.keys = append(kr.keys, kk)
	}
	return kr, cmd, nil
}

func (j Job) connConfig() (*pgx.ConnConfig, error) {
	if j.ConnConfig != nil {
		return j.ConnConfig.Copy(), nil
	}
	if j.DSN == "" {
		return nil, invalid("no database to connect to")
	}
	cc, err := pgx.ParseConfig(j.DSN)
	if err != nil {
		return nil, invalid("the database connection string is not valid").WithHint("use postgres://user:password@host:port/dbname")
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "rekey"
	}
	return cc, nil
}

// connect connects with cc. A cancelled context cancels the statement
// running on the server (a cancel request: the statement and its
// transaction end there and then, the connection stays usable), rather
// than closing the connection under a statement that would go on
// waiting, and maybe commit, after rekey has gone.
func connect(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	c := cc.Copy()
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelDeadline}
	}
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return nil, dbError(err, "connect to the database")
	}
	return conn, nil
}

func (r *runner) close() {
	bg := context.Background()
	for _, w := range r.writers {
		_ = w.Close(bg)
	}
	if len(r.writers) == 0 && r.writer != nil {
		_ = r.writer.Close(bg)
	}
	if r.reader != nil {
		_ = r.reader.Close(bg)
	}
	if r.cmd != nil {
		_ = r.cmd.close()
	}
	r.lag.close()
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	var err error
	r.tables, err = resolveTables(ctx, r.writer, r.specs, r.cfg.Encoding, true)
	if err != nil {
		return nil, err
	}
	for _, t := range r.tables {
		if err := lockTable(ctx, r.writer, t); err != nil {
			return nil, err
		}
	}
	r.res = &Result{JobID: r.job.JobID}
	if err := r.openCheckpoint(ctx); err != nil {
		return nil, err
	}
	r.res.Checkpoint = r.ckpt
	cps, err := r.loadCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range r.tables {
		n, err := estimateRows(ctx, r.writer, t)
		if err != nil {
			return nil, err
		}
		r.total += n
		if cp, ok := cps[t.ident]; ok {
			r.done += cp.rowsDone
		}
	}
	if r.done > r.total {
		r.total = r.done
	}
	r.started, r.doneAt0 = time.Now(), r.done
	r.smallRun()

	for _, t := range r.tables {
		cp, resumed := cps[t.ident]
		tr := TableResult{Table: t.display, Resumed: resumed}
		for _, c := range t.cols {
			tr.Columns = append(tr.Columns, c.name)
		}
		for _, p := range t.pk {
			tr.Key = append(tr.Key, p.name)
		}
		if resumed {
			r.res.Resumed = true
		}
		if resumed && cp.done {
			r.res.Tables = append(r.res.Tables, tr)
			continue
		}
		err := r.runTable(ctx, t, cp, &tr)
		r.res.Tables = append(r.res.Tables, tr)
		r.res.Totals.add(tr.Totals)
		if err != nil {
			return r.res, err
		}
	}
	if err := r.finish(ctx); err != nil {
		return r.res, err
	}
	if r.res.Failed > 0 {
		tables := map[string]bool{}
		var names []string
		for _, f := range r.res.Failures {
			if !tables[f.Table] {
				tables[f.Table] = true
				names = append(names, f.Table)
			}
		}
		return r.res, (&rekey.Error{Code: rekey.CodeVerifyFailed, Err: ErrUndecryptable,
			Msg: fmt.Sprintf("reencrypt: %d value(s) in %s were left as they were", r.res.Failed, strings.Join(names, ", "))}).
			WithHint("keep the old key; the rows are listed in the result: repair or delete them, then run the re-encryption again")
	}
	return r.res, nil
}

// lockTable takes a session advisory lock on the table (class "rkey",
// the table's oid) so that two re-encryptions of one table never run at
// once; a crashed holder's lock goes with its session.
func lockTable(ctx context.Context, conn *pgx.Conn, t *table) error {
	deadline := time.Now().Add(lockWait)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::bigint << 32 | $2::oid::bigint)`, advisoryClass, t.oid).Scan(&ok); err != nil {
			if ctx.Err() != nil { // cancelled during the query itself
				return rekey.Wrap(rekey.CodeInternal, ErrInterrupted, "reencrypt: waiting for the lock on %s", t.display)
			}
			return dbError(err, "lock %s", t.display)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return rekey.Errorf(rekey.CodeConflict, "reencrypt: another re-encryption of %s is running", t.display).
				WithHint("wait for it to finish (or stop it), then run again: the job resumes from its checkpoint")
		}
		select {
		case <-ctx.Done():
			return rekey.Wrap(rekey.CodeInternal, ErrInterrupted, "reencrypt: waiting for the lock on %s", t.display)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// estimateRows is the total of rows of t that progress is measured
// against. The statistics (pg_class.reltuples) are used only when they
// are fresh; otherwise the rows are counted exactly (count(*), one scan,
// cheaper than the run that follows), so that a progress bar is never
// stuck at 100% of a wrong total. The statistics are stale when:
//
//   - the table was never analyzed (reltuples < 0) or is empty by them;
//   - its size on disk differs by more than 10% from the size they were
//     taken at (relpages): a bulk load (or a mass delete) since the last
//     ANALYZE, immediately visible, whatever the autovacuum settings;
//   - more than 10% of its rows were inserted, updated or deleted since
//     the last ANALYZE (pg_stat_user_tables.n_mod_since_analyze).
func estimateRows(ctx context.Context, conn *pgx.Conn, t *table) (int64, error) {
	var est float64
	var relPages, curPages, modified int64
	err := conn.QueryRow(ctx, `SELECT c.reltuples::float8, c.relpages::bigint,
			pg_relation_size(c.oid) / current_setting('block_size')::bigint,
			coalesce((SELECT s.n_mod_since_analyze FROM pg_stat_all_tables s WHERE s.relid = c.oid), 0)
		FROM pg_class c WHERE c.oid = $1`, t.oid).Scan(&est, &relPages, &curPages, &modified)
	if err != nil {
		return 0, dbError(err, "estimate the rows of %s", t.display)
	}
	if !statsStale(est, relPages, curPages, modified) {
		return int64(est), nil
	}
	var c int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+t.ident).Scan(&c); err != nil {
		return 0, dbError(err, "count the rows of %s", t.display)
	}
	return c, nil
}

// statsStale applies estimateRows's rule to reltuples, relpages, the
// current size in pages and n_mod_since_analyze.
func statsStale(reltuples float64, relPages, curPages, modified int64) bool {
	switch {
	case reltuples < 1 || relPages <= 0:
		return true
	case 10*abs64(curPages-relPages) > relPages:
		return true
	case float64(10*modified) > reltuples:
		return true
	}
	return false
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// String describes the job without its DSN (which may hold a password)
// or keys: fmt's %v, %+v and %s of a Job print this.
func (j Job) String() string {
	return fmt.Sprintf("reencrypt.Job{JobID: %q, Codec: %q, Columns: %q}", j.JobID, j.Config.Codec, j.Config.Columns)
}

// GoString is String (for %#v).
func (j Job) GoString() string { return j.String() }
