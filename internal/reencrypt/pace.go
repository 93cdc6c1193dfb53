package reencrypt

// This file holds the adaptive pace's controller: a pure, deterministic
// core fed with observations (the probe's latency, lock waits on the
// table, the server's active connections) that returns decisions (the
// batch rate and size). It holds no clock: times are passed in. The
// wiring (the probe connection, the batch loop) is in pace_run.go.

import (
	"fmt"
	"slices"
	"time"
)

// Pace defaults.
const (
	paceWindow       = 20                     // probes in the recent p99
	paceSettle       = 5                      // probes at a new rate before its p99 may back it off again
	paceStartRate    = 5000.0                 // rows/s before the first decision
	paceMinRate      = 100.0                  // rows/s: a back-off never goes below
	paceMaxRate      = 1e7                    // rows/s without rows_per_second: "as fast as it goes"
	paceIncrease     = 1000.0                 // rows/s added per decision well under the knee
	paceNearIncrease = 200.0                  // rows/s added per decision near the knee (or past it)
	paceNear         = 0.85                   // "near the knee": at this fraction of the last back-off's rate
	paceHeadroom     = 0.8                    // speed up only while the p99 is under this fraction of the target
	paceDecrease     = 0.7                    // rate multiplied per back-off
	paceSevere       = 4                      // a probe this many targets long backs off even while settling
	paceMinTarget    = time.Millisecond       // the calibrated target is never tighter
	paceBatchSpacing = 100 * time.Millisecond // batches aim at this spacing (smaller batches, evenly spaced)
	paceMinBatch     = 50
	paceActiveSlack  = 2 // active connections above the calibrated count + max(slack, count) are a jump
)

// PaceObservation is one probe and the server's state around it.
type PaceObservation struct {
	At        time.Duration // since the controller started (the caller's clock)
	Probe     time.Duration // the probe's latency (a probe cut short counts its time so far)
	LockWaits int           // lock waits on the table (not granted, or blocked by the run)
	Active    int           // active connections of others
}

// PaceDecision is what the controller decided after one observation,
// with its inputs.
type PaceDecision struct {
	At               time.Duration
	P99, Target      time.Duration // the recent probes' p99 and the target
	LockWaits        int
	Active           int
	OldRate, NewRate float64 // rows/s
	Batch            int     // rows per batch from now on
	Reason           string  // one of the Pace* reasons
}

// Reasons of a PaceDecision.
const (
	PaceOverTarget = "p99 over target"   // multiplicative decrease
	PaceLockWaits  = "lock waits"        // multiplicative decrease
	PaceActiveJump = "active jump"       // multiplicative decrease
	PaceUnder      = "under target"      // additive increase
	PaceNear       = "near target"       // p99 between the headroom and the target: hold
	PaceSettling   = "settling"          // over target, but too soon after a back-off to judge the new rate: hold
	PaceCeiling    = "at ceiling"        // under target, already at rows_per_second
	PaceFullSpeed  = "pace full"         // pace: full ignores probes
	PaceCalibrated = "calibrated target" // the first decision: the target from the idle probes
)

// String reads "12.3s p99 4ms/2ms locks 0 active 3: 5000 → 2500 rows/s (batch 250): p99 over target".
func (d PaceDecision) String() string {
	return fmt.Sprintf("%v p99 %v/%v locks %d active %d: %.0f → %.0f rows/s (batch %d): %s",
		d.At.Round(time.Millisecond), d.P99, d.Target, d.LockWaits, d.Active, d.OldRate, d.NewRate, d.Batch, d.Reason)
}

// PaceConfig configures a Controller.
type PaceConfig struct {
	Full      bool          // pace: full: no probes, the ceiling's rate always
	Ceiling   float64       // rows_per_second (0: none)
	MaxBatch  int           // batch_size: the largest batch
	Target    time.Duration // the probe p99 to keep under (0: Factor × the calibrated p99)
	Factor    float64       // 0: 2
	StartRate float64       // 0: paceStartRate
}

// Controller decides the batch rate from observations (AIMD: back off
// quickly, speed up slowly). A back-off multiplies the rate by
// paceDecrease and remembers the rate it left (the knee); while the
// recent p99 is under paceHeadroom × the target the rate grows by
// paceIncrease per decision, by paceNearIncrease only once it is near the
// knee (so it dwells where it last hurt rather than overshooting it), and
// holds between the headroom and the target. The probes of paceSettle
// decisions after a back-off judge the new rate before the p99 may back
// it off again (one stall is not several back-offs), unless a probe takes
// paceSevere × the target. It is not safe for concurrent use.
type Controller struct {
	cfg     PaceConfig
	target  time.Duration
	active0 int // active connections at calibration
	rate    float64
	window  []time.Duration
	knee    float64 // the rate before the last back-off (0: none yet)
	since   int     // probes since the last back-off
}

// NewController returns a controller at its start rate. Call Calibrate
// before Observe (pace: full needs neither).
func NewController(cfg PaceConfig) *Controller {
	if cfg.Factor <= 0 {
		cfg.Factor = 2
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultBatchSize
	}
	c := &Controller{cfg: cfg, target: cfg.Target, rate: cfg.StartRate, since: paceSettle}
	if c.rate <= 0 {
		c.rate = paceStartRate
	}
	if cfg.Full {
		c.rate = c.ceiling()
	}
	c.rate = min(c.rate, c.ceiling())
	return c
}

func (c *Controller) ceiling() float64 {
	if c.cfg.Ceiling > 0 {
		return c.cfg.Ceiling
	}
	return paceMaxRate
}

// Calibrate sets the target from the probes of an idle window (Factor ×
// their p99, no tighter than paceMinTarget, unless Target is set) and the
// baseline of active connections.
func (c *Controller) Calibrate(at time.Duration, idle []PaceObservation) PaceDecision {
	lat := make([]time.Duration, 0, len(idle))
	for _, o := range idle {
		lat = append(lat, o.Probe)
		c.active0 = max(c.active0, o.Active)
	}
	p := p99(lat)
	if c.cfg.Target <= 0 {
		c.target = max(paceMinTarget, time.Duration(float64(p)*c.cfg.Factor))
	}
	return PaceDecision{At: at, P99: p, Target: c.target, Active: c.active0, OldRate: c.rate, NewRate: c.rate, Batch: c.Batch(), Reason: PaceCalibrated}
}

// Observe takes one observation and returns the decision it leads to.
func (c *Controller) Observe(o PaceObservation) PaceDecision {
	d := PaceDecision{At: o.At, Target: c.target, LockWaits: o.LockWaits, Active: o.Active, OldRate: c.rate}
	if c.cfg.Full {
		c.rate = c.ceiling()
		d.NewRate, d.Batch, d.Reason = c.rate, c.Batch(), PaceFullSpeed
		return d
	}
	c.window = append(c.window, o.Probe)
	if len(c.window) > paceWindow {
		c.window = c.window[len(c.window)-paceWindow:]
	}
	d.P99 = p99(c.window)
	c.since++
	switch {
	case o.LockWaits > 0:
		d.Reason = PaceLockWaits
	case d.P99 > c.target:
		d.Reason = PaceOverTarget
	case o.Active > c.active0+max(paceActiveSlack, c.active0):
		d.Reason = PaceActiveJump
	}
	switch {
	case d.Reason != "" && c.since < paceSettle && o.Probe <= paceSevere*c.target:
		d.Reason = PaceSettling
	case d.Reason != "":
		c.knee = c.rate
		c.rate = max(paceMinRate, c.rate*paceDecrease)
		// The probes so far were taken at the old rate: the next
		// decisions look at the new one's only.
		c.window, c.since = c.window[:0], 0
	case d.OldRate >= c.ceiling():
		d.Reason = PaceCeiling
	case d.P99 > time.Duration(paceHeadroom*float64(c.target)):
		d.Reason = PaceNear
	default:
		d.Reason = PaceUnder
		c.rate += c.step()
	}
	c.rate = min(c.rate, c.ceiling())
	d.NewRate, d.Batch = c.rate, c.Batch()
	return d
}

// step is the increase of one decision under target: paceIncrease well
// under the knee, paceNearIncrease near it or past it.
func (c *Controller) step() float64 {
	if c.knee > 0 && c.rate >= paceNear*c.knee {
		return paceNearIncrease
	}
	return paceIncrease
}

// Rate is the current batch rate in rows per second.
func (c *Controller) Rate() float64 { return c.rate }

// Target is the probe p99 the controller keeps under.
func (c *Controller) Target() time.Duration { return c.target }

// Batch is the batch size at the current rate: the rows of
// paceBatchSpacing, from paceMinBatch to MaxBatch (smaller batches
// spaced evenly rather than bursts).
func (c *Controller) Batch() int {
	n := int(c.rate * paceBatchSpacing.Seconds())
	return max(min(paceMinBatch, c.cfg.MaxBatch), min(n, c.cfg.MaxBatch))
}

// p99 is the 99th percentile of lat (nearest rank; 0 when empty).
func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := (len(s)*99 + 99) / 100
	return s[min(len(s), max(1, i))-1]
}
