package reencrypt

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rekeyhq/rekey"
)

// CheckpointTable is the name of the checkpoint table Run creates in the
// first schema of the search_path.
const CheckpointTable = "rekey_reencrypt_checkpoint"

// bytesArray is a text[] or bytea[] parameter; a nil element is NULL.
type bytesArray [][]byte

func (a bytesArray) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a bytesArray) Index(i int) any {
	if a[i] == nil {
		return nil
	}
	return a[i]
}

func (a bytesArray) IndexType() any { return []byte(nil) }

// xidArray is an xid[] parameter.
type xidArray []uint32

func (a xidArray) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}
func (a xidArray) Index(i int) any { return a[i] }
func (a xidArray) IndexType() any  { return uint32(0) }

// tidArray is a tid[] parameter.
type tidArray []pgtype.TID

func (a tidArray) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}
func (a tidArray) Index(i int) any { return a[i] }
func (a tidArray) IndexType() any  { return pgtype.TID{} }

// updateArgs are the parameters of t.update for rows idx of rows.
func updateArgs(t *table, rows []row, idx []int) []any {
	nk, nc := len(t.pk), len(t.cols)
	args := make([]any, 0, 2+nk+nc)
	ctids, xmins := make(tidArray, len(idx)), make(xidArray, len(idx))
	for j, i := range idx {
		ctids[j], xmins[j] = rows[i].ctid, rows[i].xmin
	}
	args = append(args, ctids, xmins)
	args = append(args, keyArgs(t, rows, idx)...)
	for c := 0; c < nc; c++ {
		n := make(bytesArray, len(idx))
		for j, i := range idx {
			n[j] = rows[i].new[c]
		}
		args = append(args, n)
	}
	return args
}

func keyArgs(t *table, rows []row, idx []int) []any {
	args := make([]any, 0, len(t.pk))
	for k := range t.pk {
		a := make(bytesArray, len(idx))
		for j, i := range idx {
			a[j] = rows[i].key[k]
		}
		args = append(args, a)
	}
	return args
}

// upsertTail never moves a checkpoint back: batches commit out of order,
// and a later one may have written a further checkpoint already.
const upsertTail = ` ON CONFLICT (job_id, table_name) DO UPDATE SET last_pk = EXCLUDED.last_pk, done = EXCLUDED.done,
	rows_done = EXCLUDED.rows_done, key_fp = EXCLUDED.key_fp, updated_at = EXCLUDED.updated_at
	WHERE ck.rows_done < EXCLUDED.rows_done OR (EXCLUDED.done AND NOT ck.done)`

// batchSQL is the write of a batch in one statement: the compare-and-swap
// update and, only when every row matched, the checkpoint.
func (r *runner) batchSQL(t *table) string {
	p := func(i int) string { return "$" + strconv.Itoa(t.nparams+i) }
	return "WITH u AS (" + t.update + " RETURNING 1), c AS (INSERT INTO " + r.ckpt +
		" AS ck (job_id, table_name, last_pk, done, rows_done, key_fp, updated_at) SELECT " +
		p(1) + "::text, " + p(2) + "::text, " + p(3) + "::text[], " + p(4) + "::boolean, " + p(5) + "::bigint, " + p(6) + "::text, now()" +
		" WHERE (SELECT count(*) FROM u) = " + p(7) + "::bigint" + upsertTail + " RETURNING 1)" +
		" SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c)"
}

func (r *runner) checkpointArgs(t *table, lastPK []string, done bool, rowsDone int64) []any {
	return []any{r.job.JobID, t.ident, lastPK, done, rowsDone, r.keyFP}
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (r *runner) saveCheckpoint(ctx context.Context, q execer, t *table, lastPK []string, done bool, rowsDone int64) error {
	if r.ckpt == "" {
		return nil
	}
	_, err := q.Exec(ctx, "INSERT INTO "+r.ckpt+" AS ck (job_id, table_name, last_pk, done, rows_done, key_fp, updated_at)"+
		" VALUES ($1, $2, $3::text[], $4, $5, $6, now())"+upsertTail, r.checkpointArgs(t, lastPK, done, rowsDone)...)
	if err != nil {
		return dbError(err, "write the checkpoint of %s", t.display)
	}
	return nil
}

// writeBatch writes a processed batch on connection w: one statement when
// no row changed under us (the common case), else a short transaction
// that re-reads the rows that did not match (locking them), redoes them
// and writes them with the checkpoint. Deadlocks and serialization
// failures are retried.
func (r *runner) writeBatch(ctx context.Context, w *pgx.Conn, t *table, b *batch, wm *watermark) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = r.writeBatchOnce(ctx, w, t, b, wm); err == nil {
			wm.commit(b.seq)
			return nil
		}
		switch pgCode(err) {
		case "40001", "40P01", "55P03":
			continue
		case "42P01": // the checkpoint table was dropped by a finishing job
			if r.ckpt != "" {
				if _, err2 := ensureCheckpointTable(ctx, w); err2 != nil {
					return err2
				}
				continue
			}
		}
		return err
	}
	return err
}

func (r *runner) writeBatchOnce(ctx context.Context, w *pgx.Conn, t *table, b *batch, wm *watermark) error {
	var idx []int
	for i := range b.rows {
		if b.rows[i].meta&rowWrite != 0 {
			idx = append(idx, i)
		}
	}
	pk, rowsDone, done, move := wm.upTo(b.seq)
	move = move && r.ckpt != ""
	if len(idx) == 0 {
		if !move {
			return nil
		}
		return r.saveCheckpoint(ctx, w, t, pk, done, rowsDone)
	}
	args := updateArgs(t, b.rows, idx)
	var updated int64
	if move {
		args = append(args, r.checkpointArgs(t, pk, done, rowsDone)...)
		args = append(args, int64(len(idx)))
		var saved int64
		if err := w.QueryRow(ctx, r.batchSQL(t), args...).Scan(&updated, &saved); err != nil {
			return dbError(err, "write a batch of %s", t.display)
		}
	} else {
		tag, err := w.Exec(ctx, t.update, args...)
		if err != nil {
			return dbError(err, "write a batch of %s", t.display)
		}
		updated = tag.RowsAffected()
	}
	if updated == int64(len(idx)) {
		return nil
	}
	return r.revisit(ctx, w, t, b, idx, wm)
}

// revisit handles the rows of a batch whose compare-and-swap failed: they
// were written (or deleted) by someone else between our read and our
// write. In one transaction it re-reads them by key with a row lock,
// leaves the ones that hold what we wrote, redoes the others from their
// current values, writes them, and saves the checkpoint.
func (r *runner) revisit(ctx context.Context, w *pgx.Conn, t *table, b *batch, idx []int, wm *watermark) error {
	tx, err := w.Begin(ctx)
	if err != nil {
		return dbError(err, "begin a revisit of %s", t.display)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	pending := idx
	wk := newWorker()
	for round := 0; ; round++ {
		rows, err := tx.Query(ctx, t.reread, keyArgs(t, b.rows, pending)...)
		if err != nil {
			return dbError(err, "re-read rows of %s", t.display)
		}
		var ar arena
		cur, err := scanRows(rows, t, &ar, nil)
		rows.Close()
		if err != nil {
			return dbError(err, "re-read rows of %s", t.display)
		}
		byKey := make(map[string]*row, len(cur))
		for i := range cur {
			byKey[keyString(cur[i].key)] = &cur[i]
		}
		var redo []int
		for _, i := range pending {
			rw := &b.rows[i]
			c, ok := byKey[keyString(rw.key)]
			if !ok {
				rw.meta |= rowVanished
				continue
			}
			if landed(rw, c) {
				continue
			}
			rw.old, rw.ctid, rw.xmin = c.old, c.ctid, c.xmin
			rw.meta |= rowRevisited
			if err := r.processRow(rw, wk); err != nil {
				return err
			}
			if rw.meta&rowWrite != 0 {
				redo = append(redo, i)
			}
		}
		if len(redo) > 0 {
			if round >= maxRevisits {
				return rekey.Errorf(rekey.CodeConflict, "reencrypt: rows of %s keep changing while they are re-encrypted", t.display).
					WithHint("run again: the job resumes from its checkpoint")
			}
			tag, err := tx.Exec(ctx, t.update, updateArgs(t, b.rows, redo)...)
			if err != nil {
				return dbError(err, "write revisited rows of %s", t.display)
			}
			if tag.RowsAffected() != int64(len(redo)) {
				pending = redo // locked rows cannot change; only a key update could do this
				continue
			}
		}
		if pk, rowsDone, done, move := wm.upTo(b.seq); move {
			if err := r.saveCheckpoint(ctx, tx, t, pk, done, rowsDone); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return dbError(err, "commit revisited rows of %s", t.display)
		}
		return nil
	}
}

// landed reports whether the row now holds what we wrote (or left).
func landed(rw *row, cur *row) bool {
	for c := range rw.old {
		want := rw.new[c]
		if want == nil {
			want = rw.old[c]
		}
		got := cur.old[c]
		if (want == nil) != (got == nil) || !bytes.Equal(want, got) {
			return false
		}
	}
	return true
}

func keyString(key [][]byte) string {
	var sb strings.Builder
	for i, k := range key {
		if i > 0 {
			sb.WriteByte(0)
		}
		sb.Write(k)
	}
	return sb.String()
}

type checkpoint struct {
	lastPK   []string
	done     bool
	rowsDone int64
}

// ensureCheckpointTable creates the checkpoint table when it does not
// exist and returns its identifier; "" when the role may not create or
// write it (runs then work without a checkpoint).
func ensureCheckpointTable(ctx context.Context, conn *pgx.Conn) (string, error) {
	var schema *string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", dbError(err, "read the current schema")
	}
	if schema == nil {
		return "", nil
	}
	ident := quoteIdent(*schema) + "." + quoteIdent(CheckpointTable)
	for attempt := 0; ; attempt++ {
		_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+` (
			job_id text NOT NULL,
			table_name text NOT NULL,
			last_pk text[],
			done boolean NOT NULL DEFAULT false,
			rows_done bigint NOT NULL DEFAULT 0,
			key_fp text NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (job_id, table_name))`)
		if err == nil {
			return ident, nil
		}
		switch pgCode(err) {
		case "23505", "42P07": // created concurrently
			if attempt < 2 {
				continue
			}
		case "42501": // no CREATE on the schema: maybe an admin created it
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND has_table_privilege(to_regclass($1), 'SELECT, INSERT, UPDATE, DELETE')`, ident).Scan(&ok); err == nil && ok {
				return ident, nil
			}
			return "", nil
		}
		return "", dbError(err, "create the checkpoint table")
	}
}

// loadCheckpoints reads this job's checkpoints. One made with other keys
// (another rotation reusing the id) is discarded.
func (r *runner) loadCheckpoints(ctx context.Context) (map[string]checkpoint, error) {
	out := map[string]checkpoint{}
	if r.ckpt == "" {
		return out, nil
	}
	rows, err := r.writer.Query(ctx, `SELECT table_name, last_pk, done, rows_done, key_fp FROM `+r.ckpt+` WHERE job_id = $1`, r.job.JobID)
	if err != nil {
		return nil, dbError(err, "read the checkpoint")
	}
	stale := false
	keys := map[string]int{}
	for _, t := range r.tables {
		keys[t.ident] = len(t.pk)
	}
	for rows.Next() {
		var name, fp string
		var cp checkpoint
		if err := rows.Scan(&name, &cp.lastPK, &cp.done, &cp.rowsDone, &fp); err != nil {
			rows.Close()
			return nil, dbError(err, "read the checkpoint")
		}
		nk, ok := keys[name]
		if fp != r.keyFP || !ok || (cp.lastPK != nil && len(cp.lastPK) != nk) {
			stale = true
			continue
		}
		out[name] = cp
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "read the checkpoint")
	}
	if stale {
		if _, err := r.writer.Exec(ctx, `DELETE FROM `+r.ckpt+` WHERE job_id = $1 AND key_fp <> $2`, r.job.JobID, r.keyFP); err != nil {
			return nil, dbError(err, "clear a stale checkpoint")
		}
	}
	return out, nil
}

// finish deletes the job's checkpoint rows, and the table when no other
// job has rows in it (skipped when another session is using it).
func (r *runner) finish(ctx context.Context) error {
	if r.ckpt == "" {
		return nil
	}
	if _, err := r.writer.Exec(ctx, `DELETE FROM `+r.ckpt+` WHERE job_id = $1`, r.job.JobID); err != nil {
		return dbError(err, "delete the checkpoint")
	}
	tx, err := r.writer.Begin(ctx)
	if err != nil {
		return nil
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE `+r.ckpt+` IN ACCESS EXCLUSIVE MODE NOWAIT`); err != nil {
		return nil
	}
	var empty bool
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+r.ckpt+`)`).Scan(&empty); err != nil || !empty {
		return nil
	}
	if _, err := tx.Exec(ctx, `DROP TABLE `+r.ckpt); err != nil {
		return nil
	}
	_ = tx.Commit(ctx)
	return nil
}
