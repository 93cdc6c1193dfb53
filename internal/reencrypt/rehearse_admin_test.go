package reencrypt

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestRehearseAdmin: the application's role has no CREATEDB. Alone, the
// rehearsal fails with ErrNoCreateDB, naming the role and the grant, and
// leaves nothing behind; with an admin connection it makes the copy
// through it, on both copy paths, and the re-encryption runs on the copy.
// An admin URL to another server is refused.
func TestRehearseAdmin(t *testing.T) {
	c := testkit.Cluster(t)
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 500}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), 1000)
	db := conn.Config().Database
	role := "app_" + db
	mustExec(t, conn, `CREATE ROLE `+quoteIdent(role)+` LOGIN NOCREATEDB PASSWORD 'app-pass'`)
	mustExec(t, conn, `GRANT SELECT, UPDATE ON patients TO `+quoteIdent(role))
	appDSN := strings.Replace(dsn, c.SuperUser+":"+c.SuperPassword, role+":app-pass", 1)
	adminDSN := c.SuperConnString("postgres")
	conn.Close(context.Background())

	_, err := Rehearse(testCtx(t), job(appDSN, cfg, oldK, newK, "noadmin"))
	if !errors.Is(err, ErrNoCreateDB) || !strings.Contains(err.Error(), "role "+role+" may not create databases") ||
		!strings.Contains(rekey.ErrorHint(err), "ALTER ROLE "+quoteIdent(role)+" CREATEDB") || rekey.ErrorCode(err) != rekey.CodeUnsafe {
		t.Fatalf("without CREATEDB nor admin: %v (hint: %s)", err, rekey.ErrorHint(err))
	}
	if strings.Contains(err.Error(), "app-pass") {
		t.Fatal("the error quotes the password")
	}
	countCopies := func() int {
		admin, err := c.Connect(testCtx(t), "")
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.Background())
		var n int
		admin.QueryRow(testCtx(t), `SELECT count(*) FROM pg_database WHERE datname LIKE 'rekey_rehearsal_%'`).Scan(&n)
		return n
	}
	if n := countCopies(); n != 0 {
		t.Fatalf("%d rehearsal databases left", n)
	}

	for _, tc := range []struct {
		name, method  string
		stayConnected bool
	}{
		{"template", CopyTemplate, false},
		{"dump", CopyDump, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stayConnected { // someone else on the source: the pg_dump path
				other, err := c.Connect(testCtx(t), db)
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close(context.Background())
			}
			j := job(appDSN, cfg, oldK, newK, "admin-"+tc.name)
			j.AdminDSN = adminDSN
			rh, err := Rehearse(testCtx(t), j)
			if tc.method == CopyDump && dumpRefused(t, c, err, "stop the sessions on the database") {
				return // no pg_dump for this server's version: refused, saying why and what to do
			}
			if err != nil {
				t.Fatalf("with the admin connection: %v", err)
			}
			if rh.Method != tc.method || !rh.Admin || rh.Result == nil || rh.Result.Reencrypted != 2000 || rh.Result.Failed != 0 {
				t.Fatalf("%+v %+v", rh, rh.Result)
			}
			if n := countCopies(); n != 0 {
				t.Fatalf("%d rehearsal databases left", n)
			}
		})
	}
	// The source is untouched: every value still opens with the old key.
	cnt, err := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{oldK}})
	if err != nil || cnt.ByKey(0) != 2000 || cnt.Neither() != 0 {
		t.Fatalf("the source changed: %v %+v", err, cnt)
	}

	j := job(appDSN, cfg, oldK, newK, "elsewhere")
	j.AdminDSN = "postgres://" + c.SuperUser + ":" + c.SuperPassword + "@" + c.Host + ":1/postgres?sslmode=disable"
	if _, err := Rehearse(testCtx(t), j); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("an admin URL to another server: %v", err)
	}
}

// TestColumnTypo: a configured table or column that the database does not
// have is reported by name with the nearest names, by Check, Run, Count
// and Rehearse alike, before anything is written or copied.
func TestColumnTypo(t *testing.T) {
	dsn, conn := newDB(t, false)
	good := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", good, mustCipher(t, good, oldK), 10)
	for _, tc := range []struct {
		columns   []string
		msg, hint string
	}{
		{[]string{"patients.emial", "patients.ssn"}, "column public.patients.emial not found", "did you mean public.patients.email?"},
		{[]string{"patients.email", "patients.sn"}, "column public.patients.sn not found", "did you mean public.patients.ssn?"},
		{[]string{"patient.email"}, "table patient not found", "did you mean patients?"},
		{[]string{"patients(idd).email"}, "key column public.patients.idd not found", "did you mean public.patients.id?"},
		{[]string{"patients.zzzzzzzz"}, "column public.patients.zzzzzzzz not found", "public.patients has the columns email, id, name, ssn"},
	} {
		cfg := rekey.ReencryptSpec{Columns: tc.columns}
		check := func(what string, err error) {
			t.Helper()
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(rekey.ErrorHint(err), tc.hint) || rekey.ErrorCode(err) != rekey.CodeNotFound {
				t.Errorf("%s of %v: %v (hint: %s); want %q, hint %q", what, tc.columns, err, rekey.ErrorHint(err), tc.msg, tc.hint)
			}
		}
		check("Check", Check(testCtx(t), dsn, cfg))
		_, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "typo"))
		check("Run", err)
		_, err = Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{oldK}})
		check("Count", err)
		rh, err := Rehearse(testCtx(t), job(dsn, cfg, oldK, newK, "typo"))
		check("Rehearse", err)
		if rh != nil {
			t.Errorf("Rehearse made a copy before finding the typo: %+v", rh)
		}
	}
	if err := Check(testCtx(t), dsn, good); err != nil {
		t.Fatal(err)
	}
	// Nothing was written.
	c, err := Count(testCtx(t), CountJob{DSN: dsn, Config: good, Keys: []rekey.Value{oldK}})
	if err != nil || c.ByKey(0) != 20 {
		t.Fatalf("%v %+v", err, c)
	}
}
