package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestAdminSetupLeastPrivilege: an admin set up by exactly the statements
// AdminSetup names (the README's privilege table) creates the second role
// and rotates both passwords, yet cannot read the group's table nor SET
// ROLE to the group or a login role of the pair: on 16 and later ADMIN
// OPTION only (INHERIT FALSE, SET FALSE), on 15 CREATEROLE and no
// membership. ADMIN OPTION (15: CREATEROLE) is a delegation, not a
// boundary: the admin may grant the group to itself and then read the
// table (SECURITY.md says so); the test records that too.
func TestAdminSetupLeastPrivilege(t *testing.T) {
	super := superConn(t)
	c := testkit.Cluster(t)
	ctx := testCtx(t)
	q := postgres.QuoteIdent
	group, blue, green := testkit.Unique("lp_grp"), testkit.Unique("lp_blue"), testkit.Unique("lp_green")
	adm, admPw := testkit.Unique("lp_admin"), []byte("Lp-Admin-Pw-1")
	table := testkit.Unique("lp_tab")
	mustExec(t, super, "CREATE ROLE "+q(group)+" NOLOGIN")
	createLoginRole(t, super, blue, []byte("Blue-Pw-1"))
	mustExec(t, super, "GRANT "+q(group)+" TO "+q(blue))
	mustExec(t, super, "CREATE TABLE "+q(table)+" (x int)")
	mustExec(t, super, "INSERT INTO "+q(table)+" VALUES (1)")
	mustExec(t, super, "ALTER TABLE "+q(table)+" OWNER TO "+q(group))

	// Exactly the statements rekey names, for this role.
	stmts := postgres.AdminSetup(c.Major, blue, "", []string{group})
	for i, s := range stmts {
		s = strings.ReplaceAll(s, q(postgres.AdminRoleExample), q(adm))
		s = strings.Replace(s, "PASSWORD '…'", "", 1)
		if c.Major >= postgres.AdminOptionMajor && i > 0 && !strings.HasSuffix(s, " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE") {
			t.Fatalf("PostgreSQL %d: %q grants more than ADMIN OPTION", c.Major, s)
		}
		mustExec(t, super, s)
	}
	if err := postgres.SetPassword(ctx, super, adm, admPw); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL %s: admin set up by %q", c.Version, stmts)
	admin := login(t, adm, admPw)
	if pc, err := postgres.CheckPair(ctx, admin, blue, green, false); err != nil || len(pc.Missing) != 0 || pc.SelfImpossible {
		t.Fatalf("CheckPair of the admin on %d: %+v, %v", c.Major, pc, err)
	}

	// It creates the pair (the copy's membership in the group) and rotates both.
	if created, err := postgres.EnsurePair(ctx, admin, blue, green); err != nil || !created {
		t.Fatalf("EnsurePair by the least-privileged admin on %d: %v", c.Major, err)
	}
	for _, r := range []string{blue, green} {
		pw := []byte("New-" + r)
		if err := postgres.SetPassword(ctx, admin, r, pw); err != nil {
			t.Fatalf("the admin changes %s's password: %v", r, err)
		}
		var n int
		if err := login(t, r, pw).QueryRow(ctx, "SELECT count(*) FROM "+q(table)).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s reads the group's table: %d, %v", r, n, err)
		}
	}

	// It cannot use the group's privileges, nor become any of the roles.
	refused := func(conn *pgx.Conn, sql string) bool {
		t.Helper()
		_, err := conn.Exec(ctx, sql)
		if err == nil {
			return false
		}
		if !isPrivilegeErr(err) {
			t.Fatalf("%s: %v, want a permission error", sql, err)
		}
		return true
	}
	if !refused(admin, "SELECT count(*) FROM "+q(table)) {
		t.Errorf("PostgreSQL %d: the admin reads the group's table", c.Major)
	}
	for _, r := range []string{group, blue, green} {
		if !refused(admin, "SET ROLE "+q(r)) {
			t.Errorf("PostgreSQL %d: the admin may SET ROLE %s", c.Major, r)
			mustExec(t, admin, "RESET ROLE")
		}
	}

	// A delegation, not a boundary: ADMIN OPTION on the group (15:
	// CREATEROLE) lets the admin grant the group to itself.
	self := "GRANT " + q(group) + " TO " + q(adm)
	if c.Major >= postgres.AdminOptionMajor {
		self += " WITH INHERIT TRUE"
	}
	if _, err := admin.Exec(ctx, self); err != nil {
		t.Fatalf("PostgreSQL %d: %s by the admin itself: %v", c.Major, self, err)
	}
	var n int
	if err := login(t, adm, admPw).QueryRow(ctx, "SELECT count(*) FROM "+q(table)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("PostgreSQL %d: after %s the admin reads the table: %d, %v", c.Major, self, n, err)
	}
	t.Logf("PostgreSQL %d: the admin may run %q itself and then read the group's table", c.Major, self)
}
