package scan

import (
	"bytes"
	"io"
	"sync"
)

// Large inputs are streamed: a file of the worktree or a blob of the index
// or history larger than wholeLimit is never held in memory whole. It is
// scanned in windows of about chunkSize bytes that overlap by at least
// Matcher.overlap() bytes, so that every match that fits in the overlap is
// found whole in one window, and reported by exactly one (the window whose
// "owned" range holds its start). Line and column numbers are those of the
// whole input.
//
// A window ends at a line break when there is one in its last half, and
// starts at the beginning of a line when there is one within the overlap:
// the inline allow markers ("rekey:allow") and the rules' line-based checks
// see whole lines, except for lines longer than the overlap.
var (
	wholeLimit = 4 << 20 // bigger inputs are streamed (a var: tests lower it)
	chunkSize  = 4 << 20 // the new bytes of a window
)

// ruleOverlap is the overlap of windows for the pattern rules: a rule match
// longer than this in a streamed input may be missed (the built-in rules'
// matches are far shorter; a managed value's longest form sets a larger
// overlap when it is longer). A var: tests lower it.
var ruleOverlap = 64 << 10

// overlap is how many bytes consecutive windows share: the longest pattern
// (the longest encoded form of any managed value) and ruleOverlap.
func (m *Matcher) overlap() int {
	o := ruleOverlap
	for _, p := range m.patterns {
		o = max(o, len(p.b))
	}
	return o
}

// part is a window of a streamed input.
type part struct {
	data   []byte // its bytes; only valid during the callback
	lo, hi int    // the owned range: matches starting in data[lo:hi] are its own
	line   int    // line breaks in the input before data[0]
	col    int    // bytes between the start of data[0]'s line and data[0]
	fresh  int    // bytes of data not seen in an earlier window (for progress)
}

// windows reads r to its end and calls fn with each window in order.
// buf, if large enough, is used as the window buffer; the buffer is cleared
// before windows returns (an input may hold secrets).
func (m *Matcher) windows(r io.Reader, buf []byte, fn func(w part) error) error {
	o := m.overlap()
	chunk := max(chunkSize, 2*o)
	size := chunk + 3*o
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	defer clear(buf)
	// buf[:n] holds the input not yet left behind; buf[lo:] is not owned
	// by an earlier window; lo is between o and 2o after the first window.
	n, lo, line, col, seen := 0, 0, 0, 0, 0
	for {
		eof := false
		for !eof && n < len(buf) {
			k, err := r.Read(buf[n:])
			n += k
			if err == io.EOF {
				eof = true
			} else if err != nil {
				return err
			}
		}
		if eof {
			return fn(part{data: buf[:n], lo: lo, hi: n, line: line, col: col, fresh: n - seen})
		}
		// Own at least half a chunk (hi >= lo+o); end at a line break if
		// there is one after that.
		end, from := n, lo+o+chunk/2
		if i := bytes.LastIndexByte(buf[from:n], '\n'); i >= 0 {
			end = from + i + 1
		}
		hi := end - o
		if err := fn(part{data: buf[:end], lo: lo, hi: hi, line: line, col: col, fresh: end - seen}); err != nil {
			return err
		}
		// The next window starts o bytes before the end of this one's
		// owned range, or at the start of its line within o more bytes.
		next := hi - o
		from = max(0, next-o)
		if i := bytes.LastIndexByte(buf[from:next], '\n'); i >= 0 {
			next = from + i + 1
		}
		head := buf[:next]
		if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
			line += bytes.Count(head, []byte{'\n'})
			col = next - i - 1
		} else {
			col += next
		}
		copy(buf, buf[next:n])
		n -= next
		lo = hi - next
		seen = end - next
	}
}

// scanWindow returns the findings of w, positioned in the whole input.
func (m *Matcher) scanWindow(w part, base Finding) []Finding {
	fs := m.scanRange(w.data, base, w.lo, w.hi)
	for i := range fs {
		if fs[i].Line == 1 {
			fs[i].Column += w.col
		}
		if fs[i].EndLine == 1 {
			fs[i].EndColumn += w.col
		}
		fs[i].Line += w.line
		fs[i].EndLine += w.line
	}
	return fs
}

// scanReader scans r, which holds size bytes (a hint: it may hold more or
// fewer): whole when it holds at most wholeLimit bytes, else in windows.
func (m *Matcher) scanReader(r io.Reader, size int64, base Finding) ([]Finding, error) {
	if size <= int64(wholeLimit) {
		buf := make([]byte, size+1)
		defer clear(buf)
		n, err := io.ReadFull(r, buf)
		switch err {
		case io.EOF, io.ErrUnexpectedEOF:
			return m.scanData(buf[:n], base), nil
		case nil:
			r = io.MultiReader(bytes.NewReader(buf), r) // it grew
		default:
			return nil, err
		}
	}
	var out []Finding
	err := m.windows(r, nil, func(w part) error {
		out = append(out, m.scanWindow(w, base)...)
		return nil
	})
	return out, err
}

// historyBudget bounds the bytes of blob content that the history scan's
// queued and running jobs hold at once.
const historyBudget = 32 << 20

// budget bounds the bytes of the inputs held at once by the history scan's
// workers, whatever their number.
type budget struct {
	mu          sync.Mutex
	cond        sync.Cond
	free, total int
}

func newBudget(n int) *budget {
	b := &budget{free: n, total: n}
	b.cond.L = &b.mu
	return b
}

// acquire waits until n bytes are free (all of them, for more than the
// whole budget) and takes them; it returns how many to release.
func (b *budget) acquire(n int) int {
	n = min(n, b.total)
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
	return n
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}
