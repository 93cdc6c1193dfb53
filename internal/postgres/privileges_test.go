package postgres_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestCheckPairByVersion: what CheckPair and EnsurePair ask an
// administrator to run, on the test cluster's major version (15: CREATEROLE;
// 16 and later: ADMIN OPTION, and changed_by: self refused), and that with
// exactly those privileges a non-superuser creates the pair and changes
// both passwords.
func TestCheckPairByVersion(t *testing.T) {
	super := superConn(t)
	c := testkit.Cluster(t)
	v16 := c.Major >= postgres.AdminOptionMajor
	t.Logf("PostgreSQL %s (major %d)", c.Version, c.Major)
	ctx := testCtx(t)
	q := postgres.QuoteIdent
	group, blue, green, adm := testkit.Unique("ck_grp"), testkit.Unique("ck_blue"), testkit.Unique("ck_green"), testkit.Unique("ck_admin")
	mustExec(t, super, "CREATE ROLE "+q(group)+" NOLOGIN")
	createLoginRole(t, super, blue, []byte("Blue-Pw-1"))
	mustExec(t, super, "GRANT "+q(group)+" TO "+q(blue))
	createLoginRole(t, super, adm, []byte("Adm-Pw-1"))

	if n, err := postgres.ServerVersionNum(ctx, super); err != nil || n/10000 != c.Major {
		t.Fatalf("ServerVersionNum = %d, %v; want major %d", n, err, c.Major)
	}
	check := func(conn *pgx.Conn, exists bool) postgres.PairCheck {
		t.Helper()
		pc, err := postgres.CheckPair(ctx, conn, blue, green, exists)
		if err != nil {
			t.Fatal(err)
		}
		if pc.Major != c.Major {
			t.Fatalf("CheckPair major %d, want %d", pc.Major, c.Major)
		}
		return pc
	}
	if pc := check(super, false); len(pc.Missing) != 0 || pc.SelfImpossible {
		t.Fatalf("superuser: %+v", pc)
	}

	// changed_by: self: the first role's own session.
	self := login(t, blue, []byte("Blue-Pw-1"))
	pc := check(self, false)
	if want := []string{"ALTER ROLE " + q(blue) + " CREATEROLE"}; !reflect.DeepEqual(pc.Missing, want) {
		t.Fatalf("self without CREATEROLE: missing %q, want %q", pc.Missing, want)
	}
	mustExec(t, super, "ALTER ROLE "+q(blue)+" CREATEROLE")
	self2 := login(t, blue, []byte("Blue-Pw-1"))
	pc = check(self2, false)
	if pc.SelfImpossible != v16 || len(pc.Missing) != 0 {
		t.Fatalf("self with CREATEROLE on %d: %+v", c.Major, pc)
	}
	if v16 {
		_, err := postgres.EnsurePair(ctx, self2, blue, green)
		hint := postgres.Hint(err)
		for _, want := range []string{
			`CREATE ROLE "rekey_admin" LOGIN CREATEROLE`,
			"GRANT " + q(group) + ` TO "rekey_admin" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`,
			"GRANT " + q(blue) + ` TO "rekey_admin" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`,
			"changed_by: admin",
		} {
			if !errors.Is(err, postgres.ErrPrivilege) || !strings.Contains(hint, want) {
				t.Fatalf("EnsurePair as the first role on %d: %v\nhint %q lacks %q", c.Major, err, hint, want)
			}
		}
		if ri, _ := postgres.LookupRole(ctx, super, green); ri.Exists {
			t.Fatal("a refused EnsurePair created the role")
		}
	}
	mustExec(t, super, "ALTER ROLE "+q(blue)+" NOCREATEROLE")

	// changed_by: admin: a non-superuser admin.
	mustExec(t, super, "ALTER ROLE "+q(adm)+" CREATEROLE")
	admin := login(t, adm, []byte("Adm-Pw-1"))
	var want []string
	if v16 {
		want = []string{"GRANT " + q(group) + " TO " + q(adm) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE", "GRANT " + q(blue) + " TO " + q(adm) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"}
	}
	if pc := check(admin, false); !reflect.DeepEqual(pc.Missing, want) || pc.SelfImpossible {
		t.Fatalf("admin with CREATEROLE on %d: missing %q, want %q", c.Major, pc.Missing, want)
	}
	if v16 {
		_, err := postgres.EnsurePair(ctx, admin, blue, green)
		if !errors.Is(err, postgres.ErrPrivilege) || !strings.Contains(postgres.Hint(err), strings.Join(want, "; ")) {
			t.Fatalf("EnsurePair by an admin lacking ADMIN OPTION: %v (hint %q)", err, postgres.Hint(err))
		}
		for _, s := range want {
			mustExec(t, super, s) // what the hint said
		}
	}
	created, err := postgres.EnsurePair(ctx, admin, blue, green)
	if err != nil || !created {
		t.Fatalf("EnsurePair with the least privilege of %d: %v", c.Major, err)
	}
	for _, r := range []string{blue, green} {
		if err := postgres.SetPassword(ctx, admin, r, []byte("New-"+r)); err != nil {
			t.Fatalf("the admin changes %s's password: %v", r, err)
		}
		login(t, r, []byte("New-"+r))
	}
	// A second admin, lacking ADMIN OPTION on the existing second role.
	adm2 := testkit.Unique("ck_admin2")
	createLoginRole(t, super, adm2, []byte("Adm2-Pw-1"))
	mustExec(t, super, "ALTER ROLE "+q(adm2)+" CREATEROLE")
	if v16 {
		mustExec(t, super, "GRANT "+q(blue)+" TO "+q(adm2)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
		want = []string{"GRANT " + q(green) + " TO " + q(adm2) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"}
	}
	if pc := check(login(t, adm2, []byte("Adm2-Pw-1")), true); !reflect.DeepEqual(pc.Missing, want) {
		t.Fatalf("second admin on %d: missing %q, want %q", c.Major, pc.Missing, want)
	}
}

// TestApplierAdminPrivilegeByVersion: an admin connection lacking what the
// server's version needs to change the idle role's password: Apply fails,
// the hint names the statement for that version, and with it run the
// rotation goes through.
func TestApplierAdminPrivilegeByVersion(t *testing.T) {
	spec, a, blue, green := pair(t, "", false)
	super := superConn(t)
	c := testkit.Cluster(t)
	ctx := testCtx(t)
	q := postgres.QuoteIdent
	adm := testkit.Unique("ap_admin")
	createLoginRole(t, super, adm, []byte("Ap-Admin-Pw-1"))
	if err := postgres.SetPassword(ctx, super, blue, []byte("blue-pw-1")); err != nil {
		t.Fatal(err)
	}
	u := "postgres://" + adm + ":Ap-Admin-Pw-1@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable"
	a.Values = func(context.Context) (map[string]rekey.Value, error) {
		return map[string]rekey.Value{"PG_ADMIN_URL": rekey.NewValueString(u)}, nil
	}
	spec.Postgres.ChangedBy, spec.Postgres.AdminSecret = "admin", "PG_ADMIN_URL"
	cur, pend := vv(1, blue, "blue-pw-1"), vv(2, green, "green-pw-2")

	fix := "ALTER ROLE " + q(adm) + " CREATEROLE"
	if c.Major >= postgres.AdminOptionMajor {
		mustExec(t, super, "ALTER ROLE "+q(adm)+" CREATEROLE")
		fix = "GRANT " + q(green) + " TO " + q(adm) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
	}
	err := a.Apply(ctx, "production", spec, pend, cur)
	if !errors.Is(err, postgres.ErrPrivilege) || !strings.Contains(rekey.ErrorHint(err), fix) {
		t.Fatalf("PostgreSQL %d: Apply by an admin lacking a privilege: %v\nhint %q lacks %q", c.Major, err, rekey.ErrorHint(err), fix)
	}
	mustExec(t, super, fix)
	if err := a.Apply(ctx, "production", spec, pend, cur); err != nil {
		t.Fatalf("Apply after %s: %v", fix, err)
	}
	if err := a.Verify(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
}
