package reencrypt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	// JobID names the job's checkpoint (the rotation id): a run with the
	// same JobID resumes where the last one stopped.
	JobID string
	// Progress, when set, is called after every batch is committed, from
	// Run's writer goroutines but never concurrently; keep it quick.
	Progress func(Progress)
	// Stderr receives the command codec's stderr (nil: os.Stderr).
	Stderr io.Writer
	// PGBinDir is where Rehearse looks for pg_dump and pg_restore first.
	PGBinDir string
}

// Progress is reported after every batch.
type Progress struct {
	Table         string  // schema.table being processed
	Done          int64   // rows done so far (all tables, resumed rows included)
	Total         int64   // estimate of all rows (pg_class.reltuples, or count(*))
	RowsPerSecond float64 // since this run started
	Elapsed       time.Duration
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
)

// outcome of one value.
type outcome uint8

const (
	outEmpty outcome = iota
	outNew
	outOld // opened with the old key: re-encrypted
	outNeither
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

	total   int64
	done    int64
	started time.Time
	doneAt0 int64
}

func newRunner(ctx context.Context, job Job) (*runner, error) {
	cfg := normalized(job.Config)
	specs, err := validate(cfg)
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
	if r.kr, r.cmd, err = newRing(cfg, []rekey.Value{job.Old, job.New}, []string{"old key", "new key"}, job.Stderr); err != nil {
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

func connect(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
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
	if r.ckpt, err = ensureCheckpointTable(ctx, r.writer); err != nil {
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

func estimateRows(ctx context.Context, conn *pgx.Conn, t *table) (int64, error) {
	var n float64
	if err := conn.QueryRow(ctx, `SELECT reltuples::float8 FROM pg_class WHERE oid = $1`, t.oid).Scan(&n); err != nil {
		return 0, dbError(err, "estimate the rows of %s", t.display)
	}
	if n > 0 {
		return int64(n), nil
	}
	var c int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+t.ident).Scan(&c); err != nil {
		return 0, dbError(err, "count the rows of %s", t.display)
	}
	return c, nil
}

// batch is a run of rows in key order, read together and written in one
// statement.
type batch struct {
	seq    int
	rows   []row
	lastPK []string // key of the last row (the checkpoint after this batch)
	last   bool     // the table's final batch
	done   chan struct{}
	err    error

	// Memory kept across uses of a batch (see pool).
	cells [][]byte  // the rows' key and value cells
	news  [][]byte  // the rows' new values
	outs  []outcome // the rows' outcomes
	in    arena     // bytes of the values read
	out   arena     // bytes of the new values
}

// pool recycles batches: a table's pass allocates a few and reuses them,
// so memory stays flat and the garbage collector idle.
type pool struct{ free chan *batch }

func newPool(n int) *pool { return &pool{free: make(chan *batch, n)} }

func (p *pool) get() *batch {
	select {
	case b := <-p.free:
		return b
	default:
		return &batch{}
	}
}

func (p *pool) put(b *batch) {
	b.rows, b.lastPK, b.err, b.done = b.rows[:0], nil, nil, nil
	b.in.reset()
	b.out.reset()
	select {
	case p.free <- b:
	default:
	}
}

type row struct {
	ctid pgtype.TID
	xmin uint32
	key  [][]byte  // key values as text
	old  [][]byte  // values read (nil: NULL)
	new  [][]byte  // values to write (nil: leave as it is)
	out  []outcome // per column
	meta uint8     // rowWrite, rowFailed, rowVanished, rowRevisited
}

const (
	rowWrite = 1 << iota
	rowFailed
	rowVanished
	rowRevisited
)

// arena hands out small byte slices from 64 KiB chunks, which reset
// keeps for reuse.
type arena struct {
	chunks [][]byte
	cur    int // chunk in use
}

const arenaChunk = 64 << 10

// alloc returns n bytes.
func (a *arena) alloc(n int) []byte {
	if n > arenaChunk/16 {
		return make([]byte, n)
	}
	for {
		if a.cur == len(a.chunks) {
			a.chunks = append(a.chunks, make([]byte, 0, arenaChunk))
		}
		c := a.chunks[a.cur]
		if m := len(c); cap(c)-m >= n {
			a.chunks[a.cur] = c[:m+n]
			return c[m : m+n : m+n]
		}
		a.cur++
	}
}

func (a *arena) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	out := a.alloc(len(b))
	copy(out, b)
	return out
}

// reset makes every chunk free again (what was handed out must be dead).
func (a *arena) reset() {
	for i := range a.chunks {
		a.chunks[i] = a.chunks[i][:0]
	}
	a.cur = 0
}

var errRowShape = errors.New("unexpected row shape")

// scanRows reads rows of t's select/reread shape (ctid, xmin, keys,
// values), appending them to out; their cells come from slab (grown as
// needed, returned) and their bytes from ar.
func scanRows(rows pgx.Rows, t *table, ar *arena, out []row, slab [][]byte) ([]row, [][]byte, error) {
	nk, nc := len(t.pk), len(t.cols)
	slab = slab[:0]
	first := len(out)
	for rows.Next() {
		raw := rows.RawValues()
		fds := rows.FieldDescriptions()
		if len(raw) != 2+nk+nc || raw[0] == nil || raw[1] == nil {
			return out, slab, errRowShape
		}
		var rw row
		if fds[0].Format == pgx.BinaryFormatCode && len(raw[0]) == 6 && fds[1].Format == pgx.BinaryFormatCode && len(raw[1]) == 4 {
			rw.ctid = pgtype.TID{BlockNumber: binary.BigEndian.Uint32(raw[0]), OffsetNumber: binary.BigEndian.Uint16(raw[0][4:]), Valid: true}
			rw.xmin = binary.BigEndian.Uint32(raw[1])
		} else if err := rows.Scan(&rw.ctid, &rw.xmin); err != nil {
			return out, slab, err
		}
		for i, v := range raw[2:] {
			var cell []byte
			if i >= nk && t.bytea && v != nil && fds[2+i].Format == pgx.TextFormatCode {
				b, err := decodeByteaText(v)
				if err != nil {
					return out, slab, err
				}
				cell = b
			} else if v != nil {
				cell = ar.copy(v)
				if cell == nil {
					cell = []byte{}
				}
			}
			slab = append(slab, cell)
		}
		out = append(out, rw)
	}
	// Point the rows at their cells once the slab has stopped growing.
	w := nk + nc
	for i := first; i < len(out); i++ {
		c := slab[(i-first)*w : (i-first+1)*w : (i-first+1)*w]
		out[i].key, out[i].old = c[:nk:nk], c[nk:]
	}
	return out, slab, rows.Err()
}

func decodeByteaText(v []byte) ([]byte, error) {
	if !bytes.HasPrefix(v, []byte(`\x`)) {
		return nil, errors.New("bytea in an unexpected text format")
	}
	b := make([]byte, hex.DecodedLen(len(v)-2))
	_, err := hex.Decode(b, v[2:])
	return b, err
}

// tableRun is the state of one table's pass, shared by its goroutines.
type tableRun struct {
	r  *runner
	t  *table
	wm watermark

	mu  sync.Mutex // guards tr, the runner's counters and Progress calls
	tr  *TableResult
	err error
}

// runTable re-encrypts one table. A reader goroutine fetches batches in
// key order; crypto workers (one per CPU) re-encrypt them; writer
// goroutines (one per writer connection) write them, each batch in one
// statement with its checkpoint. Batches commit out of order, so the
// checkpoint is a watermark: the end of the longest run of committed
// batches from the start.
func (r *runner) runTable(ctx context.Context, t *table, cp checkpoint, tr *TableResult) error {
	limit := r.cfg.BatchSize
	if rate := r.cfg.RowsPerSecond; rate > 0 && limit > max(1, rate/4) {
		limit = max(1, rate/4)
	}
	tr2 := &tableRun{r: r, t: t, tr: tr}
	tr2.wm.init(cp.lastPK, cp.rowsDone)
	// pctx stops the pipeline: on the first error, or when every batch is written.
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()

	pl := newPool(2*pipelineDepth + 2*len(r.writers) + 2)
	ordered := make(chan *batch, pipelineDepth+len(r.writers))
	work := make(chan *batch, pipelineDepth+len(r.writers))
	var readErr error
	var readers, workers, writers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer close(ordered)
		defer close(work)
		readErr = r.readLoop(ctx, pctx, t, &tr2.wm, pl, cp.lastPK, limit, ordered, work)
	}()
	for i := 0; i < max(1, runtime.GOMAXPROCS(0)); i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			w := newWorker()
			for b := range work {
				b.err = r.processBatch(b, w)
				close(b.done)
			}
		}()
	}
	for _, w := range r.writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for b := range ordered {
				<-b.done
				if pctx.Err() != nil {
					continue // draining after a failure or a stop
				}
				if testHookBeforeWrite != nil && b.err == nil {
					testHookBeforeWrite(t.display, b.seq)
				}
				if err := tr2.write(ctx, w, b); err != nil {
					tr2.fail(err)
					stop()
				}
				pl.put(b)
			}
		}()
	}
	writers.Wait()
	stop()
	readers.Wait()
	workers.Wait()
	// The batch statements write the checkpoint as they commit, possibly
	// a batch or two behind (batches commit out of order); bring it up to
	// what is committed now.
	if pk, rows, done, ok := tr2.wm.upTo(-1); ok && r.ckpt != "" {
		if err := r.saveCheckpoint(context.WithoutCancel(ctx), r.writer, t, pk, done, rows); err != nil && tr2.err == nil {
			return err
		}
	}
	if tr2.err != nil {
		return tr2.err
	}
	if readErr != nil {
		if ctx.Err() != nil {
			return interrupted(t)
		}
		return readErr
	}
	if ctx.Err() != nil && !tr2.wm.complete() {
		return interrupted(t)
	}
	return nil
}

func interrupted(t *table) error {
	return rekey.Wrap(rekey.CodeInternal, ErrInterrupted, "reencrypt: stopped while re-encrypting %s", t.display).
		WithHint("run again with the same job to resume from the checkpoint")
}

func (tr *tableRun) fail(err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.err == nil {
		tr.err = err
	}
}

// write writes one processed batch and accounts for it. The batch is
// written even when ctx is cancelled meanwhile (a stop is clean: after
// the batches in flight).
func (tr *tableRun) write(ctx context.Context, w *pgx.Conn, b *batch) error {
	if b.err != nil {
		return b.err
	}
	if err := tr.r.writeBatch(context.WithoutCancel(ctx), w, tr.t, b, &tr.wm); err != nil {
		return err
	}
	var tot Totals
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.r.collect(tr.t, b, &tot)
	tr.tr.Totals.add(tot)
	tr.r.done += int64(len(b.rows))
	if tr.r.done > tr.r.total {
		tr.r.total = tr.r.done
	}
	if tr.r.job.Progress != nil {
		el := time.Since(tr.r.started)
		rate := 0.0
		if s := el.Seconds(); s > 0 {
			rate = float64(tr.r.done-tr.r.doneAt0) / s
		}
		tr.r.job.Progress(Progress{Table: tr.t.display, Done: tr.r.done, Total: tr.r.total, RowsPerSecond: rate, Elapsed: el})
	}
	if ctx.Err() != nil {
		return interrupted(tr.t)
	}
	return nil
}

// readLoop reads batches after lastPK until the table ends, honoring the
// rate limit, and hands each to the workers and (in order) to the writers.
func (r *runner) readLoop(ctx, pctx context.Context, t *table, wm *watermark, pl *pool, lastPK []string, limit int, ordered, work chan<- *batch) error {
	var read int64
	start := time.Now()
	for seq := 0; ; seq++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pctx.Err() != nil {
			return nil
		}
		if rate := r.cfg.RowsPerSecond; rate > 0 && read > 0 {
			due := start.Add(time.Duration(float64(read) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-pctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		}
		var rows pgx.Rows
		var err error
		if lastPK == nil {
			rows, err = r.reader.Query(pctx, t.selectFirst, limit)
		} else {
			args := make([]any, 0, len(lastPK)+1)
			for _, v := range lastPK {
				args = append(args, v)
			}
			rows, err = r.reader.Query(pctx, t.selectNext, append(args, limit)...)
		}
		if err != nil {
			if pctx.Err() != nil {
				return nil
			}
			return dbError(err, "read %s", t.display)
		}
		b := pl.get()
		b.seq, b.done = seq, make(chan struct{})
		b.rows, b.cells, err = scanRows(rows, t, &b.in, b.rows[:0], b.cells)
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			if pctx.Err() != nil {
				return nil
			}
			return dbError(err, "read %s", t.display)
		}
		read += int64(len(b.rows))
		b.last = len(b.rows) < limit
		if n := len(b.rows); n > 0 {
			for _, k := range b.rows[n-1].key {
				b.lastPK = append(b.lastPK, string(k))
			}
			lastPK = b.lastPK
		} else {
			b.lastPK = lastPK
		}
		wm.add(seq, b.lastPK, len(b.rows), b.last)
		select {
		case ordered <- b:
		case <-pctx.Done():
			return nil
		}
		select {
		case work <- b:
		case <-pctx.Done():
			b.err = errStopped
			close(b.done)
			return nil
		}
		if b.last {
			return nil
		}
	}
}

var errStopped = errors.New("stopped")

// worker is one crypto goroutine's state.
type worker struct {
	pref int // the key that opened the last value: tried first
	sc   scratch
}

func newWorker() *worker { return &worker{} }

// processBatch classifies and re-encrypts every value of a batch.
func (r *runner) processBatch(b *batch, w *worker) error {
	nc := 0
	if len(b.rows) > 0 {
		nc = len(b.rows[0].old)
	}
	n := nc * len(b.rows)
	if cap(b.news) < n {
		b.news, b.outs = make([][]byte, n), make([]outcome, n)
	}
	b.news, b.outs = b.news[:n], b.outs[:n]
	for i := range b.rows {
		rw := &b.rows[i]
		rw.new, rw.out = b.news[i*nc:(i+1)*nc:(i+1)*nc], b.outs[i*nc:(i+1)*nc:(i+1)*nc]
		if err := r.processRow(rw, w, &b.out); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) processRow(rw *row, w *worker, out *arena) error {
	n := len(rw.old)
	if len(rw.new) != n {
		rw.new, rw.out = make([][]byte, n), make([]outcome, n)
	}
	clear(rw.new)
	rw.meta &^= rowWrite | rowFailed
	for c, v := range rw.old {
		if len(v) == 0 {
			rw.out[c] = outEmpty
			continue
		}
		o, err := r.kr.open(v, w.pref, &w.sc)
		if err != nil {
			return err
		}
		switch o.idx {
		case -1:
			rw.out[c] = outNeither
			rw.meta |= rowFailed
		case 1:
			rw.out[c] = outNew
			w.pref = 1
		case 0:
			w.pref = 0
			nv, err := r.kr.seal(o.pt, o.meta, o.st, &w.sc, out)
			wipe(o.pt)
			if err != nil {
				return err
			}
			rw.out[c] = outOld
			rw.new[c] = nv
			rw.meta |= rowWrite
		}
	}
	if rw.meta&rowFailed != 0 {
		rw.meta &^= rowWrite
	}
	return nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// collect counts a written batch and records its failures.
func (r *runner) collect(t *table, b *batch, tot *Totals) {
	for i := range b.rows {
		rw := &b.rows[i]
		if rw.meta&rowRevisited != 0 {
			tot.Revisited++
		}
		if rw.meta&rowVanished != 0 {
			tot.Vanished++
			continue
		}
		for c, o := range rw.out {
			switch o {
			case outEmpty:
				tot.Empty++
			case outNew:
				tot.AlreadyNew++
			case outNeither:
				tot.Failed++
				if len(r.res.Failures) < MaxFailures {
					f := Failure{Table: t.display, Column: t.cols[c].name}
					for k, p := range t.pk {
						f.Key = append(f.Key, KeyValue{Column: p.name, Value: string(rw.key[k])})
					}
					r.res.Failures = append(r.res.Failures, f)
				}
			case outOld:
				if rw.meta&rowFailed != 0 {
					tot.Held++
				} else {
					tot.Reencrypted++
				}
			}
		}
	}
	tot.Rows += int64(len(b.rows))
}

// watermark tracks which batches of a table are committed. The checkpoint
// a batch may write is the end of the longest prefix of batches that are
// committed, counting the batch itself (it commits with its checkpoint).
type watermark struct {
	mu      sync.Mutex
	next    int // lowest batch not known to be committed
	pending map[int]*mark
	basePK  []string // the checkpoint before batch 0
	baseN   int64
}

type mark struct {
	lastPK    []string
	rows      int
	last      bool
	committed bool
}

func (w *watermark) init(pk []string, rows int64) {
	w.pending = map[int]*mark{}
	w.basePK, w.baseN = pk, rows
}

func (w *watermark) add(seq int, lastPK []string, rows int, last bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[seq] = &mark{lastPK: lastPK, rows: rows, last: last}
}

// upTo returns the checkpoint that batch seq may write with its data: the
// end of the committed prefix of batches, extended by seq itself when it
// is next (the key after which every row is done, the rows done, whether
// the table is done). ok is false when nothing was committed yet.
func (w *watermark) upTo(seq int) (pk []string, rows int64, done, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pk, rows, done, ok = w.basePK, w.baseN, w.pending[-1] != nil, w.next > 0
	for j := w.next; ; j++ {
		m := w.pending[j]
		if m == nil || (!m.committed && j != seq) {
			return pk, rows, done, ok
		}
		pk, rows, done, ok = m.lastPK, rows+int64(m.rows), m.last, true
	}
}

// commit records that batch seq is committed.
func (w *watermark) commit(seq int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[seq].committed = true
	for {
		m := w.pending[w.next]
		if m == nil || !m.committed {
			return
		}
		w.basePK, w.baseN = m.lastPK, w.baseN+int64(m.rows)
		delete(w.pending, w.next)
		w.next++
		if m.last {
			w.pending[-1] = &mark{last: true} // complete
		}
	}
}

func (w *watermark) complete() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending[-1] != nil
}

// String describes the job without its DSN (which may hold a password)
// or keys: fmt's %v, %+v and %s of a Job print this.
func (j Job) String() string {
	return fmt.Sprintf("reencrypt.Job{JobID: %q, Codec: %q, Columns: %q}", j.JobID, j.Config.Codec, j.Config.Columns)
}

// GoString is String (for %#v).
func (j Job) GoString() string { return j.String() }
