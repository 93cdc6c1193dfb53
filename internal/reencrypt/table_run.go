package reencrypt

// This file holds one table's pass: a reader streams batches in key order,
// workers open and seal each value, writers commit each batch with its
// checkpoint.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// outcome of one value.
type outcome uint8

const (
	outEmpty outcome = iota
	outNew
	outOld // opened with the old key: re-encrypted
	outNeither
)

// tableRun is the state of one table's pass, shared by its goroutines.
type tableRun struct {
	r  *runner
	t  *table
	wm watermark

	pc  *pacer     // adaptive pace (nil: pace full)
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
	pc, err := r.startPace(ctx, t) // adaptive pace (pace_run.go); nil at pace: full
	if err != nil && ctx.Err() != nil {
		return interrupted(t)
	} else if err != nil {
		return err
	}
	defer pc.stop()
	tr2 := &tableRun{r: r, t: t, tr: tr, pc: pc}
	tr2.wm.init(cp.lastPK, cp.rowsDone)
	// pctx stops the pipeline: on the first error, or when every batch is written.
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	// The writes in flight when ctx is cancelled finish (a clean stop),
	// unless one is still waiting writeGrace later (on a row another
	// session holds locked): then it is cancelled too, and the server
	// rolls the batch back with its checkpoint (one statement).
	wctx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrites()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(writeGrace, cancelWrites) })()

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
		readErr = r.readLoop(ctx, pctx, t, &tr2.wm, pl, cp.lastPK, limit, ordered, work, pc)
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
				if err := tr2.write(ctx, wctx, w, b); err != nil {
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

// write writes one processed batch on wctx and accounts for it. The batch
// is written even when ctx is cancelled meanwhile (a stop is clean: after
// the batches in flight), unless wctx is cancelled too (see runTable).
func (tr *tableRun) write(ctx, wctx context.Context, w *pgx.Conn, b *batch) error {
	if b.err != nil {
		return b.err
	}
	if err := tr.r.writeBatch(wctx, w, tr.t, b, &tr.wm); err != nil {
		if ctx.Err() != nil {
			return interrupted(tr.t)
		}
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
		pace, p99 := tr.pc.state()
		tr.r.job.Progress(Progress{Table: tr.t.display, Done: tr.r.done, Total: tr.r.total, RowsPerSecond: rate, Elapsed: el, Pace: pace, ProbeP99: p99, ReplicaLag: tr.r.replicaLagNow()})
	}
	if ctx.Err() != nil {
		return interrupted(tr.t)
	}
	return nil
}

// readLoop reads batches after lastPK until the table ends, honoring the
// rate limit, and hands each to the workers and (in order) to the writers.
func (r *runner) readLoop(ctx, pctx context.Context, t *table, wm *watermark, pl *pool, lastPK []string, limit int, ordered, work chan<- *batch, pc *pacer) error {
	var read int64
	var g gate
	start := time.Now()
	for seq := 0; ; seq++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pctx.Err() != nil {
			return nil
		}
		if halt, err := r.control(ctx, pctx, &g, read, &start); halt {
			return err
		}
		if halt, err := r.holdForReplicas(ctx, pctx, t, &start); halt || err != nil { // replica.go
			return err
		}
		if pc != nil { // adaptive pace: rows_per_second is its ceiling
			if pc.wait(ctx, pctx); ctx.Err() != nil {
				return ctx.Err()
			} else if pctx.Err() != nil {
				return nil
			}
			limit = pc.batch()
		} else if rate := r.cfg.RowsPerSecond; rate > 0 && read > 0 {
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
		rows, err := t.readAfter(pctx, r.reader, lastPK, limit)
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
		pc.read(len(b.rows), b.lastPK)
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
		default: // the old key, or one of Job.Also
			w.pref = o.idx
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
