package reencrypt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// forms returns the ways a 32-byte key could appear in text.
func keyForms(t testing.TB, k rekey.Value) []string {
	raw, ok := decodeKey32(k.Reveal(), true)
	if !ok {
		t.Fatal("bad test key")
	}
	return []string{k.RevealString(), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw), hex.EncodeToString(raw), string(raw)}
}

// TestHygiene: with every statement logged by the server, a run, a count
// and their errors leave no key (in any encoding) and no plaintext in the
// server log, in error messages or in the printed Job and Result; the
// server only ever sees ciphertexts.
func TestHygiene(t *testing.T) {
	cluster := testkit.Cluster(t)
	dsn, conn := newDB(t, false) // log_statement = all
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 64}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 300)
	mustExec(t, conn, `UPDATE patients SET ssn = 'corrupt' WHERE id = 7`)
	j := job(dsn, cfg, oldK, newK, "hygiene")
	res, runErr := Run(testCtx(t), j)
	if runErr == nil {
		t.Fatal("want ErrUndecryptable")
	}
	_, countErr := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{newK, oldK}})
	if countErr != nil {
		t.Fatal(countErr)
	}
	// Errors with keys involved.
	var errs []error
	_, err := Run(testCtx(t), job(dsn, cfg, rekey.NewValueString(newK.RevealString()[:20]), newK, "x"))
	errs = append(errs, err)
	_, err = Run(testCtx(t), job(strings.Replace(dsn, cluster.SuperPassword, "wrong-"+cluster.SuperPassword[:6], 1), cfg, oldK, newK, "x"))
	errs = append(errs, err)
	_, err = Run(testCtx(t), job("postgres://u:sekrit-pass@[::1", cfg, oldK, newK, "x"))
	errs = append(errs, err)

	for _, e := range errs {
		t.Logf("%v (hint: %s)", e, rekey.ErrorHint(e))
	}
	log, err := cluster.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	resJSON, _ := json.Marshal(res)
	printed := fmt.Sprintf("%v %+v %#v %s %v", j, j, j, resJSON, CountJob{DSN: dsn, Keys: []rekey.Value{oldK}})
	var texts = map[string][]byte{"server log": log, "printed job and result": []byte(printed)}
	for i, e := range append(errs, runErr) {
		if e == nil {
			t.Fatalf("error %d: nil", i)
		}
		texts[fmt.Sprintf("error %d", i)] = []byte(e.Error() + " " + rekey.ErrorHint(e))
	}
	secrets := append(keyForms(t, oldK), keyForms(t, newK)...)
	secrets = append(secrets, cluster.SuperPassword, "sekrit-pass")
	for id := int64(1); id <= 300; id++ {
		secrets = append(secrets, plaintextOf(id, "email"), plaintextOf(id, "ssn"))
	}
	for name, text := range texts {
		for _, s := range secrets {
			if name == "server log" && s == cluster.SuperPassword {
				continue
			}
			if bytes.Contains(text, []byte(s)) {
				t.Errorf("%s contains secret material (%d bytes)", name, len(s))
			}
		}
	}
	if !bytes.Contains(log, []byte("UPDATE")) {
		t.Fatal("the server log has no statements: the test is not testing")
	}
}
