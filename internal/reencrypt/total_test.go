package reencrypt

import (
	"fmt"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestStatsStale: the rule estimateRows applies to the statistics.
func TestStatsStale(t *testing.T) {
	for _, c := range []struct {
		reltuples          float64
		relPages, curPages int64
		modified           int64
		stale              bool
	}{
		{-1, 0, 40, 0, true},          // never analyzed
		{0, 0, 0, 0, true},            // empty by them
		{100, 1, 45, 0, true},         // a bulk load since
		{10000, 100, 50, 0, true},     // half deleted and vacuumed
		{10000, 100, 105, 0, false},   // within 10%
		{10000, 100, 100, 2000, true}, // many changes in place
		{10000, 100, 100, 900, false},
	} {
		if got := statsStale(c.reltuples, c.relPages, c.curPages, c.modified); got != c.stale {
			t.Errorf("statsStale(%v, %d, %d, %d) = %v, want %v", c.reltuples, c.relPages, c.curPages, c.modified, got, c.stale)
		}
	}
}

// TestProgressTotalStaleStats: a table analyzed at 100 rows, then loaded
// with thousands more without ANALYZE (autovacuum off for it, so its
// reltuples stay 100): the totals that Run and Count report are the true
// row count, not the statistics' 100 (a bar stuck at 100%).
func TestProgressTotalStaleStats(t *testing.T) {
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 250}
	oldK, newK, oldC, _ := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, 100)
	mustExec(t, conn, `ALTER TABLE patients SET (autovacuum_enabled = false)`)
	mustExec(t, conn, `ANALYZE patients`)
	const rows = 5100
	var batch [][]any
	for id := int64(101); id <= rows; id++ {
		batch = append(batch, []any{id, cell(t, cfg, oldC, plaintextOf(id, "email")), cell(t, cfg, oldC, plaintextOf(id, "ssn"))})
	}
	for len(batch) > 0 {
		n := min(len(batch), 1000)
		args := []any{}
		sql := "INSERT INTO patients (id, email, ssn) VALUES "
		for i, r := range batch[:n] {
			if i > 0 {
				sql += ", "
			}
			sql += fmt.Sprintf("($%d, $%d, $%d)", 3*i+1, 3*i+2, 3*i+3)
			args = append(args, r...)
		}
		mustExec(t, conn, sql, args...)
		batch = batch[n:]
	}
	var reltuples float64
	if err := conn.QueryRow(testCtx(t), `SELECT reltuples FROM pg_class WHERE relname = 'patients'`).Scan(&reltuples); err != nil {
		t.Fatal(err)
	}
	if reltuples != 100 {
		t.Fatalf("the statistics should still say 100 rows, say %v", reltuples)
	}

	var totals []int64
	record := func(p Progress) { totals = append(totals, p.Total) }
	if _, err := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{oldK}, Progress: record}); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(testCtx(t), Job{DSN: dsn, Config: cfg, Old: oldK, New: newK, JobID: "stale", Progress: record}); err != nil {
		t.Fatal(err)
	}
	if len(totals) < 2*rows/250 {
		t.Fatalf("%d progress calls", len(totals))
	}
	for _, n := range totals {
		if n != rows {
			t.Fatalf("a progress total of %d, want the true %d (all: %v)", n, rows, totals)
		}
	}
}
