package reencrypt

import "sync"

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
