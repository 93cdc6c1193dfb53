package reencrypt

import (
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

const ms = time.Millisecond

// idle is a calibration window of probes at 1ms..2ms.
func idle() []PaceObservation {
	var out []PaceObservation
	for i := range 20 {
		out = append(out, PaceObservation{Probe: ms + time.Duration(i)*ms/20, Active: 1})
	}
	return out
}

func feed(c *Controller, n int, o PaceObservation) []PaceDecision {
	var ds []PaceDecision
	for range n {
		ds = append(ds, c.Observe(o))
	}
	return ds
}

func TestPaceCalibration(t *testing.T) {
	c := NewController(PaceConfig{MaxBatch: 2000})
	d := c.Calibrate(0, idle())
	if d.Reason != PaceCalibrated || d.P99 != ms+19*ms/20 || d.Target != 2*d.P99 || c.Target() != d.Target {
		t.Fatalf("calibration %v: want p99 %v and target twice that", d, ms+19*ms/20)
	}
	c = NewController(PaceConfig{Factor: 3})
	if d := c.Calibrate(0, idle()); d.Target != 3*d.P99 {
		t.Errorf("factor 3: %v", d)
	}
	c = NewController(PaceConfig{Target: 7 * ms})
	if d := c.Calibrate(0, idle()); d.Target != 7*ms {
		t.Errorf("target_p99 7ms: %v", d)
	}
	c = NewController(PaceConfig{})
	if d := c.Calibrate(0, []PaceObservation{{Probe: 100 * time.Microsecond}}); d.Target != paceMinTarget {
		t.Errorf("a very fast idle probe: target %v, want the floor %v", d.Target, paceMinTarget)
	}
}

func TestPaceBacksOffOnHighP99AndRecoversSlowly(t *testing.T) {
	c := NewController(PaceConfig{MaxBatch: 2000, StartRate: 10000})
	c.Calibrate(0, idle())
	d := c.Observe(PaceObservation{Probe: ms, Active: 1})
	if d.Reason != PaceUnder || d.NewRate != d.OldRate+paceIncrease {
		t.Fatalf("under target: %v", d)
	}
	d = c.Observe(PaceObservation{Probe: 50 * ms, Active: 1})
	if d.Reason != PaceOverTarget || d.NewRate != d.OldRate*paceDecrease || d.P99 != 50*ms {
		t.Fatalf("over target: %v", d)
	}
	knee := d.OldRate
	// Back off quickly: a long load backs off every paceSettle probes
	// (the probes in between judge the new rate), down to the floor.
	for i, d := range feed(c, 40*paceSettle, PaceObservation{Probe: 5 * ms, Active: 1}) {
		switch {
		case (i+1)%paceSettle == 0:
			if d.Reason != PaceOverTarget || d.NewRate != max(paceMinRate, d.OldRate*paceDecrease) {
				t.Fatalf("load %d: %v", i, d)
			}
		case d.Reason != PaceSettling || d.NewRate != d.OldRate:
			t.Fatalf("load %d: %v, want settling", i, d)
		}
	}
	if c.Rate() != paceMinRate {
		t.Fatalf("rate after a long load %v, want the floor %v", c.Rate(), paceMinRate)
	}
	// A probe paceSevere targets long backs off at once, settling or not.
	d = c.Observe(PaceObservation{Probe: 5 * ms, Active: 1})
	if d.Reason != PaceSettling {
		t.Fatalf("right after a back-off: %v", d)
	}
	c.rate = 1000
	if d = c.Observe(PaceObservation{Probe: paceSevere*c.Target() + 1, Active: 1}); d.Reason != PaceOverTarget || d.NewRate != 700 {
		t.Fatalf("a severe probe while settling: %v", d)
	}
	// Recover slowly: one additive step per decision under target,
	// paceIncrease then paceNearIncrease near the knee (the rate the last
	// back-off left).
	ds := feed(c, 40, PaceObservation{Probe: ms, Active: 1})
	near := 0
	for i, d := range ds {
		step := paceIncrease
		if d.OldRate >= paceNear*1000 {
			step, near = paceNearIncrease, near+1
		}
		if d.Reason != PaceUnder || d.NewRate != d.OldRate+step {
			t.Fatalf("recovery %d: %v, want +%v", i, d, step)
		}
	}
	if near == 0 || knee == 0 {
		t.Fatalf("the recovery never came near the knee: %v", ds[len(ds)-1])
	}
	// Between the headroom and the target: hold.
	d = c.Observe(PaceObservation{Probe: c.Target() - 1, Active: 1})
	if d.Reason != PaceNear || d.NewRate != d.OldRate {
		t.Fatalf("near target: %v", d)
	}
	// Batches shrink with the rate and grow back, bounded.
	if ds[0].Batch >= 2000 || ds[0].Batch < paceMinBatch || ds[39].Batch <= ds[0].Batch {
		t.Errorf("batch sizes %d → %d", ds[0].Batch, ds[39].Batch)
	}
}

func TestPaceBacksOffOnLockWaitsAndActiveJump(t *testing.T) {
	c := NewController(PaceConfig{})
	c.Calibrate(0, idle())
	d := c.Observe(PaceObservation{Probe: ms, LockWaits: 1, Active: 1})
	if d.Reason != PaceLockWaits || d.NewRate >= d.OldRate {
		t.Errorf("lock waits: %v", d)
	}
	feed(c, paceSettle, PaceObservation{Probe: ms, Active: 1})
	d = c.Observe(PaceObservation{Probe: ms, Active: 1 + paceActiveSlack})
	if d.Reason != PaceUnder {
		t.Errorf("active within slack: %v", d)
	}
	d = c.Observe(PaceObservation{Probe: ms, Active: 2 + paceActiveSlack})
	if d.Reason != PaceActiveJump || d.NewRate >= d.OldRate {
		t.Errorf("active jump: %v", d)
	}
}

func TestPaceNeverExceedsCeiling(t *testing.T) {
	c := NewController(PaceConfig{Ceiling: 3500, MaxBatch: 2000})
	if c.Rate() != 3500 {
		t.Fatalf("start rate %v above the ceiling", c.Rate())
	}
	c.Calibrate(0, idle())
	for i, d := range feed(c, 50, PaceObservation{Probe: ms}) {
		if d.NewRate > 3500 || d.Batch > 2000 {
			t.Fatalf("decision %d above the ceiling: %v", i, d)
		}
		if i > 0 && d.Reason != PaceCeiling {
			t.Fatalf("decision %d: %v, want %q", i, d, PaceCeiling)
		}
	}
	c.Observe(PaceObservation{Probe: time.Second})
	ds := feed(c, paceSettle+5, PaceObservation{Probe: ms})
	if last := ds[len(ds)-1]; last.NewRate != 3500 {
		t.Errorf("after recovery %v, want the ceiling", last)
	}
}

func TestPaceFullIgnoresProbes(t *testing.T) {
	c := NewController(PaceConfig{Full: true, Ceiling: 20000, MaxBatch: 2000})
	for _, o := range []PaceObservation{{Probe: time.Second}, {LockWaits: 5}, {Active: 100}} {
		d := c.Observe(o)
		if d.Reason != PaceFullSpeed || d.NewRate != 20000 || d.Batch != 2000 {
			t.Errorf("pace full on %+v: %v", o, d)
		}
	}
	if c := NewController(PaceConfig{Full: true}); c.Rate() != paceMaxRate {
		t.Errorf("pace full without a ceiling: %v", c.Rate())
	}
}

func TestP99(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i))
	}
	if p := p99(lat); p != 99 {
		t.Errorf("p99 of 1..100 = %v", p)
	}
	if p := p99(lat[:10]); p != 10 {
		t.Errorf("p99 of 1..10 = %v", p)
	}
	if p := p99(nil); p != 0 {
		t.Errorf("p99 of nothing = %v", p)
	}
}

func TestPaceValidate(t *testing.T) {
	ok := rekey.ReencryptSpec{Columns: []string{"t.c"}}
	for _, c := range []rekey.ReencryptSpec{{Pace: "fast"}, {TargetP99: -1}, {TargetFactor: 0.5}} {
		c.Columns = ok.Columns
		if err := Validate(c); err == nil || rekey.ErrorCode(err) != rekey.CodeInvalid {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []rekey.ReencryptSpec{ok, {Pace: rekey.PaceFull}, {Pace: rekey.PaceAdaptive, TargetFactor: 3}} {
		c.Columns = ok.Columns
		if err := Validate(c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
