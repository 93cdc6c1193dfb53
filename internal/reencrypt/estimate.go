package reencrypt

// This file estimates a run before it starts (rekey rotate --dry-run,
// rekey reencrypt --rehearse): rows, bytes, a modelled WAL volume and a
// measured read+crypto speed, without writing anything.

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// EstimateSampleRows is how many rows of each table EstimateRun reads
// (the first ones in key order: the first batch a run reads).
const EstimateSampleRows = 2000

// The WAL model's constants (see WALModel).
const (
	// heapRecordBytes is the WAL an UPDATE record adds to the new tuple
	// (whose width, header included, is the row's pg_column_size): the
	// record header (24), two block references (2×8) and the relation
	// (12), the data headers (2), xl_heap_update (14) and xl_heap_header
	// (5), less the tuple header that is not logged (23), and the record's
	// alignment (8 bytes: 4 on average): 24+16+12+2+14+5−23+4 = 54.
	heapRecordBytes = 54
	// indexRecordBytes is the WAL of a B-tree leaf insert besides the index
	// tuple: record header (24), one block reference (8) and the relation
	// (12), data headers (3), xl_btree_insert (2), alignment (4) and the
	// item's line pointer (4): 57, rounded to 56 since the index tuple
	// measured (index bytes per row) already counts the line pointer.
	indexRecordBytes = 56
)

// Estimate is what EstimateRun found, per table. Every figure says how it
// was obtained: measured (read from the database or timed), modelled
// (WALModel), or a bound.
type Estimate struct {
	Tables []TableEstimate
	// FullPageWrites is the server's full_page_writes (the model counts
	// full-page images only when it is on).
	FullPageWrites bool
	// RowsPerSecond is the configured ceiling (0: none).
	RowsPerSecond int
}

// TableEstimate is the estimate of one table.
type TableEstimate struct {
	Table string // schema.table
	// Rows is measured: pg_class.reltuples when the statistics are fresh,
	// else count(*) (the run's progress total, estimateRows).
	Rows int64
	// HeapBytes and IndexBytes are measured: pg_relation_size and
	// pg_indexes_size (summed over partitions).
	HeapBytes, IndexBytes int64
	// Indexes is the number of indexes; EncryptedIndexes of them cover an
	// encrypted column (as a key column, in an expression or a predicate):
	// then no update can be HOT and every index gets an entry per row.
	Indexes, EncryptedIndexes int
	// SampleRows were read (the first rows in key order, at most
	// EstimateSampleRows); AvgRowBytes is their average width
	// (pg_column_size of the row, tuple header included): measured.
	SampleRows  int
	AvgRowBytes float64
	// NewRowBytes is the width of a rewritten row: AvgRowBytes plus the
	// average growth of its re-encrypted values in the sample (measured).
	NewRowBytes float64
	// WriteFraction is the share of sampled rows the run would write (a
	// value under the old key): measured on the sample.
	WriteFraction float64
	// HOTFraction is the share of updates modelled as HOT (no index entry):
	// 0 when an index covers an encrypted column, else what the pages' free
	// space holds (a freshly loaded table has none).
	HOTFraction float64
	// WAL is the modelled WAL volume of the run.
	WAL WALModel
	// SampleTime is the time to read the sample and re-encrypt it in
	// memory (nothing written): measured.
	SampleTime time.Duration
	// ReadCryptoRowsPerSecond is SampleRows / SampleTime: an upper bound of
	// the run's speed (the writes, most of a run, are not in it).
	ReadCryptoRowsPerSecond float64
	// MinTime is a lower bound on the run's time, Rows ÷ rows_per_second,
	// when a ceiling is set (0 otherwise: the write cost is not sampled;
	// a rehearsal measures it).
	MinTime time.Duration
}

// WALModel is the modelled WAL volume of re-encrypting a table (bytes):
//
//   - FullPageImages: with full_page_writes, the first change of a page
//     after a checkpoint logs the whole page. Every heap page is changed
//     (every row is rewritten), and so is every page of every index that
//     gets entries (non-HOT updates): heap bytes + those indexes' bytes.
//     This assumes a checkpoint since each page was last written (the
//     usual case for a table loaded long ago), once: a run spanning
//     several checkpoints logs a page again only if it is changed again,
//     which keyset order makes rare.
//   - Tuples: per row written, the new tuple (NewRowBytes) plus the
//     UPDATE record's overhead (heapRecordBytes).
//   - IndexEntries: per non-HOT row written, per index, the index tuple
//     (measured: the index's bytes per row) plus the insert record's
//     overhead (indexRecordBytes).
//   - IndexSplits: a non-HOT rewrite doubles the entries of each index
//     leaf until VACUUM: about one page split per leaf, each logging half a
//     page: half the bytes of the indexes that get entries.
//
// Not counted: commit and checkpoint-table records (tens of bytes per
// batch), TOAST beyond the inline width, wal_compression (which shrinks
// the full-page images), the old key logged under wal_level logical.
type WALModel struct {
	FullPageImages, Tuples, IndexEntries, IndexSplits int64
}

// Total is the sum of the model's parts.
func (w WALModel) Total() int64 {
	return w.FullPageImages + w.Tuples + w.IndexEntries + w.IndexSplits
}

// WALBytes is the modelled WAL of the whole run (every table).
func (e *Estimate) WALBytes() int64 {
	var n int64
	for _, t := range e.Tables {
		n += t.WAL.Total()
	}
	return n
}

// EstimateRun estimates the run of job without writing anything: per
// table, the rows and bytes (measured), the WAL volume (modelled, see
// WALModel) and the speed of reading and re-encrypting a sample in memory
// (measured: an upper bound of the run's speed). Its session is read-only
// (default_transaction_read_only) and takes no lock beyond a plain
// SELECT's; job.New may be a throwaway key (nothing is written with it).
func EstimateRun(ctx context.Context, job Job) (*Estimate, error) {
	cfg, specs, err := prepare(job.Config)
	if err != nil {
		return nil, err
	}
	keys, names := []rekey.Value{job.Old, job.New}, []string{"old key", "new key"}
	for _, k := range job.Also {
		keys, names = append(keys, k), append(names, "other key")
	}
	r := &runner{job: job, cfg: cfg, specs: specs}
	defer r.close()
	if cfg.Codec != CodecCommand || !job.NoProgram {
		if r.kr, r.cmd, err = newRing(cfg, keys, names, job.Stderr); err != nil {
			return nil, err
		}
		r.kr.sealWith, r.kr.header = 1, cfg.KeyID
	}
	cc, err := job.connConfig()
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["default_transaction_read_only"] = "on"
	cc.RuntimeParams["lock_timeout"] = "10s"
	if r.reader, err = connect(ctx, cc); err != nil {
		return nil, err
	}
	tables, err := resolveTables(ctx, r.reader, specs, cfg.Encoding, false)
	if err != nil {
		return nil, err
	}
	est := &Estimate{RowsPerSecond: cfg.RowsPerSecond}
	var fpw string
	var blockSize int64
	if err := r.reader.QueryRow(ctx, `SELECT current_setting('full_page_writes'), current_setting('block_size')::bigint`).Scan(&fpw, &blockSize); err != nil {
		return nil, dbError(err, "read the server's settings")
	}
	est.FullPageWrites = fpw == "on"
	for _, t := range tables {
		te, err := r.estimateTable(ctx, t, blockSize)
		if err != nil {
			return nil, err
		}
		te.WAL = modelWAL(te, est.FullPageWrites)
		if est.RowsPerSecond > 0 {
			te.MinTime = time.Duration(float64(te.Rows) / float64(est.RowsPerSecond) * float64(time.Second))
		}
		est.Tables = append(est.Tables, *te)
	}
	return est, nil
}

// estimateTable measures t: rows, sizes, indexes, and the sample.
func (r *runner) estimateTable(ctx context.Context, t *table, blockSize int64) (*TableEstimate, error) {
	conn := r.reader
	te := &TableEstimate{Table: t.display}
	var err error
	if te.Rows, err = estimateRows(ctx, conn, t); err != nil {
		return nil, err
	}
	// A partitioned table's bytes are its partitions'.
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(pg_relation_size(r)), 0)::bigint, coalesce(sum(pg_indexes_size(r)), 0)::bigint
		FROM (SELECT $1::oid::regclass AS r WHERE NOT $2 UNION ALL SELECT relid FROM pg_partition_tree($1::oid) WHERE $2 AND isleaf) AS p`,
		t.oid, t.partitioned).Scan(&te.HeapBytes, &te.IndexBytes); err != nil {
		return nil, dbError(err, "measure %s", t.display)
	}
	var cols []string
	for _, c := range t.cols {
		cols = append(cols, c.name)
	}
	// An index covers an encrypted column as a key column, or (expression,
	// predicate) through its dependency on the column.
	if err := conn.QueryRow(ctx, `SELECT count(*)::int, (count(*) FILTER (WHERE EXISTS (
			SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = ANY($2::text[]) AND (
				a.attnum = ANY(i.indkey::int2[]) OR EXISTS (SELECT 1 FROM pg_depend d
					WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
					AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND d.refobjsubid = a.attnum)))))::int
		FROM pg_index i WHERE i.indrelid = $1::oid`, t.oid, cols).Scan(&te.Indexes, &te.EncryptedIndexes); err != nil {
		return nil, dbError(err, "read the indexes of %s", t.display)
	}
	if err := r.sample(ctx, t, te); err != nil {
		return nil, err
	}
	te.HOTFraction = hotFraction(te, blockSize)
	return te, nil
}

// sample reads the first rows of t in key order (the run's first batch),
// times their read and re-encryption in memory, and measures their width.
func (r *runner) sample(ctx context.Context, t *table, te *TableEstimate) error {
	var keyCols []string
	for _, p := range t.pk {
		keyCols = append(keyCols, "t."+quoteIdent(p.name))
	}
	var n int
	var avg float64
	if err := r.reader.QueryRow(ctx, `SELECT count(*)::int, coalesce(avg(pg_column_size(s.*)), 0)::float8 FROM (SELECT t.* FROM `+t.ident+` AS t ORDER BY `+
		strings.Join(keyCols, ", ")+` LIMIT $1) AS s`, EstimateSampleRows).Scan(&n, &avg); err != nil {
		return dbError(err, "sample %s", t.display)
	}
	te.AvgRowBytes = avg
	if r.kr == nil { // a command codec's program not started (Job.NoProgram): no crypto sample
		te.SampleRows, te.NewRowBytes, te.WriteFraction = n, avg, 1
		return nil
	}
	t0 := time.Now()
	rows, err := t.readAfter(ctx, r.reader, nil, EstimateSampleRows)
	if err != nil {
		return dbError(err, "sample %s", t.display)
	}
	b := &batch{}
	b.rows, b.cells, err = scanRows(rows, t, &b.in, nil, nil)
	rows.Close()
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return dbError(err, "sample %s", t.display)
	}
	if err := r.processBatch(b, newWorker()); err != nil {
		return err
	}
	te.SampleTime = time.Since(t0)
	te.SampleRows = len(b.rows)
	if s := te.SampleTime.Seconds(); s > 0 && te.SampleRows > 0 {
		te.ReadCryptoRowsPerSecond = float64(te.SampleRows) / s
	}
	var writes, grow int64
	for i := range b.rows {
		rw := &b.rows[i]
		if rw.meta&rowWrite == 0 {
			continue
		}
		writes++
		for c, nv := range rw.new {
			if nv != nil {
				grow += int64(len(nv) - len(rw.old[c]))
			}
		}
		wipeRow(rw)
	}
	te.NewRowBytes = te.AvgRowBytes
	if te.SampleRows > 0 {
		te.WriteFraction = float64(writes) / float64(te.SampleRows)
	}
	if writes > 0 {
		te.NewRowBytes += float64(grow) / float64(writes)
	}
	return nil
}

// wipeRow clears the new values of a sampled row (ciphertexts under a key
// that may be a throwaway: they go nowhere).
func wipeRow(rw *row) {
	for _, v := range rw.new {
		wipe(v)
	}
}

// hotFraction is the share of the table's updates modelled as HOT: none
// when an index covers an encrypted column (or the table has no rows);
// else the rows the average page's free space holds a new version of,
// over the rows per page (each page is changed once, in one batch).
func hotFraction(te *TableEstimate, blockSize int64) float64 {
	if te.EncryptedIndexes > 0 || te.Rows <= 0 || te.HeapBytes <= 0 || blockSize <= 0 {
		return 0
	}
	pages := float64(te.HeapBytes) / float64(blockSize)
	perRow := align8(te.AvgRowBytes) + 4 // the tuple and its line pointer
	rowsPerPage := float64(te.Rows) / pages
	free := float64(blockSize) - 24 - rowsPerPage*perRow // the page header is 24 bytes
	if free <= 0 {
		return 0
	}
	return math.Min(1, math.Floor(free/(align8(te.NewRowBytes)+4))/rowsPerPage)
}

func align8(n float64) float64 { return math.Ceil(n/8) * 8 }

// modelWAL applies the WAL model (see WALModel) to te.
func modelWAL(te *TableEstimate, fpw bool) WALModel {
	written := float64(te.Rows) * te.WriteFraction
	nonHOT := written * (1 - te.HOTFraction)
	var m WALModel
	var touchedIndexBytes int64 // bytes of the indexes that get entries
	if nonHOT > 0 && te.Indexes > 0 {
		touchedIndexBytes = te.IndexBytes
	}
	if fpw && written > 0 {
		m.FullPageImages = int64(math.Ceil(float64(te.HeapBytes)*math.Min(1, te.WriteFraction))) + touchedIndexBytes
	}
	m.Tuples = int64(written * (te.NewRowBytes + heapRecordBytes))
	if te.Indexes > 0 && te.Rows > 0 {
		perRow := float64(te.IndexBytes) / float64(te.Rows) // all indexes' tuples of a row
		m.IndexEntries = int64(nonHOT * (perRow + float64(te.Indexes*indexRecordBytes)))
	}
	m.IndexSplits = touchedIndexBytes / 2
	if te.Rows > 0 {
		m.IndexSplits = int64(float64(touchedIndexBytes) / 2 * nonHOT / float64(te.Rows))
	}
	return m
}
