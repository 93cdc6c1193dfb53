package reencrypt

import (
	"errors"
	"testing"
)

func TestRunBasic(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := Config{Columns: []string{"patients.email", "patients.ssn"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "hex")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 5000)
	res, err := Run(testCtx(t), Job{DSN: dsn, Config: cfg, Old: oldK, New: newK, JobID: "basic"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Reencrypted != 10000 || res.Rows != 5000 {
		t.Fatalf("reencrypted %d rows %d", res.Reencrypted, res.Rows)
	}
	checkDecrypts(t, conn, "patients", mustCipher(t, cfg, newK), 5000, "email", "ssn")
	res, err = Run(testCtx(t), Job{DSN: dsn, Config: cfg, Old: oldK, New: newK, JobID: "basic2"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reencrypted != 0 || res.AlreadyNew != 10000 {
		t.Fatalf("second run: %+v", res.Totals)
	}
	_ = errors.New
}
