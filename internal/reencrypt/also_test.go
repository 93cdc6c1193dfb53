package reencrypt

import (
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestRunAlso: values under one of Job.Also (a rotation's pending key, in
// a rehearsal of a data key whose rotation is not finished) are opened
// and re-encrypted to the new key like the old key's, never failures.
func TestRunAlso(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 50}
	oldK, pendK, newK := newKey32(t, "base64"), newKey32(t, "base64"), newKey32(t, "base64")
	oldC, pendC, newC := mustCipher(t, cfg, oldK), mustCipher(t, cfg, pendK), mustCipher(t, cfg, newK)
	seedTable(t, conn, "patients", cfg, oldC, 200)
	for id := int64(1); id <= 80; id++ { // moved to the pending key before the rotation stopped
		mustExec(t, conn, `UPDATE patients SET email = $1 WHERE id = $2`, string(encrypt(t, pendC, plaintextOf(id, "email"))), id)
	}
	j := job(dsn, cfg, oldK, newK, "also")
	if res, err := Run(testCtx(t), j); err == nil || res.Failed != 80 {
		t.Fatalf("without Also the pending key's values open with neither key: %v %+v", err, res)
	}
	// That run moved the rows without a pending-key value; the rest remain.
	j.Also = []rekey.Value{pendK}
	j.JobID = "also-2"
	res, err := Run(testCtx(t), j)
	if err != nil || res.Failed != 0 || res.Reencrypted != 160 {
		t.Fatalf("with Also: %v %+v", err, res)
	}
	checkDecrypts(t, conn, "patients", newC, 200, "email", "ssn")
}
