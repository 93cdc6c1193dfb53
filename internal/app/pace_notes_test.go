package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// TestPaceNotes: the calibration is narrated once; back-offs at most once
// per paceNoteEvery, summed; increases never.
func TestPaceNotes(t *testing.T) {
	var lines []string
	w := &wiring{e: &engine.Engine{Progress: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}}
	note := w.paceNotes()
	ms := time.Millisecond
	note("public.patients", reencrypt.PaceDecision{Reason: reencrypt.PaceCalibrated, P99: ms, Target: 2 * ms, OldRate: 5000, NewRate: 5000})
	note("public.patients", reencrypt.PaceDecision{Reason: reencrypt.PaceUnder, OldRate: 5000, NewRate: 6000})
	for range 3 {
		note("public.patients", reencrypt.PaceDecision{Reason: reencrypt.PaceOverTarget, P99: 5 * ms, Target: 2 * ms, OldRate: 6000, NewRate: 4200})
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "p99 was 1ms before the run; keeping it under 2ms") {
		t.Fatalf("within %s of the calibration: %q", paceNoteEvery, lines)
	}
	// A run with no calibration line (the later passes of a run): the
	// first back-off is narrated, the next within paceNoteEvery is not.
	note2 := w.paceNotes()
	note2("t", reencrypt.PaceDecision{Reason: reencrypt.PaceLockWaits, LockWaits: 2, OldRate: 6000, NewRate: 4200})
	note2("t", reencrypt.PaceDecision{Reason: reencrypt.PaceActiveJump, Active: 9, OldRate: 4200, NewRate: 2940})
	want := []string{
		"adaptive pace on t: backed off (2 sessions waiting for a lock on the table), now 4200 rows/s",
	}
	if got := lines[1:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	if s := paceBackoffs(4, reencrypt.PaceDecision{Reason: reencrypt.PaceOverTarget, P99: 5 * ms, Target: 2 * ms}); s != "backed off 4 times (last: p99 5ms over target 2ms)" {
		t.Errorf("sum: %q", s)
	}
}
