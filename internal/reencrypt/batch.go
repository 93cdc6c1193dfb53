package reencrypt

// This file holds the batches a pass reads and writes, and the memory they
// reuse from one batch to the next.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

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
