package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// TestReencryptProgressStaleStats: the patients table was analyzed at 100
// rows, then 4,900 more were loaded without ANALYZE (autovacuum off for it:
// pg_class.reltuples still says 100). Without a terminal, the progress log
// lines of the rotation and of --verify carry the true total, 5,000.
func TestReencryptProgressStaleStats(t *testing.T) {
	const first, rows = 100, 5000
	p := rcNewProject(t, "atlas", first)
	p.exec(`ALTER TABLE patients SET (autovacuum_enabled = false)`)
	p.exec(`ANALYZE patients`)
	key, _ := p.envKeys()
	var src [][]any
	for i := int64(first + 1); i <= rows; i++ {
		email := fmt.Sprintf("patient%d@example.com", i)
		p.plain[i] = [2]string{email, ""}
		src = append(src, []any{i, rcSeal(t, key, email)})
	}
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"id", "email"}, pgx.CopyFromRows(src)); err != nil {
			t.Fatal(err)
		}
		var reltuples float64
		if err := conn.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE relname = 'patients'`).Scan(&reltuples); err != nil || reltuples != first {
			t.Fatalf("the statistics should still say %d rows: %v %v", first, reltuples, err)
		}
	})
	progressLine := regexp.MustCompile(`(?m)^  (re-encrypting|counting) ENCRYPTION_KEY: .* (\d+)/(\d+) rows`)
	for _, args := range [][]string{{"reencrypt", "--verify"}, {"rotate", "ENCRYPTION_KEY"}} {
		r := p.run(args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		lines := progressLine.FindAllStringSubmatch(r.stderr, -1)
		if len(lines) == 0 {
			t.Fatalf("rekey %s printed no progress line with a total:\n%s", strings.Join(args, " "), r.stderr)
		}
		for _, l := range lines {
			if l[3] != strconv.Itoa(rows) {
				t.Fatalf("rekey %s: progress total %s, want the true %d:\n%s", strings.Join(args, " "), l[3], rows, r.stderr)
			}
		}
	}
	key, _ = p.envKeys()
	p.check(key)
}
