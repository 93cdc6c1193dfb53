package reencrypt

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestRehearse: on both copy paths — CREATE DATABASE ... TEMPLATE when
// nobody else is connected, pg_dump | pg_restore when someone is — the
// whole re-encryption runs on a copy, the figures come back (rows, table
// growth), the copy is dropped, and the source is untouched. Corrupt rows
// are reported by the rehearsal as by Run.
func TestRehearse(t *testing.T) {
	c := testkit.Cluster(t)
	for _, tc := range []struct {
		name, method  string
		stayConnected bool
	}{
		{"template", CopyTemplate, false},
		{"dump", CopyDump, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, conn := newDB(t, true)
			cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 500}
			oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
			oldC := mustCipher(t, cfg, oldK)
			seedTable(t, conn, "patients", cfg, oldC, 5000)
			mustExec(t, conn, `UPDATE patients SET email = 'corrupt' WHERE id = 4242`)
			before := readAll(t, conn, "patients", "email", "ssn")
			if !tc.stayConnected {
				conn.Close(context.Background())
			}
			rh, err := Rehearse(testCtx(t), job(dsn, cfg, oldK, newK, "rh/"+tc.name))
			if tc.method == CopyDump && dumpRefused(t, c, err, "stop the sessions on the database") {
				return // no pg_dump for this server's version: refused, saying why and what to do
			}
			if !errors.Is(err, ErrUndecryptable) {
				t.Fatalf("err = %v", err)
			}
			if rh.Method != tc.method || rh.Result == nil || rh.Result.Reencrypted != 9998 || rh.Result.Held != 1 || rh.Result.Failed != 1 ||
				rh.Result.Failures[0].Key[0].Value != "4242" || rh.CopyTime <= 0 || rh.RunTime <= 0 {
				t.Fatalf("%+v %+v", rh, rh.Result)
			}
			if len(rh.Tables) != 1 || rh.Tables[0].Table != "public.patients" || rh.Tables[0].Before <= 0 || rh.Tables[0].After <= rh.Tables[0].Before {
				t.Fatalf("growth %+v", rh.Tables)
			}
			t.Logf("%s: copy %s, run %s, %s %d → %d bytes", rh.Method, rh.CopyTime, rh.RunTime, rh.Tables[0].Table, rh.Tables[0].Before, rh.Tables[0].After)
			admin, err := c.Connect(testCtx(t), "")
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(context.Background())
			var copies int
			admin.QueryRow(testCtx(t), `SELECT count(*) FROM pg_database WHERE datname LIKE 'rekey_rehearsal_%'`).Scan(&copies)
			if copies != 0 {
				t.Fatalf("%d rehearsal databases left", copies)
			}
			if !tc.stayConnected {
				if conn, err = pgx.Connect(testCtx(t), dsn); err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
			}
			after := readAll(t, conn, "patients", "email", "ssn")
			for id, v := range before {
				if string(after[id][0]) != string(v[0]) || string(after[id][1]) != string(v[1]) {
					t.Fatalf("row %d of the source changed", id)
				}
			}
		})
	}
	// A table that does not exist: found before any copy is made (and a
	// failure after the copy drops it: the run's errors go through the
	// same path).
	dsn, _ := newDB(t, true)
	_, err := Rehearse(testCtx(t), job(dsn, rekey.ReencryptSpec{Columns: []string{"nope.c"}}, newKey32(t, "base64"), newKey32(t, "base64"), "rh-fail"))
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v", err)
	}
	admin, _ := c.Connect(testCtx(t), "")
	defer admin.Close(context.Background())
	var copies int
	admin.QueryRow(testCtx(t), `SELECT count(*) FROM pg_database WHERE datname LIKE 'rekey_rehearsal_%'`).Scan(&copies)
	if copies != 0 {
		t.Fatalf("%d rehearsal databases left after a failure", copies)
	}
}
