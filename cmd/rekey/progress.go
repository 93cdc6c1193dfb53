package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// progressPrinter renders re-encryption progress on stderr: a line redrawn
// in place on a terminal, a log line every 10 seconds otherwise. The total
// is the exact row count whenever the table's statistics are stale
// (reencrypt's estimateRows), so a log line carries the true total.
func (a *app) progressPrinter(what string) (func(reencrypt.Progress), func()) {
	w := a.errw()
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	return rowProgress(w, tty, what, time.Now, 10*time.Second, func() { a.progressOpen = true }), a.progressDone
}

// rowProgress formats progress lines: "what: [####....] done/total rows
// (pct%), N rows/s, ETA d". On a terminal every call redraws the line
// (opened is called); otherwise a line is printed at most once per every.
func rowProgress(w io.Writer, tty bool, what string, now func() time.Time, every time.Duration, opened func()) func(reencrypt.Progress) {
	var last time.Time
	return func(p reencrypt.Progress) {
		if !tty && !last.IsZero() && now().Sub(last) < every {
			return
		}
		last = now()
		line := fmt.Sprintf("  %s: %d rows", what, p.Done)
		if p.Total > 0 {
			pct := min(100, 100*float64(p.Done)/float64(p.Total))
			line = fmt.Sprintf("  %s: %s %d/%d rows (%.0f%%)", what, bar(pct, 20), p.Done, p.Total, pct)
		}
		if p.RowsPerSecond > 0 {
			line += fmt.Sprintf(", %.0f rows/s", p.RowsPerSecond)
			if p.Total > p.Done {
				line += ", ETA " + (time.Duration(float64(p.Total-p.Done)/p.RowsPerSecond) * time.Second).Round(time.Second).String()
			}
		}
		if p.Pace > 0 { // adaptive pace
			line += fmt.Sprintf(", pace %.0f rows/s (probe p99 %v)", p.Pace, p.ProbeP99.Round(10*time.Microsecond))
		}
		if p.ReplicaLag > 0 { // the replica furthest behind (reencrypt/replica.go)
			line += fmt.Sprintf(", replica lag %v", p.ReplicaLag.Round(time.Millisecond))
		}
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			opened()
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// progressDone ends a progress line redrawn in place.
func (a *app) progressDone() {
	if a.progressOpen {
		fmt.Fprintln(a.errw())
		a.progressOpen = false
	}
}

func bar(pct float64, width int) string {
	n := int(pct / 100 * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
