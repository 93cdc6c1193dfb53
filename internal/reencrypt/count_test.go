package reencrypt

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestCount: per column, values under each key, under none, and NULL or
// empty, from one snapshot; a key with zero values is the signal that it
// may be pruned.
func TestCount(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn", "notes.body"}, BatchSize: 33, KeyID: true}
	k1, k2, k3 := newKey32(t, "base64"), newKey32(t, "hex"), newKey32(t, "base64url")
	c1, c2 := mustCipher(t, cfg, k1), mustCipher(t, rekey.ReencryptSpec{}, k2) // k2's values have no header
	seedTable(t, conn, "patients", cfg, c1, 500)
	mustExec(t, conn, `UPDATE patients SET email = $1 WHERE id <= 120`, string(encrypt(t, c2, "x")))
	mustExec(t, conn, `UPDATE patients SET email = 'garbage' WHERE id BETWEEN 121 AND 127`)
	mustExec(t, conn, `UPDATE patients SET email = NULL WHERE id BETWEEN 128 AND 130`)
	mustExec(t, conn, `UPDATE patients SET ssn = '' WHERE id > 490`)
	mustExec(t, conn, `CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	mustExec(t, conn, `INSERT INTO notes VALUES (1, $1), (2, NULL)`, string(encrypt(t, c2, "n")))

	var calls int
	c, err := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{k1, k2, k3}, Progress: func(Progress) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	want := []ColumnCount{
		{Table: "public.patients", Column: "email", ByKey: []int64{370, 120, 0}, Neither: 7, Empty: 3},
		{Table: "public.patients", Column: "ssn", ByKey: []int64{490, 0, 0}, Empty: 10},
		{Table: "public.notes", Column: "body", ByKey: []int64{0, 1, 0}, Empty: 1},
	}
	if fmt.Sprint(c.Columns) != fmt.Sprint(want) || c.Rows != 502 {
		t.Fatalf("got  %+v\nwant %+v", c.Columns, want)
	}
	if c.ByKey(0) != 860 || c.ByKey(1) != 121 || c.ByKey(2) != 0 || c.Neither() != 7 {
		t.Fatalf("totals %d %d %d %d", c.ByKey(0), c.ByKey(1), c.ByKey(2), c.Neither())
	}
	if calls < 16 { // one per batch: 16 of patients, 1 of notes
		t.Fatalf("%d progress calls", calls)
	}
	if _, err := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("no keys: %v", err)
	}
}
