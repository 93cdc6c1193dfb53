package app

import (
	"fmt"
	"sync"
	"time"

	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// paceNoteEvery is the most often the adaptive pace's back-offs are
// narrated (a back-off can come every few probes).
const paceNoteEvery = 10 * time.Second

// paceNotes narrates the adaptive pace (reencrypt.Controller): its
// calibrated target once per run, then its back-offs, at most one line
// per paceNoteEvery summing those since the last line. The progress line
// shows the current pace and probe p99 meanwhile.
func (w *wiring) paceNotes() func(string, reencrypt.PaceDecision) {
	var (
		mu       sync.Mutex
		last     time.Time
		backoffs int
	)
	return func(table string, d reencrypt.PaceDecision) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case d.Reason == reencrypt.PaceCalibrated:
			w.say("adaptive pace on %s: the probe's p99 was %s before the run; keeping it under %s (target_p99), starting at %.0f rows/s",
				table, d.P99.Round(10*time.Microsecond), d.Target.Round(10*time.Microsecond), d.NewRate)
			last = time.Now()
		case d.NewRate < d.OldRate:
			backoffs++
			if time.Since(last) < paceNoteEvery {
				return
			}
			w.say("adaptive pace on %s: %s, now %.0f rows/s", table, paceBackoffs(backoffs, d), d.NewRate)
			last, backoffs = time.Now(), 0
		}
	}
}

// paceBackoffs reads "backed off 3 times (last: p99 4.1ms over target 2ms)".
func paceBackoffs(n int, d reencrypt.PaceDecision) string {
	why := d.Reason
	switch d.Reason {
	case reencrypt.PaceOverTarget:
		why = fmt.Sprintf("p99 %s over target %s", d.P99.Round(10*time.Microsecond), d.Target.Round(10*time.Microsecond))
	case reencrypt.PaceLockWaits:
		why = fmt.Sprintf("%d sessions waiting for a lock on the table", d.LockWaits)
	case reencrypt.PaceActiveJump:
		why = fmt.Sprintf("%d active connections of others", d.Active)
	}
	if n == 1 {
		return "backed off (" + why + ")"
	}
	return fmt.Sprintf("backed off %d times (last: %s)", n, why)
}
