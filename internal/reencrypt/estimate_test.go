package reencrypt

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// rowVersions is every row's (ctid, xmin) of table, in key order: a write
// of any row changes it.
func rowVersions(t testing.TB, conn *pgx.Conn, table string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(testCtx(t), `SELECT string_agg(ctid::text || ':' || xmin::text, ',' ORDER BY id) FROM `+quoteIdent(table)).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEstimateRun: rows, heap and index bytes as the catalog has them,
// the sample's width as PostgreSQL measures it, the indexes that cover an
// encrypted column (as a column or in an expression: no HOT update), the
// model's parts from those figures, a time bound from rows_per_second;
// and nothing written: every row keeps its version, no checkpoint table.
func TestEstimateRun(t *testing.T) {
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn", "visits.email"}, RowsPerSecond: 1000}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	oldC := mustCipher(t, cfg, oldK)
	seedTable(t, conn, "patients", cfg, oldC, 5000)
	seedTable(t, conn, "visits", cfg, oldC, 3000)
	mustExec(t, conn, `CREATE INDEX visits_email ON visits (lower(email))`)
	mustExec(t, conn, `ANALYZE patients`)
	before := map[string]string{"patients": rowVersions(t, conn, "patients"), "visits": rowVersions(t, conn, "visits")}

	est, err := EstimateRun(testCtx(t), job(dsn, cfg, oldK, newK, "estimate"))
	if err != nil {
		t.Fatal(err)
	}
	if len(est.Tables) != 2 || est.FullPageWrites || est.RowsPerSecond != 1000 { // the test clusters run with full_page_writes off
		t.Fatalf("%+v", est)
	}
	for i, tc := range []struct {
		table          string
		rows           int64
		indexes, onEnc int
		maxHOT         float64
	}{
		// Loaded pages are nearly full: little room for a new version
		// (how little differs between majors: 0 on 15, about 0.1 on 16+).
		{"patients", 5000, 1, 0, 0.25},
		{"visits", 3000, 2, 1, 0}, // an index on an encrypted column: never HOT
	} {
		te := est.Tables[i]
		var heap, idx int64
		var avg float64
		if err := conn.QueryRow(testCtx(t), `SELECT pg_relation_size($1::regclass), pg_indexes_size($1::regclass),
			(SELECT avg(pg_column_size(s.*)) FROM (SELECT * FROM `+quoteIdent(tc.table)+` ORDER BY id LIMIT 2000) s)::float8`, tc.table).Scan(&heap, &idx, &avg); err != nil {
			t.Fatal(err)
		}
		if te.Table != "public."+tc.table || te.Rows != tc.rows || te.HeapBytes != heap || te.IndexBytes != idx ||
			te.Indexes != tc.indexes || te.EncryptedIndexes != tc.onEnc || te.SampleRows != 2000 || te.AvgRowBytes != avg ||
			te.NewRowBytes != avg || te.WriteFraction != 1 || te.HOTFraction < 0 || te.HOTFraction > tc.maxHOT {
			t.Fatalf("%s: %+v (heap %d, indexes %d, width %.1f)", tc.table, te, heap, idx, avg)
		}
		nonHOT := float64(tc.rows) * (1 - te.HOTFraction)
		want := WALModel{
			Tuples:       int64(float64(tc.rows) * (avg + heapRecordBytes)),
			IndexEntries: int64(nonHOT * (float64(idx)/float64(tc.rows) + float64(tc.indexes*indexRecordBytes))),
			IndexSplits:  int64(float64(idx) / 2 * nonHOT / float64(tc.rows)),
		}
		if te.WAL != want {
			t.Fatalf("%s: model %+v, want %+v", tc.table, te.WAL, want)
		}
		if te.SampleTime <= 0 || te.ReadCryptoRowsPerSecond <= 0 || te.MinTime != time.Duration(tc.rows)*time.Millisecond {
			t.Fatalf("%s: sample %s, %.0f rows/s, at least %s", tc.table, te.SampleTime, te.ReadCryptoRowsPerSecond, te.MinTime)
		}
		t.Logf("%s: %+v", tc.table, te)
	}
	if est.WALBytes() != est.Tables[0].WAL.Total()+est.Tables[1].WAL.Total() {
		t.Fatal("WALBytes is not the sum of the tables' models")
	}
	for table, v := range before {
		if rowVersions(t, conn, table) != v {
			t.Fatalf("a row of %s was written by the estimate", table)
		}
	}
	checkNoCheckpointTable(t, conn)
	checkDecrypts(t, conn, "patients", oldC, 5000, "email", "ssn")

	// Free space on the pages (fillfactor 50, loaded then rewritten by
	// VACUUM FULL): the model counts HOT updates, no index entry for them.
	mustExec(t, conn, `ALTER TABLE patients SET (fillfactor = 50)`)
	mustExec(t, conn, `VACUUM FULL patients`)
	est, err = EstimateRun(testCtx(t), job(dsn, onlyColumns(cfg, "patients.email"), oldK, newK, "estimate"))
	if err != nil {
		t.Fatal(err)
	}
	if te := est.Tables[0]; te.HOTFraction != 1 || te.WAL.IndexEntries != 0 || te.WAL.IndexSplits != 0 {
		t.Fatalf("fillfactor 50: %+v", te)
	}
}

// onlyColumns is cfg re-encrypting only cols.
func onlyColumns(cfg rekey.ReencryptSpec, cols ...string) rekey.ReencryptSpec {
	cfg.Columns = cols
	return cfg
}

// TestEstimateModelAgainstRun checks the WAL model against the WAL a run
// writes (pg_current_wal_lsn before and after), with full_page_writes on
// and a checkpoint before the run (the pages of a table loaded long ago):
// a table whose updates are non-HOT because an index covers an encrypted
// column, and one without. The measure must be within 0.5×–2× of the
// model: a check of the model, not of the speed.
func TestEstimateModelAgainstRun(t *testing.T) {
	c := testkit.StartCluster(t) // its own: full_page_writes on, and no other test's WAL in the measure
	testkit.Exec(t, c, `ALTER SYSTEM SET full_page_writes = on`, `SELECT pg_reload_conf()`)
	if err := c.CreateDatabase("wal"); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(testCtx(t), "wal")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	dsn := c.SuperConnString("wal")
	cfg := rekey.ReencryptSpec{Columns: []string{"plain.email", "plain.ssn", "indexed.email"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	oldC := mustCipher(t, cfg, oldK)
	seedTable(t, conn, "plain", cfg, oldC, 20000)
	seedTable(t, conn, "indexed", cfg, oldC, 20000)
	mustExec(t, conn, `CREATE INDEX indexed_email ON indexed (email)`)
	for _, table := range []string{"plain", "indexed"} {
		tcfg := onlyColumns(cfg, "plain.email", "plain.ssn")
		if table == "indexed" {
			tcfg = onlyColumns(cfg, "indexed.email")
		}
		mustExec(t, conn, `VACUUM ANALYZE `+table) // hint bits and the visibility map set: the run's reads write nothing
		est, err := EstimateRun(testCtx(t), job(dsn, tcfg, oldK, newK, "model-"+table))
		if err != nil {
			t.Fatal(err)
		}
		if !est.FullPageWrites || len(est.Tables) != 1 || est.Tables[0].WAL.FullPageImages < est.Tables[0].HeapBytes {
			t.Fatalf("%s: %+v", table, est)
		}
		mustExec(t, conn, `CHECKPOINT`)
		var lsn0 string
		if err := conn.QueryRow(testCtx(t), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn0); err != nil {
			t.Fatal(err)
		}
		res, err := Run(testCtx(t), job(dsn, tcfg, oldK, newK, "model-"+table))
		if err != nil || res.Rows != 20000 {
			t.Fatalf("%s: %v %+v", table, err, res)
		}
		var measured int64
		if err := conn.QueryRow(testCtx(t), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint`, lsn0).Scan(&measured); err != nil {
			t.Fatal(err)
		}
		te := est.Tables[0]
		model := te.WAL.Total()
		t.Logf("%s: measured %d bytes of WAL, model %d (%+v), HOT %.2f, %d rows of %.0f bytes, heap %d, indexes %d",
			table, measured, model, te.WAL, te.HOTFraction, te.Rows, te.AvgRowBytes, te.HeapBytes, te.IndexBytes)
		if ratio := float64(measured) / float64(model); ratio < 0.5 || ratio > 2 {
			t.Fatalf("%s: measured %d bytes of WAL, the model says %d (×%.2f): outside 0.5×–2×", table, measured, model, ratio)
		}
	}
}

// TestRehearseWAL: a rehearsal measures the WAL of its run on the copy and
// carries the model's estimate (made on the source) beside it; the test
// cluster runs with full_page_writes off, so the model has no full-page
// images, and the measure (the whole server's WAL: at least the run's)
// is at least half the model.
func TestRehearseWAL(t *testing.T) {
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 5000)
	conn.Close(context.Background())
	rh, err := Rehearse(testCtx(t), job(dsn, cfg, oldK, newK, "rh-wal"))
	if err != nil {
		t.Fatal(err)
	}
	if rh.EstimateErr != nil || rh.Estimate == nil || len(rh.Estimate.Tables) != 1 || rh.Estimate.Tables[0].Rows != 5000 || rh.Estimate.Tables[0].WAL.FullPageImages != 0 {
		t.Fatalf("estimate %+v (%v)", rh.Estimate, rh.EstimateErr)
	}
	model := rh.Estimate.WALBytes()
	t.Logf("rehearsal: %d bytes of WAL measured, %d modelled (%+v)", rh.WALBytes, model, rh.Estimate.Tables[0].WAL)
	if rh.WALBytes < model/2 {
		t.Fatalf("rehearsal: %d bytes of WAL measured, the model says %d", rh.WALBytes, model)
	}
}
