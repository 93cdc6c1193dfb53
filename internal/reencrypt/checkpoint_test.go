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

// pairDB is a database whose table patients (email, n rows under the old
// key) belongs to the NOLOGIN role owner, with two login roles blue and
// green, members of owner (an alternating pair), and mallory, a login role
// that may create tables in public but is not of the pair.
type pairDB struct {
	conn                        *pgx.Conn
	cfg                         rekey.ReencryptSpec
	oldK, newK                  rekey.Value
	oldC, newC                  *Cipher
	owner, blue, green, mallory string
	dsn                         map[string]string
}

func newPairDB(t *testing.T, n int, schema string) *pairDB {
	t.Helper()
	dsn, conn := newDB(t, false)
	p := &pairDB{conn: conn, cfg: rekey.ReencryptSpec{Columns: []string{"patients.email"}, BatchSize: 100, CheckpointSchema: schema}, dsn: map[string]string{}}
	p.oldK, p.newK, p.oldC, p.newC = keyPair(t, p.cfg)
	seedTable(t, conn, "patients", p.cfg, p.oldC, n)
	db := conn.Config().Database
	p.owner, p.blue, p.green, p.mallory = "own_"+db, "blue_"+db, "green_"+db, "mal_"+db
	q := quoteIdent
	mustExec(t, conn, `CREATE ROLE `+q(p.owner)+` NOLOGIN`)
	mustExec(t, conn, `ALTER TABLE patients OWNER TO `+q(p.owner))
	mustExec(t, conn, `GRANT CREATE ON SCHEMA public TO `+q(p.owner))
	cl := testkit.Cluster(t)
	for _, r := range []string{p.blue, p.green, p.mallory} {
		in := ` IN ROLE ` + q(p.owner)
		if r == p.mallory {
			in = ""
		}
		mustExec(t, conn, `CREATE ROLE `+q(r)+` LOGIN PASSWORD 'pw-`+r+`'`+in)
		p.dsn[r] = strings.Replace(dsn, cl.SuperUser+":"+cl.SuperPassword, r+":pw-"+r, 1)
	}
	mustExec(t, conn, `GRANT CREATE ON SCHEMA public TO `+q(p.mallory))
	return p
}

// interrupted runs job id as role until at least 300 rows are done, then
// cancels it: the checkpoint is left behind.
func (p *pairDB) interrupted(t *testing.T, role, id string) *Result {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	j := job(p.dsn[role], p.cfg, p.oldK, p.newK, id)
	j.Progress = func(pr Progress) {
		if pr.Done >= 300 {
			cancel()
		}
	}
	res, err := Run(ctx, j)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run as %s: %v", role, err)
	}
	return res
}

func (p *pairDB) ckptOwner(t *testing.T, schema string) string {
	t.Helper()
	var owner string
	err := p.conn.QueryRow(testCtx(t), `SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass($1)`, quoteIdent(schema)+"."+CheckpointTable).Scan(&owner)
	if err != nil {
		t.Fatalf("the checkpoint table %s: %v", schema, err)
	}
	return owner
}

// onOld counts the rows still on the old key.
func (p *pairDB) onOld(t *testing.T, n int) int {
	t.Helper()
	old := 0
	for id, v := range readAll(t, p.conn, "patients", "email") {
		if _, err := p.oldC.Decrypt(v[0]); err == nil {
			old++
		} else if _, err := p.newC.Decrypt(v[0]); err != nil {
			t.Fatalf("row %d opens with neither key", id)
		}
	}
	return old
}

// TestCheckpointPair: a run as blue interrupted, then the same job as
// green (the next role of the pair) resumes from blue's checkpoint: the
// table is created owned by the data's owner.
func TestCheckpointPair(t *testing.T) {
	p := newPairDB(t, 1000, "")
	p.interrupted(t, p.blue, "pair-1")
	if o := p.ckptOwner(t, "public"); o != p.owner {
		t.Fatalf("the checkpoint table is owned by %s, want the data's owner %s", o, p.owner)
	}
	res, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "pair-1"))
	if err != nil || !res.Resumed || res.Rows >= 1000 {
		t.Fatalf("green: %v resumed %v rows %d", err, res != nil && res.Resumed, res.Rows)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 1000, "email")
	checkNoCheckpointTable(t, p.conn)
}

// TestCheckpointLeftover: a checkpoint table left by an older rekey as
// blue (owned by blue, no grants) is refused to green with the statement that
// fixes it; blue's next run hands the table to the owner, and green
// resumes.
func TestCheckpointLeftover(t *testing.T) {
	p := newPairDB(t, 1000, "")
	mustExec(t, p.conn, `SET ROLE `+quoteIdent(p.blue))
	mustExec(t, p.conn, `CREATE TABLE rekey_reencrypt_checkpoint (job_id text, table_name text, last_pk text[], done boolean NOT NULL DEFAULT false,
		rows_done bigint NOT NULL DEFAULT 0, key_fp text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, table_name))`)
	mustExec(t, p.conn, `RESET ROLE`)
	_, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "left-1"))
	alter := `ALTER TABLE "public"."rekey_reencrypt_checkpoint" OWNER TO "` + p.owner + `"`
	if !errors.Is(err, ErrForeignCheckpoint) || !strings.Contains(err.Error(), alter) || !strings.Contains(err.Error(), p.blue) {
		t.Fatalf("green on blue's table: %v (hint %q)", err, rekey.ErrorHint(err))
	}
	t.Logf("refused: %v; hint: %s", err, rekey.ErrorHint(err))
	// Blue's next run hands its table to the owner: green then resumes.
	p.interrupted(t, p.blue, "left-1")
	if o := p.ckptOwner(t, "public"); o != p.owner {
		t.Fatalf("blue's run left its table owned by %s, want %s", o, p.owner)
	}
	res, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "left-1"))
	if err != nil || !res.Resumed {
		t.Fatalf("green after the ALTER: %v", err)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 1000, "email")
}

// TestCheckpointForeign: a table under the checkpoint's name planted by a
// role outside the pair (with a forged row saying the job is done), or of
// another shape, is refused with the statement to run, and the data is
// untouched; so is one the pair's owner made writable by that role.
func TestCheckpointForeign(t *testing.T) {
	p := newPairDB(t, 200, "")
	mustExec(t, p.conn, `SET ROLE `+quoteIdent(p.mallory))
	mustExec(t, p.conn, `CREATE TABLE rekey_reencrypt_checkpoint (job_id text, table_name text, last_pk text[], done boolean NOT NULL DEFAULT false,
		rows_done bigint NOT NULL DEFAULT 0, key_fp text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, table_name))`)
	mustExec(t, p.conn, `GRANT ALL ON rekey_reencrypt_checkpoint TO PUBLIC`)
	mustExec(t, p.conn, `RESET ROLE`)
	for _, role := range []string{p.blue, p.green} {
		_, err := Run(testCtx(t), job(p.dsn[role], p.cfg, p.oldK, p.newK, "forged"))
		if !errors.Is(err, ErrForeignCheckpoint) || !strings.Contains(err.Error(), p.mallory) ||
			!strings.Contains(err.Error(), `DROP TABLE "public"."rekey_reencrypt_checkpoint"`) ||
			!strings.Contains(err.Error(), `ALTER TABLE "public"."rekey_reencrypt_checkpoint" OWNER TO "`+p.owner+`"`) {
			t.Fatalf("%s on mallory's table: %v (hint %q)", role, err, rekey.ErrorHint(err))
		}
		t.Logf("refused: %v; hint: %s", err, rekey.ErrorHint(err))
	}
	if n := p.onOld(t, 200); n != 200 {
		t.Fatalf("%d rows moved after a refusal", 200-n)
	}
	// Owned by the pair's owner but writable by mallory: refused too.
	mustExec(t, p.conn, `ALTER TABLE rekey_reencrypt_checkpoint OWNER TO `+quoteIdent(p.owner))
	mustExec(t, p.conn, `GRANT INSERT ON rekey_reencrypt_checkpoint TO `+quoteIdent(p.mallory))
	if _, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "forged")); !errors.Is(err, ErrForeignCheckpoint) || !strings.Contains(err.Error(), "PUBLIC") {
		t.Fatalf("writable by PUBLIC and mallory: %v", err)
	}
	// Another shape, even owned by the data's owner: never written to.
	mustExec(t, p.conn, `DROP TABLE rekey_reencrypt_checkpoint`)
	mustExec(t, p.conn, `CREATE TABLE rekey_reencrypt_checkpoint (job_id text PRIMARY KEY, note text)`)
	mustExec(t, p.conn, `ALTER TABLE rekey_reencrypt_checkpoint OWNER TO `+quoteIdent(p.owner))
	_, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "forged"))
	if !errors.Is(err, ErrForeignCheckpoint) || !strings.Contains(err.Error(), "not rekey's checkpoint table") {
		t.Fatalf("another shape: %v", err)
	}
	if n := p.onOld(t, 200); n != 200 {
		t.Fatalf("%d rows moved after a refusal", 200-n)
	}
	mustExec(t, p.conn, `DROP TABLE rekey_reencrypt_checkpoint`)
	if _, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "forged")); err != nil {
		t.Fatal(err)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 200, "email")
}

// TestCheckpointSchema: checkpoint_schema puts the table in that schema
// (owned by the data's owner, even when only it may create tables there);
// a schema that does not exist is refused before anything is written.
func TestCheckpointSchema(t *testing.T) {
	p := newPairDB(t, 1000, "rekey_state")
	_, err := Run(testCtx(t), job(p.dsn[p.blue], p.cfg, p.oldK, p.newK, "schema-1"))
	if rekey.ErrorCode(err) != rekey.CodeInvalid || !strings.Contains(err.Error(), "rekey_state does not exist") {
		t.Fatalf("missing schema: %v", err)
	}
	if n := p.onOld(t, 1000); n != 1000 {
		t.Fatal("rows moved")
	}
	mustExec(t, p.conn, `CREATE SCHEMA rekey_state AUTHORIZATION `+quoteIdent(p.owner))
	res := p.interrupted(t, p.blue, "schema-1")
	if res.Checkpoint != `"rekey_state"."rekey_reencrypt_checkpoint"` {
		t.Fatalf("checkpoint %q", res.Checkpoint)
	}
	if o := p.ckptOwner(t, "rekey_state"); o != p.owner {
		t.Fatalf("owned by %s", o)
	}
	checkNoCheckpointTable(t, p.conn) // nothing in public
	res, err = Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "schema-1"))
	if err != nil || !res.Resumed {
		t.Fatalf("green: %v", err)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 1000, "email")
}

// TestCheckpointFallback: when the data's owner may not create tables in
// the schema (but blue may), the table is created by blue and its
// privileges granted to the owner: green, the other member, resumes it.
func TestCheckpointFallback(t *testing.T) {
	p := newPairDB(t, 1000, "")
	mustExec(t, p.conn, `REVOKE CREATE ON SCHEMA public FROM `+quoteIdent(p.owner))
	mustExec(t, p.conn, `GRANT CREATE ON SCHEMA public TO `+quoteIdent(p.blue))
	p.interrupted(t, p.blue, "fallback-1")
	if o := p.ckptOwner(t, "public"); o != p.blue {
		t.Fatalf("owned by %s, want %s (the owner may not create there)", o, p.blue)
	}
	res, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "fallback-1"))
	if err != nil || !res.Resumed {
		t.Fatalf("green: %v", err)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 1000, "email")
}

// TestCheckpointNoSet (PostgreSQL 16 and later): blue inherits the owner's
// privileges but may not SET ROLE to it: the table is blue's, granted to
// the owner, and green resumes it.
func TestCheckpointNoSet(t *testing.T) {
	p := newPairDB(t, 1000, "")
	var major int
	if err := p.conn.QueryRow(testCtx(t), `SELECT current_setting('server_version_num')::int / 10000`).Scan(&major); err != nil {
		t.Fatal(err)
	}
	if major < 16 {
		t.Skipf("PostgreSQL %d has no SET option on memberships", major)
	}
	mustExec(t, p.conn, `REVOKE `+quoteIdent(p.owner)+` FROM `+quoteIdent(p.blue))
	mustExec(t, p.conn, `GRANT `+quoteIdent(p.owner)+` TO `+quoteIdent(p.blue)+` WITH INHERIT TRUE, SET FALSE`)
	p.interrupted(t, p.blue, "noset-1")
	if o := p.ckptOwner(t, "public"); o != p.blue {
		t.Fatalf("owned by %s, want %s (it may not SET ROLE to the owner)", o, p.blue)
	}
	res, err := Run(testCtx(t), job(p.dsn[p.green], p.cfg, p.oldK, p.newK, "noset-1"))
	if err != nil || !res.Resumed {
		t.Fatalf("green: %v", err)
	}
	checkDecrypts(t, p.conn, "patients", p.newC, 1000, "email")
}
