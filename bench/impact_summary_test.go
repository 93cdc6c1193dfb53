package bench

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// TestImpactSummarize checks the load client's arithmetic on made-up
// records: an operation counts in the phase it was due in (latency and
// errors), its completion in the phase it finished in (achieved rate).
func TestImpactSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	starts := []time.Time{t0, t0.Add(time.Second), t0.Add(3 * time.Second)}
	var recs []opRecord
	for i := range 100 { // phase 0: 100 ops of 1..100 ms, all done in phase 0
		recs = append(recs, opRecord{phase: 0, done: t0.Add(time.Duration(i) * time.Millisecond), lat: time.Duration(i+1) * time.Millisecond})
	}
	// Phase 1: 10 ops, one failed write, one done after the end (a stall).
	for i := range 10 {
		r := opRecord{phase: 1, done: t0.Add(2 * time.Second), lat: 2 * time.Millisecond}
		if i == 0 {
			r.err, r.write = true, true
		}
		if i == 9 {
			r.done, r.lat, r.queued = t0.Add(4*time.Second), 1500*time.Millisecond, 7
		}
		recs = append(recs, r)
	}
	got := summarize([]string{"a", "b"}, starts, recs)
	a, b := got[0], got[1]
	if a.Name != "a" || a.Scheduled != 100 || a.Completed != 100 || a.P50 != 51 || a.P99 != 100 || a.Max != 100 || a.Rate != 100 || a.P99Read != 100 || a.P99Write != 0 {
		t.Errorf("phase a = %+v", a)
	}
	if b.Scheduled != 10 || b.Completed != 9 || b.Errors != 1 || b.Writes != 1 || b.Max != 1500 || b.P50 != 2 || b.Seconds != 2 || b.Rate != 4.5 ||
		b.P99Read != 1500 || b.P99Write != 2 || b.MaxQueued != 7 || a.MaxQueued != 0 {
		t.Errorf("phase b = %+v", b)
	}
}

// TestImpactLoadClientStdin checks that a malformed phase line is refused
// with the line and the expected form, before any database work is
// needed from the phases (the client is given no connections).
func TestImpactLoadClientStdin(t *testing.T) {
	for _, line := range []string{"phase x", "phase x 2", "go"} {
		_, err := runLoadClient(loadClientSpec{Rows: 10, Rate: 10, Keys: []string{"k0", "k1"}}, bufio.NewScanner(strings.NewReader(line+"\n")))
		if err == nil || !strings.Contains(err.Error(), line) {
			t.Errorf("%q: err = %v, want one naming the line", line, err)
		}
	}
}
