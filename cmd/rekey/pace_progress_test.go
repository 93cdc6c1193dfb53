package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// TestRowProgressPace: an adaptive run's progress line shows its pace and
// the probe's p99; a run at full pace shows neither.
func TestRowProgressPace(t *testing.T) {
	var out bytes.Buffer
	p := rowProgress(&out, true, "re-encrypting K", time.Now, time.Second, func() {})
	p(reencrypt.Progress{Done: 10, Total: 20, RowsPerSecond: 10, Pace: 4000, ProbeP99: 1234567 * time.Nanosecond})
	want := "\r\033[K  re-encrypting K: [##########..........] 10/20 rows (50%), 10 rows/s, ETA 1s, pace 4000 rows/s (probe p99 1.23ms)"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
	out.Reset()
	p(reencrypt.Progress{Done: 10, Total: 20, RowsPerSecond: 10})
	if bytes.Contains(out.Bytes(), []byte("pace")) {
		t.Fatalf("full pace: %q", out.String())
	}
}
