package main

import (
	"strings"
	"testing"
)

// TestReencryptAdaptiveNarrated: rotating a data key over a table large
// enough to pace (more than reencrypt.DefaultPaceMinRows rows) narrates
// the adaptive pace's calibration and ends with every row on the new key.
func TestReencryptAdaptiveNarrated(t *testing.T) {
	p := rcNewProject(t, "atlas", 6000)
	r := p.run("rotate", "ENCRYPTION_KEY")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	key, _ := p.envKeys()
	p.check(key)
	if !strings.Contains(r.stderr, "adaptive pace on public.patients: the probe's p99 was ") || !strings.Contains(r.stderr, "(target_p99), starting at 5000 rows/s") {
		t.Errorf("no calibration line:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, key) || strings.Contains(r.stdout, key) {
		t.Fatal("the key appears in rekey's output")
	}
}
