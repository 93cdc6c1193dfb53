package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestScanProgressPrinter(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	var buf bytes.Buffer
	progress, done := progressPrinter(&buf, clock, time.Second)
	progress(1<<20, 10<<20) // before the first interval: silent
	done()
	if buf.Len() != 0 {
		t.Fatalf("short scan printed %q", buf.String())
	}
	progress, done = progressPrinter(&buf, clock, time.Second)
	now = now.Add(1500 * time.Millisecond)
	progress(3<<20, 10<<20)
	progress(4<<20, 10<<20) // same interval: silent
	now = now.Add(time.Second)
	progress(5<<20, 10<<20)
	done()
	if got := buf.String(); got != "\rrekey: scanned 3 MB of 10 MB\rrekey: scanned 5 MB of 10 MB\n" {
		t.Fatalf("progress = %q", got)
	}
	if strings.Count(buf.String(), "scanned") != 2 {
		t.Fatal("throttling")
	}
}
