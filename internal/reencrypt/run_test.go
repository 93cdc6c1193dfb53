package reencrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func flipChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func job(dsn string, cfg rekey.ReencryptSpec, oldK, newK rekey.Value, id string) Job {
	return Job{DSN: dsn, Config: cfg, Old: oldK, New: newK, JobID: id}
}

// TestRunBasic: every value moves to the new key and decrypts to its
// plaintext; a second run finds them all on the new key and writes
// nothing; the checkpoint table is gone afterwards.
func TestRunBasic(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 700}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "hex")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 5000)
	// A large (TOASTed) value.
	big := strings.Repeat("0123456789abcdef", 8192)
	mustExec(t, conn, `UPDATE patients SET name = $1 WHERE id = 77`, string(encrypt(t, mustCipher(t, cfg, oldK), big)))
	var calls int
	var last Progress
	j := job(dsn, cfg, oldK, newK, "basic")
	j.Progress = func(p Progress) { calls++; last = p }
	res, err := Run(testCtx(t), j)
	if err != nil {
		t.Fatal(err)
	}
	want := Totals{Rows: 5000, Reencrypted: 10000}
	if res.Totals != want || len(res.Tables) != 1 || res.Tables[0].Totals != want {
		t.Fatalf("totals %+v, want %+v", res.Totals, want)
	}
	if res.Tables[0].Table != "public.patients" || !reflect.DeepEqual(res.Tables[0].Key, []string{"id"}) || res.Resumed {
		t.Fatalf("%+v", res.Tables[0])
	}
	if calls != 8 || last.Done != 5000 || last.Total != 5000 || last.Table != "public.patients" {
		t.Fatalf("progress: %d calls, last %+v", calls, last)
	}
	checkDecrypts(t, conn, "patients", mustCipher(t, cfg, newK), 5000, "email", "ssn")
	checkNoCheckpointTable(t, conn)
	bigCfg := cfg
	bigCfg.Columns = []string{"patients.name"}
	if res, err := Run(testCtx(t), job(dsn, bigCfg, oldK, newK, "big")); err == nil || res.Reencrypted != 1 || res.Failed != 4999 || len(res.Failures) != MaxFailures {
		t.Fatalf("big value: %v %+v", err, res)
	}
	if v := readAll(t, conn, "patients", "name")[77][0]; v == nil {
		t.Fatal("no big value")
	} else if pt, err := mustCipher(t, cfg, newK).Decrypt(v); err != nil || string(pt) != big {
		t.Fatalf("big value: %v", err)
	}

	res, err = Run(testCtx(t), job(dsn, cfg, oldK, newK, "basic-again"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Totals{Rows: 5000, AlreadyNew: 10000}); res.Totals != want {
		t.Fatalf("second run: %+v", res.Totals)
	}
	// Other names of the same keys are the same keys.
	if _, err := Run(testCtx(t), job(dsn, cfg, newK, newK, "same")); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("same keys: %v", err)
	}
}

func checkNoCheckpointTable(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	var exists bool
	if err := conn.QueryRow(testCtx(t), `SELECT to_regclass('rekey_reencrypt_checkpoint') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("the checkpoint table is still there")
	}
}

// TestRunEncodingsAndCodecs: every codec × encoding (and the key-id
// header) over a real table: values move to the new key, NULL and empty
// values stay as they are.
func TestRunEncodingsAndCodecs(t *testing.T) {
	dsn, conn := newDB(t, true)
	for i, cfg := range codecConfigs() {
		table := fmt.Sprintf("t%d", i)
		cfg.Columns = []string{table + ".email", table + ".ssn"}
		cfg.BatchSize = 64
		oldK, newK := keyFor(t, cfg.Codec), keyFor(t, cfg.Codec)
		oldC, newC := mustCipher(t, cfg, oldK), mustCipher(t, cfg, newK)
		seedTable(t, conn, table, cfg, oldC, 300)
		empty := "''"
		if normalized(cfg).Encoding == EncodingBytea {
			empty = "''::bytea"
		}
		mustExec(t, conn, fmt.Sprintf("UPDATE %s SET email = NULL WHERE id %% 10 = 0", table))
		mustExec(t, conn, fmt.Sprintf("UPDATE %s SET ssn = %s WHERE id %% 10 = 1", table, empty))
		before := readAll(t, conn, table, "email", "ssn")
		res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "codecs"))
		name := fmt.Sprintf("%s/%s/keyid=%t", cfg.Codec, normalized(cfg).Encoding, cfg.KeyID)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := (Totals{Rows: 300, Reencrypted: 540, Empty: 60}); res.Totals != want {
			t.Fatalf("%s: %+v", name, res.Totals)
		}
		after := readAll(t, conn, table, "email", "ssn")
		for id, vals := range after {
			for c, v := range vals {
				col := []string{"email", "ssn"}[c]
				switch {
				case c == 0 && id%10 == 0:
					if v != nil {
						t.Fatalf("%s: NULL became %q", name, v)
					}
				case c == 1 && id%10 == 1:
					if v == nil || len(v) != 0 {
						t.Fatalf("%s: empty became %q", name, v)
					}
				default:
					if bytes.Equal(v, before[id][c]) {
						t.Fatalf("%s: row %d %s unchanged", name, id, col)
					}
					pt, err := newC.Decrypt(v)
					if err != nil || string(pt) != plaintextOf(id, col) {
						t.Fatalf("%s: row %d %s: %v", name, id, col, err)
					}
					if cfg.KeyID != bytes.HasPrefix(decodeForTest(t, cfg, v), []byte(headerMagic)) {
						t.Fatalf("%s: key-id header presence wrong", name)
					}
				}
			}
		}
	}
}

func decodeForTest(t testing.TB, cfg rekey.ReencryptSpec, v []byte) []byte {
	raw, _, err := decodeStored(normalized(cfg).Encoding, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestRunCompositeAndNamedKeys: a composite primary key (text, int)
// across schemas, and a table without primary key whose key columns are
// named in the config (covered by a unique index).
func TestRunCompositeAndNamedKeys(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Encoding: EncodingHex, BatchSize: 7, Columns: []string{
		"app.accounts.token", "notes(tenant, n).body",
	}}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	mustExec(t, conn, `CREATE SCHEMA app`)
	mustExec(t, conn, `CREATE TABLE app.accounts (tenant text, id int, token text, PRIMARY KEY (tenant, id))`)
	mustExec(t, conn, `CREATE TABLE notes (tenant text NOT NULL, n bigint NOT NULL, body varchar(500))`)
	mustExec(t, conn, `CREATE UNIQUE INDEX ON notes (n, tenant)`)
	tenants := []string{"acme", "Ünïcode", "o'brien", "a,b", ""}
	for _, tn := range tenants {
		for id := 1; id <= 20; id++ {
			mustExec(t, conn, `INSERT INTO app.accounts VALUES ($1, $2, $3)`, tn, id, string(encrypt(t, oldC, tn+fmt.Sprint(id))))
			mustExec(t, conn, `INSERT INTO notes VALUES ($1, $2, $3)`, tn, id, string(encrypt(t, oldC, "note"+tn+fmt.Sprint(id))))
		}
	}
	res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "composite"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reencrypted != 200 || res.Rows != 200 {
		t.Fatalf("%+v", res.Totals)
	}
	if !reflect.DeepEqual(res.Tables[0].Key, []string{"tenant", "id"}) || !reflect.DeepEqual(res.Tables[1].Key, []string{"tenant", "n"}) {
		t.Fatalf("keys %v %v", res.Tables[0].Key, res.Tables[1].Key)
	}
	rows, _ := conn.Query(testCtx(t), `SELECT tenant, id::text, token FROM app.accounts UNION ALL SELECT tenant, 'note'||n::text, body FROM notes`)
	n := 0
	for rows.Next() {
		var tn, id, v string
		if err := rows.Scan(&tn, &id, &v); err != nil {
			t.Fatal(err)
		}
		pt, err := newC.Decrypt([]byte(v))
		want := tn + id
		if strings.HasPrefix(id, "note") {
			want = "note" + tn + strings.TrimPrefix(id, "note")
		}
		if err != nil || string(pt) != want {
			t.Fatalf("%s %s: %q %v", tn, id, pt, err)
		}
		n++
	}
	if n != 200 {
		t.Fatalf("%d rows", n)
	}

	// Key columns must identify a row.
	mustExec(t, conn, `CREATE TABLE loose (a int NOT NULL, c text)`)
	mustExec(t, conn, `CREATE TABLE nullable (a int UNIQUE, c text)`)
	for cols, want := range map[string]string{
		"loose.c":         "no primary key",
		"loose(a).c":      "no unique index",
		"nullable(a).c":   "may be NULL",
		"missing.c":       "not found",
		"notes.nope":      "not found",
		"notes(nope).b":   "not found",
		"notes(n).body":   "no unique index",
		"app.accounts.id": "needs a text or varchar column",
	} {
		_, err := Run(testCtx(t), job(dsn, rekey.ReencryptSpec{Columns: []string{cols}}, oldK, newK, "bad"))
		if err == nil || !strings.Contains(err.Error()+rekey.ErrorHint(err), want) {
			t.Errorf("%s: %v, want %q", cols, err, want)
		}
	}
	if _, err := Run(testCtx(t), job(dsn, rekey.ReencryptSpec{Encoding: EncodingBytea, Columns: []string{"notes(tenant,n).body"}}, oldK, newK, "bad")); err == nil || !strings.Contains(err.Error(), "needs a bytea column") {
		t.Errorf("bytea on varchar: %v", err)
	}
}

// TestRunPartitioned: a partitioned table (rows found by key, not ctid).
func TestRunPartitioned(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"events.payload"}, BatchSize: 50}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	mustExec(t, conn, `CREATE TABLE events (id bigint PRIMARY KEY, payload text) PARTITION BY RANGE (id)`)
	mustExec(t, conn, `CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (100)`)
	mustExec(t, conn, `CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (100) TO (1000)`)
	for i := 1; i < 300; i++ {
		mustExec(t, conn, `INSERT INTO events VALUES ($1, $2)`, i, string(encrypt(t, oldC, plaintextOf(int64(i), "payload"))))
	}
	res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "parts"))
	if err != nil || res.Reencrypted != 299 {
		t.Fatalf("%v %+v", err, res)
	}
	checkDecrypts(t, conn, "events", newC, 299, "payload")
}

// TestRunCorruptRows: values that open with neither key are reported
// (table, key, column) and their rows left byte-identical (even the other,
// good column of such a row); the rest is re-encrypted and Run returns
// ErrUndecryptable.
func TestRunCorruptRows(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 100}
	oldK, newK, otherK := newKey32(t, "base64"), newKey32(t, "base64"), newKey32(t, "base64")
	oldC, newC := mustCipher(t, cfg, oldK), mustCipher(t, cfg, newK)
	seedTable(t, conn, "patients", cfg, oldC, 1000)
	good := string(encrypt(t, oldC, "x"))
	planted := map[int64]string{
		17:  "not base64 at all!",
		250: string(encrypt(t, mustCipher(t, cfg, otherK), "wrong key")),
		499: good[:len(good)-4],                                 // truncated
		500: base64.StdEncoding.EncodeToString([]byte("short")), // too short for a nonce and a tag
		999: flipChar(good, 20),                                 // one character changed
		998: "   " + good,                                       // whitespace
	}
	for id, v := range planted {
		mustExec(t, conn, `UPDATE patients SET ssn = $1 WHERE id = $2`, v, id)
	}
	before := readAll(t, conn, "patients", "email", "ssn")
	var ctids = map[int64]string{}
	rows, _ := conn.Query(testCtx(t), `SELECT id, ctid::text FROM patients`)
	for rows.Next() {
		var id int64
		var c string
		rows.Scan(&id, &c)
		ctids[id] = c
	}

	res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "corrupt"))
	if !errors.Is(err, ErrUndecryptable) || rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "6 value(s) in public.patients") {
		t.Fatalf("message: %v", err)
	}
	if res.Failed != 6 || res.Held != 6 || res.Reencrypted != 2*1000-12 || len(res.Failures) != 6 {
		t.Fatalf("%+v", res.Totals)
	}
	for _, f := range res.Failures {
		var id int64
		fmt.Sscan(f.Key[0].Value, &id)
		if _, ok := planted[id]; !ok || f.Table != "public.patients" || f.Column != "ssn" || f.Key[0].Column != "id" {
			t.Fatalf("failure %+v", f)
		}
		if s := f.String(); s != fmt.Sprintf("public.patients (id)=(%d) column ssn", id) {
			t.Fatalf("String() = %q", s)
		}
	}
	after := readAll(t, conn, "patients", "email", "ssn")
	rows, _ = conn.Query(testCtx(t), `SELECT id, ctid::text FROM patients`)
	for rows.Next() {
		var id int64
		var c string
		rows.Scan(&id, &c)
		if _, bad := planted[id]; bad && c != ctids[id] {
			t.Fatalf("row %d was rewritten (ctid %s → %s)", id, ctids[id], c)
		}
	}
	for id, vals := range after {
		if _, bad := planted[id]; bad {
			if !reflect.DeepEqual(vals, before[id]) {
				t.Fatalf("row %d changed", id)
			}
			continue
		}
		for c, v := range vals {
			col := []string{"email", "ssn"}[c]
			if pt, err := newC.Decrypt(v); err != nil || string(pt) != plaintextOf(id, col) {
				t.Fatalf("row %d %s: %v", id, col, err)
			}
		}
	}
	// The message names neither keys nor values.
	for _, s := range append([]string{oldK.RevealString(), newK.RevealString(), good}, func() (v []string) {
		for _, p := range planted {
			v = append(v, p)
		}
		return
	}()...) {
		if strings.Contains(err.Error()+rekey.ErrorHint(err), strings.TrimSpace(s)) {
			t.Fatal("the error quotes secret material")
		}
	}
}

// TestRunCASRevisit: rows written by the application between rekey's read
// and its write (with the old key, with the new key, an unrelated column,
// a deleted row) are never overwritten: the compare-and-swap misses them,
// they are read again, and what the application wrote is what ends up
// there (re-encrypted when it was on the old key).
func TestRunCASRevisit(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 50}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, 400)
	app, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	var hooked atomic.Int64
	var appMu sync.Mutex // the two writers may call the hook at once; app is one connection
	testHookBeforeWrite = func(table string, seq int) {
		if seq != 1 && seq != 5 {
			return
		}
		appMu.Lock()
		defer appMu.Unlock()
		hooked.Add(1)
		base := int64(seq * 50)
		ctx := context.Background()
		// Between rekey's read of this batch and its write:
		mustExec(t, app, `UPDATE patients SET email = $1 WHERE id = $2`, string(encrypt(t, oldC, "app-old")), base+1)
		mustExec(t, app, `UPDATE patients SET email = $1 WHERE id = $2`, string(encrypt(t, newC, "app-new")), base+2)
		mustExec(t, app, `UPDATE patients SET name = 'renamed' WHERE id = $1`, base+3)
		mustExec(t, app, `DELETE FROM patients WHERE id = $1`, base+4)
		if _, err := app.Exec(ctx, `UPDATE patients SET ssn = $1 WHERE id = $2`, "garbage", base+5); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookBeforeWrite = nil }()
	res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "cas"))
	if !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("err = %v", err)
	}
	if hooked.Load() != 2 || res.Revisited != 8 || res.Vanished != 2 || res.Failed != 2 || res.Rows != 400 {
		t.Fatalf("hooked %d, totals %+v", hooked.Load(), res.Totals)
	}
	all := readAll(t, conn, "patients", "email", "ssn")
	if len(all) != 398 {
		t.Fatalf("%d rows", len(all))
	}
	for id, vals := range all {
		for c, v := range vals {
			col := []string{"email", "ssn"}[c]
			want := plaintextOf(id, col)
			switch {
			case id%50 == 1 && (id/50 == 1 || id/50 == 5) && c == 0:
				want = "app-old"
			case id%50 == 2 && (id/50 == 1 || id/50 == 5) && c == 0:
				want = "app-new"
			case id%50 == 5 && (id/50 == 1 || id/50 == 5):
				if c == 1 && string(v) != "garbage" {
					t.Fatalf("row %d: the app's garbage was overwritten", id)
				}
				if c == 0 {
					if _, err := oldC.Decrypt(v); err != nil {
						t.Fatalf("row %d: a row with a failed column was written", id)
					}
				}
				continue
			}
			if pt, err := newC.Decrypt(v); err != nil || string(pt) != want {
				t.Fatalf("row %d %s: %q %v, want %q", id, col, pt, err, want)
			}
		}
	}
	var renamed int
	conn.QueryRow(testCtx(t), `SELECT count(*) FROM patients WHERE name = 'renamed'`).Scan(&renamed)
	if renamed != 2 {
		t.Fatalf("renamed rows: %d", renamed)
	}
}

// TestRunResume: a run cancelled after a few batches stops cleanly with
// ErrInterrupted and a checkpoint in the database, consistent with the
// data; the next run with the same job id starts after it.
func TestRunResume(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 100}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, 3000)
	ctx, cancel := context.WithCancel(testCtx(t))
	j := job(dsn, cfg, oldK, newK, "resume-1")
	j.Progress = func(p Progress) {
		if p.Done >= 500 {
			cancel()
		}
	}
	res, err := Run(ctx, j)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v", err)
	}
	if res.Rows < 500 || res.Rows >= 3000 {
		t.Fatalf("rows %d", res.Rows)
	}
	var lastPK []string
	var rowsDone int64
	var done bool
	if err := conn.QueryRow(testCtx(t), `SELECT last_pk, rows_done, done FROM rekey_reencrypt_checkpoint WHERE job_id = 'resume-1'`).
		Scan(&lastPK, &rowsDone, &done); err != nil {
		t.Fatal(err)
	}
	var last int64
	fmt.Sscan(lastPK[0], &last)
	if done || last != rowsDone || last < 500 {
		t.Fatalf("checkpoint %v %d %v", lastPK, rowsDone, done)
	}
	// Every row up to the checkpoint is on the new key; the checkpoint is
	// never ahead of the data.
	all := readAll(t, conn, "patients", "email")
	for id := int64(1); id <= last; id++ {
		if _, err := newC.Decrypt(all[id][0]); err != nil {
			t.Fatalf("row %d is before the checkpoint but not on the new key", id)
		}
	}

	var firstDone int64 = -1
	j = job(dsn, cfg, oldK, newK, "resume-1")
	j.Progress = func(p Progress) {
		if firstDone < 0 {
			firstDone = p.Done
		}
	}
	res, err = Run(testCtx(t), j)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || !res.Tables[0].Resumed || res.Rows != 3000-last || firstDone != last+100 {
		t.Fatalf("resumed %v, rows %d, first progress %d (checkpoint %d)", res.Resumed, res.Rows, firstDone, last)
	}
	checkDecrypts(t, conn, "patients", newC, 3000, "email", "ssn")
	checkNoCheckpointTable(t, conn)

	// A checkpoint left by another rotation with the same id (other keys)
	// is ignored.
	mustExec(t, conn, `CREATE TABLE rekey_reencrypt_checkpoint (job_id text, table_name text, last_pk text[], done boolean NOT NULL DEFAULT false,
		rows_done bigint NOT NULL DEFAULT 0, key_fp text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, table_name))`)
	mustExec(t, conn, `INSERT INTO rekey_reencrypt_checkpoint VALUES ('resume-2', '"public"."patients"', '{2999}', false, 2999, 'feedface00000000')`)
	res, err = Run(testCtx(t), job(dsn, cfg, newK, oldK, "resume-2"))
	if err != nil || res.Resumed || res.Reencrypted != 6000 {
		t.Fatalf("%v resumed %v %+v", err, res.Resumed, res.Totals)
	}
	checkNoCheckpointTable(t, conn)
}

// TestRunNoCheckpointPrivilege: a role that may not create the checkpoint
// table still re-encrypts (without a checkpoint); a role without UPDATE
// is refused up front.
func TestRunNoCheckpointPrivilege(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 100)
	db := conn.Config().Database
	role := "app_" + db
	mustExec(t, conn, `CREATE ROLE `+quoteIdent(role)+` LOGIN PASSWORD 'app-pass'`)
	mustExec(t, conn, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	mustExec(t, conn, `GRANT SELECT ON patients TO `+quoteIdent(role))
	cl := testkit.Cluster(t)
	appDSN := strings.Replace(dsn, cl.SuperUser+":"+cl.SuperPassword, role+":app-pass", 1)
	_, err := Run(testCtx(t), job(appDSN, cfg, oldK, newK, "noupdate"))
	if err == nil || rekey.ErrorCode(err) != rekey.CodeUnsafe || !strings.Contains(err.Error(), "may not read and update") {
		t.Fatalf("no UPDATE: %v", err)
	}
	if strings.Contains(err.Error(), "app-pass") {
		t.Fatal("the error quotes the password")
	}
	mustExec(t, conn, `GRANT UPDATE ON patients TO `+quoteIdent(role))
	res, err := Run(testCtx(t), job(appDSN, cfg, oldK, newK, "nockpt"))
	if err != nil || res.Checkpoint != "" || res.Reencrypted != 100 {
		t.Fatalf("%v %+v", err, res)
	}
	// The Count needs SELECT only.
	c, err := Count(testCtx(t), CountJob{DSN: appDSN, Config: cfg, Keys: []rekey.Value{newK, oldK}})
	if err != nil || c.ByKey(0) != 100 {
		t.Fatalf("%v %+v", err, c)
	}
}

// TestRunRateLimit: with a rate limit the batches shrink to a fraction of
// the rate and the run completes (no timing is asserted).
func TestRunRateLimit(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}, RowsPerSecond: 4000}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 2500)
	var calls int
	j := job(dsn, cfg, oldK, newK, "rate")
	j.Progress = func(Progress) { calls++ }
	res, err := Run(testCtx(t), j)
	if err != nil || res.Reencrypted != 2500 {
		t.Fatalf("%v %+v", err, res)
	}
	if calls != 3 { // batches of 4000/4 = 1000 rows
		t.Fatalf("%d batches", calls)
	}
}

// TestRunLockedTable: a second re-encryption of the same table waits for
// the first and, when it does not end, is refused (CodeConflict).
func TestRunLockedTable(t *testing.T) {
	dsn, conn := newDB(t, false)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 10)
	var oid uint32
	conn.QueryRow(testCtx(t), `SELECT 'patients'::regclass::oid`).Scan(&oid)
	mustExec(t, conn, `SELECT pg_advisory_lock($1::bigint << 32 | $2::oid::bigint)`, advisoryClass, oid)
	ctx, cancel := context.WithCancel(testCtx(t))
	j := job(dsn, cfg, oldK, newK, "locked")
	go func() {
		// Cancel while it waits for the lock.
		for i := 0; i < 1000; i++ {
			time.Sleep(10 * time.Millisecond)
			var waiting bool
			conn2, err := pgx.Connect(context.Background(), dsn)
			if err == nil {
				conn2.QueryRow(context.Background(), `SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'rekey' AND query LIKE '%pg_try_advisory_lock%'`).Scan(&waiting)
				conn2.Close(context.Background())
			}
			if waiting {
				cancel()
				return
			}
		}
	}()
	if _, err := Run(ctx, j); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v", err)
	}
	mustExec(t, conn, `SELECT pg_advisory_unlock_all()`)
	if _, err := Run(testCtx(t), j); err != nil {
		t.Fatal(err)
	}
}
