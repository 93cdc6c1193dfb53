package reencrypt

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// CountJob asks which key each value of the configured columns opens
// with.
type CountJob struct {
	DSN        string // as Job.DSN
	ConnConfig *pgx.ConnConfig
	Config     rekey.ReencryptSpec
	// Keys are the keys to count, usually {new, old}; a value is counted
	// under the first key it opens with.
	Keys []rekey.Value
	// Progress, when set, is called after every batch (Done counts rows).
	Progress func(Progress)
	Stderr   io.Writer // the command codec's stderr (nil: os.Stderr)
}

// Counts are the figures of Count: one ColumnCount per configured column,
// in config order, taken from one snapshot of the database.
type Counts struct {
	Columns []ColumnCount
	Rows    int64 // rows read, all tables
}

// ColumnCount counts the values of one column.
type ColumnCount struct {
	Table   string  // schema.table
	Column  string  //
	ByKey   []int64 // values that open with CountJob.Keys[i]
	Neither int64   // values that open with none of the keys (or are not in the configured format)
	Empty   int64   // NULL or empty values
}

// ByKey returns the number of values, over all columns, that open with
// key i.
func (c *Counts) ByKey(i int) int64 {
	var n int64
	for _, col := range c.Columns {
		if i < len(col.ByKey) {
			n += col.ByKey[i]
		}
	}
	return n
}

// Neither returns the number of values, over all columns, that open with
// none of the keys.
func (c *Counts) Neither() int64 {
	var n int64
	for _, col := range c.Columns {
		n += col.Neither
	}
	return n
}

// Count reads every configured column in one REPEATABLE READ, read-only
// snapshot and counts, per column, the values that open with each key,
// with none, and the NULL or empty ones. It writes nothing (the role needs
// only SELECT). `rekey reencrypt --verify` and the rule that an old key is
// kept while any value still needs it rest on it.
func Count(ctx context.Context, job CountJob) (*Counts, error) {
	cfg, specs, err := prepare(job.Config)
	if err != nil {
		return nil, err
	}
	if len(job.Keys) == 0 {
		return nil, invalid("no key to count with")
	}
	names := make([]string, len(job.Keys))
	for i := range names {
		names[i] = "key " + strconv.Itoa(i+1)
	}
	kr, cmd, err := newRing(cfg, job.Keys, names, job.Stderr)
	if err != nil {
		return nil, err
	}
	if cmd != nil {
		defer cmd.close()
	}
	cc, err := Job{DSN: job.DSN, ConnConfig: job.ConnConfig}.connConfig()
	if err != nil {
		return nil, err
	}
	conn, err := connect(ctx, cc)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	tables, err := resolveTables(ctx, conn, specs, cfg.Encoding, false)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, t := range tables {
		n, err := estimateRows(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		total += n
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, dbError(err, "begin a snapshot")
	}
	defer func() { _ = tx.Rollback(context.Background()) }()

	out := &Counts{}
	started := time.Now()
	for _, t := range tables {
		cols := make([]ColumnCount, len(t.cols))
		for i, c := range t.cols {
			cols[i] = ColumnCount{Table: t.display, Column: c.name, ByKey: make([]int64, len(job.Keys))}
		}
		_, err := countTable(ctx, tx, t, kr, cfg.BatchSize, cols, func(n int64) {
			out.Rows += n
			if job.Progress != nil {
				el := time.Since(started)
				job.Progress(Progress{Table: t.display, Done: out.Rows, Total: max(total, out.Rows),
					RowsPerSecond: float64(out.Rows) / max(el.Seconds(), 1e-9), Elapsed: el})
			}
		})
		if err != nil {
			return nil, err
		}
		out.Columns = append(out.Columns, cols...)
	}
	return out, nil
}

// countTable reads t in key order on tx; workers classify the values.
func countTable(ctx context.Context, tx pgx.Tx, t *table, kr *keyring, limit int, cols []ColumnCount, progress func(int64)) (int64, error) {
	work := make(chan []row, 4)
	var mu sync.Mutex
	var workErr error
	var wg sync.WaitGroup
	for i := 0; i < max(1, runtime.GOMAXPROCS(0)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]ColumnCount, len(cols))
			for i := range local {
				local[i].ByKey = make([]int64, len(kr.keys))
			}
			var sc scratch
			pref := 0
			var err error
			for rows := range work {
				if err == nil {
					err = countRows(rows, kr, local, &pref, &sc)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && workErr == nil {
				workErr = err
			}
			for c := range cols {
				cols[c].Empty += local[c].Empty
				cols[c].Neither += local[c].Neither
				for k := range cols[c].ByKey {
					cols[c].ByKey[k] += local[c].ByKey[k]
				}
			}
		}()
	}
	n, err := sendInKeyOrder(ctx, tx, t, limit, work, progress)
	wg.Wait()
	if err != nil {
		return n, err
	}
	return n, workErr
}

// countRows counts under which key each value of rows opens (pref: the key
// tried first, the last that opened one).
func countRows(rows []row, kr *keyring, cols []ColumnCount, pref *int, sc *scratch) error {
	for _, rw := range rows {
		for c, v := range rw.old {
			if len(v) == 0 {
				cols[c].Empty++
				continue
			}
			o, err := kr.open(v, *pref, sc)
			if err != nil {
				return err
			}
			wipe(o.pt)
			if o.idx < 0 {
				cols[c].Neither++
			} else {
				cols[c].ByKey[o.idx]++
				*pref = o.idx
			}
		}
	}
	return nil
}

// sendInKeyOrder reads t in key order, limit rows at a time, and sends each batch
// to work, which it closes. It returns the number of rows read.
func sendInKeyOrder(ctx context.Context, tx pgx.Tx, t *table, limit int, work chan<- []row, progress func(int64)) (int64, error) {
	defer close(work)
	var lastPK []string
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, rekey.Wrap(rekey.CodeInternal, ErrInterrupted, "reencrypt: count of %s stopped", t.display)
		}
		rs, err := t.readAfter(ctx, tx, lastPK, limit)
		if err != nil {
			return n, dbError(err, "read %s", t.display)
		}
		var ar arena
		rows, _, err := scanRows(rs, t, &ar, make([]row, 0, limit), nil)
		rs.Close()
		if err != nil {
			return n, dbError(err, "read %s", t.display)
		}
		if len(rows) > 0 {
			work <- rows
			lastPK = lastPK[:0:0]
			for _, k := range rows[len(rows)-1].key {
				lastPK = append(lastPK, string(k))
			}
		}
		n += int64(len(rows))
		progress(int64(len(rows)))
		if len(rows) < limit {
			return n, nil
		}
	}
}

// String describes the job without its DSN or keys.
func (j CountJob) String() string {
	return fmt.Sprintf("reencrypt.CountJob{Keys: %d, Codec: %q, Columns: %q}", len(j.Keys), j.Config.Codec, j.Config.Columns)
}

// GoString is String (for %#v).
func (j CountJob) GoString() string { return j.String() }
