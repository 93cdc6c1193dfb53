package reencrypt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rekeyhq/rekey"
)

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
				if err2 := r.createCheckpoint(ctx, w); err2 != nil {
					return err2
				}
				r.forgetPrepared(ctx, w)
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
	ws := r.writerState(w)
	e := &ws.enc
	e.reset()
	encodeUpdateParams(e, t, b.rows, idx)
	name, sql := fmt.Sprintf("rekey_u%d", t.idx), t.update
	if move {
		name, sql = fmt.Sprintf("rekey_c%d", t.idx), r.batchSQL(t)
		e.add(func(buf []byte) []byte { return append(buf, r.job.JobID...) })
		e.add(func(buf []byte) []byte { return append(buf, t.ident...) })
		e.add(func(buf []byte) []byte { return appendTextArray(buf, pk) })
		e.add(func(buf []byte) []byte {
			if done {
				return append(buf, 1)
			}
			return append(buf, 0)
		})
		e.add(func(buf []byte) []byte { return binary.BigEndian.AppendUint64(buf, uint64(rowsDone)) })
		e.add(func(buf []byte) []byte { return append(buf, r.keyFP...) })
		e.add(func(buf []byte) []byte { return binary.BigEndian.AppendUint64(buf, uint64(len(idx))) })
	}
	if !ws.prepared[name] {
		if _, err := w.PgConn().Prepare(ctx, name, sql, nil); err != nil {
			return dbError(err, "prepare the write of %s", t.display)
		}
		ws.prepared[name] = true
	}
	vals, fmts := e.params()
	rr := w.PgConn().ExecPrepared(ctx, name, vals, fmts, []int16{pgx.BinaryFormatCode})
	var updated int64 = -1
	for rr.NextRow() {
		if v := rr.Values(); len(v) > 0 && len(v[0]) == 8 {
			updated = int64(binary.BigEndian.Uint64(v[0]))
		}
	}
	tag, err := rr.Close()
	if err != nil {
		if pgCode(err) == "26000" || pgCode(err) == "0A000" { // prepared statement gone or stale
			delete(ws.prepared, name)
		}
		return dbError(err, "write a batch of %s", t.display)
	}
	if !move {
		updated = tag.RowsAffected()
	}
	if updated == int64(len(idx)) {
		return nil
	}
	return r.revisit(ctx, w, t, b, idx, wm)
}

// writerState is what a writer connection keeps: its prepared statements
// and its parameter buffer.
type writerState struct {
	prepared map[string]bool
	enc      encoder
}

func (r *runner) writerState(w *pgx.Conn) *writerState {
	r.wsMu.Lock()
	defer r.wsMu.Unlock()
	if r.ws == nil {
		r.ws = map[*pgx.Conn]*writerState{}
	}
	ws := r.ws[w]
	if ws == nil {
		ws = &writerState{prepared: map[string]bool{}}
		r.ws[w] = ws
	}
	return ws
}

// forgetPrepared drops w's prepared statements (after the checkpoint
// table was recreated their plans point to the old one).
func (r *runner) forgetPrepared(ctx context.Context, w *pgx.Conn) {
	ws := r.writerState(w)
	for name := range ws.prepared {
		_ = w.PgConn().Deallocate(ctx, name)
		delete(ws.prepared, name)
	}
}

// encoder builds binary parameters in one reusable buffer.
type encoder struct {
	buf  []byte
	ends []int
	vals [][]byte
	fmts []int16
}

func (e *encoder) reset() { e.buf, e.ends = e.buf[:0], e.ends[:0] }

// add appends one parameter written by f.
func (e *encoder) add(f func([]byte) []byte) {
	e.buf = f(e.buf)
	e.ends = append(e.ends, len(e.buf))
}

func (e *encoder) params() ([][]byte, []int16) {
	e.vals, e.fmts = e.vals[:0], e.fmts[:0]
	start := 0
	for _, end := range e.ends {
		e.vals = append(e.vals, e.buf[start:end:end])
		e.fmts = append(e.fmts, pgx.BinaryFormatCode)
		start = end
	}
	return e.vals, e.fmts
}

// Element type OIDs of the array parameters.
const (
	oidBytea = 17
	oidText  = 25
	oidTID   = 27
	oidXID   = 28
)

// appendArrayHeader writes the binary header of a one-dimensional array.
func appendArrayHeader(buf []byte, elem uint32, n int, hasNull bool) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	if hasNull {
		buf = binary.BigEndian.AppendUint32(buf, 1)
	} else {
		buf = binary.BigEndian.AppendUint32(buf, 0)
	}
	buf = binary.BigEndian.AppendUint32(buf, elem)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1) // lower bound
}

func appendTextArray(buf []byte, vals []string) []byte {
	buf = appendArrayHeader(buf, oidText, len(vals), false)
	for _, v := range vals {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

// encodeUpdateParams writes the parameters of t.update for rows idx:
// tid[], xid[], the keys as text[], the new values as text[] or bytea[].
func encodeUpdateParams(e *encoder, t *table, rows []row, idx []int) {
	e.add(func(buf []byte) []byte {
		buf = appendArrayHeader(buf, oidTID, len(idx), false)
		for _, i := range idx {
			buf = binary.BigEndian.AppendUint32(buf, 6)
			buf = binary.BigEndian.AppendUint32(buf, rows[i].ctid.BlockNumber)
			buf = binary.BigEndian.AppendUint16(buf, rows[i].ctid.OffsetNumber)
		}
		return buf
	})
	e.add(func(buf []byte) []byte {
		buf = appendArrayHeader(buf, oidXID, len(idx), false)
		for _, i := range idx {
			buf = binary.BigEndian.AppendUint32(buf, 4)
			buf = binary.BigEndian.AppendUint32(buf, rows[i].xmin)
		}
		return buf
	})
	cells := func(elem uint32, get func(*row) []byte) {
		e.add(func(buf []byte) []byte {
			hasNull := false
			for _, i := range idx {
				if get(&rows[i]) == nil {
					hasNull = true
					break
				}
			}
			buf = appendArrayHeader(buf, elem, len(idx), hasNull)
			for _, i := range idx {
				v := get(&rows[i])
				if v == nil {
					buf = binary.BigEndian.AppendUint32(buf, 0xffffffff) // NULL
					continue
				}
				buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
				buf = append(buf, v...)
			}
			return buf
		})
	}
	for k := range t.pk {
		cells(oidText, func(rw *row) []byte { return rw.key[k] })
	}
	elem := uint32(oidText)
	if t.bytea {
		elem = oidBytea
	}
	for c := range t.cols {
		cells(elem, func(rw *row) []byte { return rw.new[c] })
	}
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
	var revisitOut arena
	for round := 0; ; round++ {
		rows, err := tx.Query(ctx, t.reread, keyArgs(t, b.rows, pending)...)
		if err != nil {
			return dbError(err, "re-read rows of %s", t.display)
		}
		var ar arena
		cur, _, err := scanRows(rows, t, &ar, nil, nil)
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
			if err := r.processRow(rw, wk, &revisitOut); err != nil {
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
