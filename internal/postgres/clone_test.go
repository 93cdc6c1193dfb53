package postgres_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

type membership struct {
	Group string
	Admin bool
}

func memberships(t *testing.T, conn *pgx.Conn, role string) []membership {
	t.Helper()
	rows, err := conn.Query(testCtx(t), `SELECT g.rolname, m.admin_option FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
		WHERE r.rolname = $1 ORDER BY 1`, role)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := pgx.CollectRows(rows, pgx.RowToStructByPos[membership])
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

type attrs struct {
	Super, Inherit, CreateRole, CreateDB, CanLogin, Repl, BypassRLS bool
	ConnLimit                                                       int32
	ValidUntil                                                      *string
}

func roleAttrs(t *testing.T, conn *pgx.Conn, role string) attrs {
	t.Helper()
	var a attrs
	err := conn.QueryRow(testCtx(t), `SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
		rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text FROM pg_roles WHERE rolname = $1`, role).
		Scan(&a.Super, &a.Inherit, &a.CreateRole, &a.CreateDB, &a.CanLogin, &a.Repl, &a.BypassRLS, &a.ConnLimit, &a.ValidUntil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func roleSettings(t *testing.T, conn *pgx.Conn, role string) map[string][]string {
	t.Helper()
	rows, err := conn.Query(testCtx(t), `SELECT coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s
		LEFT JOIN pg_database d ON d.oid = s.setdatabase JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1`, role)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var db string
		var cfg []string
		if err := rows.Scan(&db, &cfg); err != nil {
			t.Fatal(err)
		}
		out[db] = cfg
	}
	return out
}

// TestCloneRole: app_blue is a member of the group role app_owner (which
// holds the table privileges); cloning it to app_green gives the same
// memberships, attributes and settings, and app_green logs in and reads
// the table through app_owner.
func TestCloneRole(t *testing.T) {
	admin := superConn(t)
	suffix := testkit.Unique("")
	owner, blue, green := "app_owner"+suffix, "app_blue"+suffix, "app_green"+suffix
	reader := "app_reader" + suffix
	q := postgres.QuoteIdent
	mustExec(t, admin, "CREATE ROLE "+q(owner)+" NOLOGIN")
	mustExec(t, admin, "CREATE ROLE "+q(reader)+" NOLOGIN")
	mustExec(t, admin, "CREATE TABLE "+q("widgets"+suffix)+" (id int)")
	mustExec(t, admin, "INSERT INTO "+q("widgets"+suffix)+" VALUES (42)")
	mustExec(t, admin, "GRANT SELECT ON "+q("widgets"+suffix)+" TO "+q(owner))
	bluePw := []byte("Blue-Pw-1")
	createLoginRole(t, admin, blue, bluePw)
	mustExec(t, admin, "ALTER ROLE "+q(blue)+" CREATEDB CONNECTION LIMIT 7 VALID UNTIL '2999-01-02 03:04:05+00'")
	mustExec(t, admin, "GRANT "+q(owner)+" TO "+q(blue))
	mustExec(t, admin, "GRANT "+q(reader)+" TO "+q(blue)+" WITH ADMIN OPTION")
	mustExec(t, admin, "ALTER ROLE "+q(blue)+` SET search_path = "$user", public, "My Schema"`)
	mustExec(t, admin, "ALTER ROLE "+q(blue)+" SET statement_timeout = '5s'")
	mustExec(t, admin, "ALTER ROLE "+q(blue)+" IN DATABASE postgres SET application_name = 'it''s blue'")

	greenPw := []byte("Green-Pw-2 \u00e9:@/")
	if err := postgres.CloneRole(testCtx(t), admin, blue, green, greenPw); err != nil {
		t.Fatal(err)
	}

	wantM := []membership{{owner, false}, {reader, true}}
	if got := memberships(t, admin, green); !reflect.DeepEqual(got, wantM) {
		t.Errorf("memberships of %s = %v, want %v", green, got, wantM)
	}
	if b, g := roleAttrs(t, admin, blue), roleAttrs(t, admin, green); !reflect.DeepEqual(b, g) {
		t.Errorf("attributes differ:\nblue  %+v\ngreen %+v", b, g)
	}
	if b, g := roleSettings(t, admin, blue), roleSettings(t, admin, green); !reflect.DeepEqual(b, g) || len(g) != 2 {
		t.Errorf("settings differ:\nblue  %q\ngreen %q", b, g)
	}

	conn := login(t, green, greenPw)
	var n int
	if err := conn.QueryRow(testCtx(t), "SELECT id FROM "+q("widgets"+suffix)).Scan(&n); err != nil || n != 42 {
		t.Fatalf("green cannot read through %s: %d %v", owner, n, err)
	}
	var sp, app string
	if err := conn.QueryRow(testCtx(t), "SELECT current_setting('search_path'), current_setting('application_name')").Scan(&sp, &app); err != nil {
		t.Fatal(err)
	}
	// Connect sets application_name=rekey at startup, which wins over the role setting.
	if sp != `"$user", public, "My Schema"` || app != "rekey" {
		t.Errorf("search_path = %q, application_name = %q", sp, app)
	}
	// Blue still works, with its own password.
	login(t, blue, bluePw)
	if mustTryLogin(t, green, bluePw) {
		t.Error("green accepts blue's password")
	}

	// Cloning onto an existing role fails and changes nothing.
	other := []byte("Other-Pw-3")
	err := postgres.CloneRole(testCtx(t), admin, blue, green, other)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42710" {
		t.Fatalf("clone onto an existing role: %v", err)
	}
	if admin.PgConn().TxStatus() != 'I' {
		t.Error("admin connection left inside a transaction")
	}
	if !mustTryLogin(t, green, greenPw) {
		t.Error("existing role's password changed")
	}
}

// TestCloneRoleByCreateRoleAdmin: a non-superuser admin with CREATEROLE
// (the usual "admin connection") can clone an ordinary role.
func TestCloneRoleByCreateRoleAdmin(t *testing.T) {
	super := superConn(t)
	suffix := testkit.Unique("")
	adminRole, group, blue, green := "rekey_admin"+suffix, "grp"+suffix, "blue"+suffix, "green"+suffix
	adminPw := []byte("Admin-Pw-1")
	createLoginRole(t, super, adminRole, adminPw)
	mustExec(t, super, "ALTER ROLE "+postgres.QuoteIdent(adminRole)+" CREATEROLE")
	mustExec(t, super, "CREATE ROLE "+postgres.QuoteIdent(group))
	createLoginRole(t, super, blue, []byte("Blue-Pw-2"))
	mustExec(t, super, "GRANT "+postgres.QuoteIdent(group)+" TO "+postgres.QuoteIdent(blue))

	admin := login(t, adminRole, adminPw)
	greenPw := []byte("Green-Pw-3")
	if testkit.Cluster(t).Major >= postgres.AdminOptionMajor {
		// 16 and later: granting membership in grp needs ADMIN OPTION on it.
		err := postgres.CloneRole(testCtx(t), admin, blue, green, greenPw)
		if !errors.Is(err, postgres.ErrPrivilege) || !strings.Contains(err.Error(), "permission denied to grant role") {
			t.Fatalf("CloneRole without ADMIN OPTION on the group: %v", err)
		}
		if ri, err := postgres.LookupRole(testCtx(t), super, green); err != nil || ri.Exists {
			t.Fatalf("a refused CloneRole left role %s behind (%v)", green, err)
		}
		mustExec(t, super, "GRANT "+postgres.QuoteIdent(group)+" TO "+postgres.QuoteIdent(adminRole)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
	}
	if err := postgres.CloneRole(testCtx(t), admin, blue, green, greenPw); err != nil {
		t.Fatal(err)
	}
	if got := memberships(t, super, green); !reflect.DeepEqual(got, []membership{{group, false}}) {
		t.Errorf("memberships = %v", got)
	}
	login(t, green, greenPw)

	// Rotating green later goes through SetPassword by the same admin.
	newPw := []byte("Green-Pw-4")
	if err := postgres.SetPassword(testCtx(t), admin, green, newPw); err != nil {
		t.Fatal(err)
	}
	login(t, green, newPw)

	// Refusals before any statement is sent.
	for _, c := range []struct{ from, to string }{{blue, blue}, {"", green}, {blue, ""}} {
		if err := postgres.CloneRole(context.Background(), admin, c.from, c.to, greenPw); err == nil {
			t.Errorf("CloneRole(%q, %q) accepted", c.from, c.to)
		}
	}
	if err := postgres.CloneRole(context.Background(), admin, blue, "x"+green, nil); err == nil {
		t.Error("CloneRole with an empty password accepted")
	}
}
