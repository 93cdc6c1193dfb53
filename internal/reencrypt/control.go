package reencrypt

// This file holds the runner's side of control while running: before each
// batch is read, the reader asks Job.Control whether to wait (a pause) and
// at what pace to go (an operator's `rekey reencrypt pace N`). A pause
// waits at a batch boundary: the batches already read are written with
// their checkpoint, nothing more is read, so a run killed while paused
// resumes from the checkpoint like any other.

import (
	"context"
	"time"
)

// Control is asked before every batch is read (and every ControlPoll while
// paused, or while waiting for the pace). paused holds the run at the
// batch boundary; pace, when positive, is an upper bound on rows per
// second for the rest of the run (0: the configured pace). A pace above
// the configured rows_per_second is capped at it: Control cannot raise the
// ceiling.
type Control func(ctx context.Context) (paused bool, pace int)

// ControlPoll is how often Control is asked while the run waits.
const ControlPoll = 200 * time.Millisecond

// gate is the state of the operator's pace in one table's pass.
type gate struct {
	pace  int       // the pace in force (0: none)
	start time.Time // when it took force (or the run resumed)
	read0 int64     // rows read at start
}

// EffectivePace is pace capped by the ceiling (rows_per_second; 0: none).
func EffectivePace(pace, ceiling int) int {
	if pace <= 0 {
		return 0
	}
	if ceiling > 0 && pace > ceiling {
		return ceiling
	}
	return pace
}

// control waits, before the next batch is read (read rows so far in this
// pass), while Job.Control says paused or the operator's pace wants it.
// halt is true when the pass must stop (ctx or pctx done); err is then the
// readLoop's return value. The time waited here moves *paced (the start
// of the configured pace's clock) forward, so a run resumed, or back to its
// configured pace, does not burst to catch up with the time it waited.
func (r *runner) control(ctx, pctx context.Context, g *gate, read int64, paced *time.Time) (halt bool, err error) {
	if r.job.Control == nil {
		return false, nil
	}
	for {
		paused, pace := r.job.Control(ctx)
		pace = EffectivePace(pace, r.cfg.RowsPerSecond)
		var wait time.Duration
		switch {
		case paused:
			g.pace = -1 // resuming restarts the pace's clock
			wait = ControlPoll
		case pace != g.pace:
			*g = gate{pace: pace, start: time.Now(), read0: read}
		case pace > 0:
			due := g.start.Add(time.Duration(float64(read-g.read0) / float64(pace) * float64(time.Second)))
			wait = min(time.Until(due), ControlPoll)
		}
		if wait <= 0 {
			return false, nil
		}
		*paced = paced.Add(wait)
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-pctx.Done():
			return true, nil
		case <-time.After(wait):
		}
	}
}
