package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/reencrypt"
)

func TestRowProgress(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	// Not a terminal: the first call prints, then at most one line per interval.
	var log bytes.Buffer
	p := rowProgress(&log, false, "re-encrypting ENCRYPTION_KEY", clock, 10*time.Second, func() { t.Fatal("opened a line on a log") })
	p(reencrypt.Progress{Done: 2000, Total: 10000, RowsPerSecond: 1000})
	now = now.Add(5 * time.Second)
	p(reencrypt.Progress{Done: 4000, Total: 10000, RowsPerSecond: 1000})
	now = now.Add(6 * time.Second)
	p(reencrypt.Progress{Done: 9000, Total: 10000, RowsPerSecond: 1000})
	want := "  re-encrypting ENCRYPTION_KEY: [####................] 2000/10000 rows (20%), 1000 rows/s, ETA 8s\n" +
		"  re-encrypting ENCRYPTION_KEY: [##################..] 9000/10000 rows (90%), 1000 rows/s, ETA 1s\n"
	if log.String() != want {
		t.Fatalf("log lines:\n%q\nwant\n%q", log.String(), want)
	}
	// A terminal: every call redraws the line in place.
	var tty bytes.Buffer
	opened := 0
	p = rowProgress(&tty, true, "counting", clock, 10*time.Second, func() { opened++ })
	p(reencrypt.Progress{Done: 10})
	p(reencrypt.Progress{Done: 20})
	if got := tty.String(); got != "\r\033[K  counting: 10 rows\r\033[K  counting: 20 rows" || opened != 2 {
		t.Fatalf("terminal output %q (opened %d)", got, opened)
	}
	if strings.Contains(tty.String(), "\n") {
		t.Fatal("a terminal progress line ended with a newline")
	}
}
