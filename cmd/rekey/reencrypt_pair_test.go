package main

// The re-encryption checkpoint with the alternating PostgreSQL strategy
// (issue 14, item 4), against a real cluster: a data key left incomplete
// (a corrupt row, then `rekey reencrypt` killed mid-run) by the first role
// of the pair is finished by `rekey reencrypt` as the second one, after
// `rotate DATABASE_PASSWORD` switched the URL to it, with no manual step;
// a checkpoint table planted by a role outside the pair is refused with
// the statement to run, and the data is untouched.

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// rpProject is an alternating project (DATABASE_PASSWORD of the pair blue,
// green, members of owner) with a data key ENCRYPTION_KEY whose columns
// patients.email and patients.ssn (owned by owner) are read through
// DATABASE_URL, i.e. as the role of the pair the .env currently uses.
type rpProject struct {
	*pgaProject
	rc *rcProject // the table's rows and helpers (check, exec, withDB) through a superuser URL
}

func rpNewProject(t *testing.T, rows int) *rpProject {
	t.Helper()
	c := startCluster(t)
	suffix := testkit.Unique(strconv.Itoa(os.Getpid()))
	p := &pgaProject{pgcProject: &pgcProject{c: c, vals: map[int]string{}}, owner: "app_owner_" + suffix, table: "patients",
		blue: "app_" + suffix + "_blue"}
	p.role, p.green = p.blue, postgres.PairRole(p.blue)
	q := postgres.QuoteIdent
	key := ctRandB64(32, base64.StdEncoding)
	super := c.ConnString(c.SuperUser, c.SuperPassword, "postgres")
	rc := &rcProject{cluster: c, url: super, plain: map[int64][2]string{}}
	testkit.Exec(t, c,
		"CREATE ROLE "+q(p.owner)+" NOLOGIN",
		"CREATE TABLE patients (id bigint PRIMARY KEY, email text, ssn text)",
		"ALTER TABLE patients OWNER TO "+q(p.owner),
		// The pair may create tables in public (as the operator's could).
		"GRANT CREATE ON SCHEMA public TO "+q(p.owner),
		"CREATE ROLE "+q(p.blue)+" LOGIN CREATEROLE IN ROLE "+q(p.owner),
	)
	pw := ctRandB64(24, base64.RawURLEncoding)
	testkit.SetPassword(t, c.SuperConnString("postgres"), p.blue, pw)
	extra := ""
	if c.Major >= postgres.AdminOptionMajor {
		admin := "rekey_admin_" + suffix
		p.adminPW = ctRandB64(24, base64.RawURLEncoding)
		testkit.Exec(t, c, pgaAdminSetup(c.Major, admin, p.owner, p.blue)...)
		testkit.SetPassword(t, c.SuperConnString("postgres"), admin, p.adminPW)
		p.adminURL = c.ConnString(admin, p.adminPW, "postgres")
		extra = "PG_ADMIN_URL=" + p.adminURL + "\n"
	}
	p.ctProject = ctBareProject(t, "DATABASE_URL="+c.ConnString(p.blue, pw, "postgres")+"\n"+
		"DATABASE_PASSWORD="+pw+"\nENCRYPTION_KEY="+key+"\nRUST_LOG=info\n"+extra, "pg-pair-reencrypt-test")
	rc.ctProject = p.ctProject
	var src [][]any
	for i := int64(1); i <= int64(rows); i++ {
		email, ssn := fmt.Sprintf("patient%d@example.com", i), fmt.Sprintf("%03d-%02d-%04d", i%1000, i%100, i)
		rc.plain[i] = [2]string{email, ssn}
		src = append(src, []any{i, rcSeal(t, key, email), rcSeal(t, key, ssn)})
	}
	rc.withDB(func(ctx context.Context, conn *pgx.Conn) {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"id", "email", "ssn"}, pgx.CopyFromRows(src)); err != nil {
			t.Fatal(err)
		}
	})
	p.mustLog("init", "--env-file", ".env", "--postgres-alternating")
	p.vals[1] = pw
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "\n  ENCRYPTION_KEY:\n", "\n  ENCRYPTION_KEY:\n    reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [patients.email, patients.ssn], batch_size: 100}\n")
	p.mustLog("config", "trust")
	return &rpProject{pgaProject: p, rc: rc}
}

// killWhenBlocked runs `rekey reencrypt`, waits until it waits on a row
// lock (batches before the held row are committed with their
// checkpoint), and kills it (SIGKILL).
func (p *rpProject) killWhenBlocked() {
	t := p.t
	t.Helper()
	cmd, _, _ := p.command(nil, "reencrypt")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hung := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer hung.Stop()
	blocked := false
	for deadline := time.Now().Add(time.Minute); !blocked && time.Now().Before(deadline); {
		p.rc.withDB(func(ctx context.Context, conn *pgx.Conn) {
			if err := conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
				WHERE application_name = 'rekey' AND wait_event_type = 'Lock'`).Scan(&blocked); err != nil {
				t.Fatal(err)
			}
		})
		if !blocked {
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if !blocked {
		t.Fatal("rekey reencrypt never reached the locked row")
	}
}

// ckptOwner is the owner of public.rekey_reencrypt_checkpoint ("" when
// there is none).
func (p *rpProject) ckptOwner() string {
	var owner *string
	p.rc.withDB(func(ctx context.Context, conn *pgx.Conn) {
		if err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = to_regclass('public.rekey_reencrypt_checkpoint')`).Scan(&owner); err != nil && err != pgx.ErrNoRows {
			p.t.Fatal(err)
		}
	})
	if owner == nil {
		return ""
	}
	return *owner
}

// TestReencryptPairCheckpoint is the sequence: a corrupt row leaves
// ENCRYPTION_KEY incomplete; repaired, `rekey reencrypt` (as blue) is
// killed mid-run, leaving its checkpoint; `rotate DATABASE_PASSWORD`
// switches the URL to green; `rekey reencrypt` (as green) resumes it and
// finishes: every row opens with the new key, no manual step.
func TestReencryptPairCheckpoint(t *testing.T) {
	p := rpNewProject(t, 1000)
	old, _ := p.rc.envKeys()
	const corrupt = 700
	p.rc.exec(`UPDATE patients SET email = 'bm90IGEgY2lwaGVydGV4dCBhdCBhbGwsIGp1c3QgdGV4dA==' WHERE id = $1`, corrupt)
	if r := p.runLog("rotate", "ENCRYPTION_KEY"); r.code != 7 {
		t.Fatalf("want exit 7 for the corrupt row: %v", r)
	}
	key, _ := p.rc.envKeys()
	// Repaired from a backup (under the old key); rows on both sides of it
	// back on the old key too, so the next run has work before and after
	// the row another session holds.
	p.rc.exec(`UPDATE patients SET email = $1 WHERE id = $2`, rcSeal(t, old, p.rc.plain[corrupt][0]), corrupt)
	for id := int64(1); id <= 1000; id += 50 {
		p.rc.exec(`UPDATE patients SET email = $1 WHERE id = $2`, rcSeal(t, old, p.rc.plain[id][0]), id)
	}
	release := p.rc.heldRow(corrupt)
	p.killWhenBlocked()
	release()
	if o := p.ckptOwner(); o != p.owner {
		t.Fatalf("after the kill the checkpoint table is owned by %q, want the data's owner %s", o, p.owner)
	}
	if _, user, _ := p.envURL(); user != p.blue {
		t.Fatalf("the .env logs in as %s before the password rotation", user)
	}
	p.mustLog("rotate", "DATABASE_PASSWORD")
	if _, user, _ := p.envURL(); user != p.green {
		t.Fatalf("after rotate DATABASE_PASSWORD the .env logs in as %s, want %s", user, p.green)
	}
	r := p.runLog("reencrypt")
	if r.code != 0 || !strings.Contains(r.stdout, "every row is on the current key") {
		t.Fatalf("reencrypt as %s: %v", p.green, r)
	}
	key2, prev := p.rc.envKeys()
	if key2 != key || prev != "" {
		t.Fatal("after reencrypt the .env should hold the current key alone")
	}
	p.rc.check(key)
	if o := p.ckptOwner(); o != "" {
		t.Fatalf("the checkpoint table (owner %s) is still there", o)
	}
	if r := p.runLog("rotate", "ENCRYPTION_KEY"); r.code != 0 {
		t.Fatalf("the next rotation of ENCRYPTION_KEY: %v", r)
	}
	key3, _ := p.rc.envKeys()
	p.rc.check(key3)
	p.checkNoLeak()
}

// TestReencryptPlantedCheckpoint: a role outside the pair that may create
// tables in public plants rekey_reencrypt_checkpoint; `rotate
// ENCRYPTION_KEY` is refused with the statements that fix it, and no row
// changes; after the DROP it names, the rotation completes.
func TestReencryptPlantedCheckpoint(t *testing.T) {
	p := rpNewProject(t, 300)
	old, _ := p.rc.envKeys()
	mallory := "mallory_" + testkit.Unique(strconv.Itoa(os.Getpid()))
	q := postgres.QuoteIdent
	testkit.Exec(t, p.c, "CREATE ROLE "+q(mallory)+" NOLOGIN", "GRANT CREATE ON SCHEMA public TO "+q(mallory))
	p.rc.withDB(func(ctx context.Context, conn *pgx.Conn) {
		for _, s := range []string{"SET ROLE " + q(mallory),
			`CREATE TABLE public.rekey_reencrypt_checkpoint (job_id text, table_name text, last_pk text[], done boolean NOT NULL DEFAULT false,
				rows_done bigint NOT NULL DEFAULT 0, key_fp text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, table_name))`,
			"GRANT ALL ON public.rekey_reencrypt_checkpoint TO PUBLIC", "RESET ROLE"} {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	})
	r := p.runLog("rotate", "ENCRYPTION_KEY")
	drop := `DROP TABLE "public"."rekey_reencrypt_checkpoint"`
	alter := `ALTER TABLE "public"."rekey_reencrypt_checkpoint" OWNER TO "` + p.owner + `"`
	if r.code == 0 || !strings.Contains(r.stderr, mallory) || !strings.Contains(r.stderr, drop) || !strings.Contains(r.stderr, alter) {
		t.Fatalf("want a refusal naming %s, %s and %s: %v", mallory, drop, alter, r)
	}
	t.Logf("exit %d: %s", r.code, r.stderr)
	p.rc.check(old) // no row moved
	testkit.Exec(t, p.c, drop)
	if r := p.runLog("reencrypt"); r.code != 0 {
		t.Fatalf("reencrypt after the DROP: %v", r)
	}
	key, _ := p.rc.envKeys()
	p.rc.check(key)
}
