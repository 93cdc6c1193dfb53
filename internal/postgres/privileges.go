package postgres

// This file knows which privileges the alternating strategy needs on each
// PostgreSQL major version, and names the statements an administrator runs
// when one is missing.
//
// PostgreSQL 15 and earlier: CREATEROLE lets a role create roles, grant
// membership in any non-superuser role and change any non-superuser role's
// password.
//
// PostgreSQL 16 and later: CREATEROLE only manages the roles the session
// has ADMIN OPTION on (a role it creates gets it automatically, granted by
// the bootstrap superuser; createrole_self_grant may add SET and INHERIT),
// granting membership in a group needs ADMIN OPTION on that group, and
// ALTER ROLE ... PASSWORD of another role needs CREATEROLE and ADMIN OPTION
// on it. ADMIN OPTION is a membership, and memberships may not form a
// cycle: two roles can never each change the other's password, so the
// current role of an alternating pair cannot change the idle one's in both
// directions (changed_by: self); an admin connection can.

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AdminOptionMajor is the first major version where changing another
// role's password and granting a membership need ADMIN OPTION.
const AdminOptionMajor = 16

// ServerVersionNum is the server's server_version_num (150018, 160004),
// read from the connection's parameters, else asked.
func ServerVersionNum(ctx context.Context, conn *pgx.Conn) (int, error) {
	if v := conn.PgConn().ParameterStatus("server_version_num"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n, nil
		}
	}
	var s string
	if err := conn.QueryRow(ctx, "SHOW server_version_num", pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil {
		return 0, newError("server version", connAddr(conn), sessionRole(conn), err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, &Error{Op: "server version", Addr: connAddr(conn), Detail: fmt.Sprintf("server_version_num %q is not a number", s)}
	}
	return n, nil
}

// majorOf is the major version of a server_version_num (10 and later).
func majorOf(num int) int { return num / 10000 }

// AdminRoleExample is the name the statements give an admin role that
// does not exist yet.
const AdminRoleExample = "rekey_admin"

// AdminSetup is what an administrator runs on a server of major version
// major so that a login role (AdminRoleExample) can create role second as a
// copy of first (a member of groups) and change both passwords, with no
// more privilege than that version needs.
func AdminSetup(major int, first, second string, groups []string) []string {
	a := QuoteIdent(AdminRoleExample)
	stmts := []string{"CREATE ROLE " + a + " LOGIN CREATEROLE PASSWORD '…'"}
	if major < AdminOptionMajor {
		return stmts
	}
	for _, g := range groups {
		stmts = append(stmts, grantAdmin(g, AdminRoleExample))
	}
	stmts = append(stmts, grantAdmin(first, AdminRoleExample))
	if second != "" {
		stmts = append(stmts, "-- if "+QuoteIdent(second)+" exists already: "+grantAdmin(second, AdminRoleExample))
	}
	return stmts
}

// grantAdmin is the PostgreSQL 16+ grant of ADMIN OPTION on role to to,
// and nothing else: a GRANT there defaults to INHERIT TRUE and SET TRUE,
// which would let to use role's privileges (read the app's tables). ADMIN
// OPTION alone lets it grant role (a clone's memberships) and, with
// CREATEROLE, change role's password. It is a delegation, not a boundary:
// to may grant role to itself (see SECURITY.md).
func grantAdmin(role, to string) string {
	return "GRANT " + QuoteIdent(role) + " TO " + QuoteIdent(to) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
}

// sessionPrivs are the session role's attributes.
type sessionPrivs struct {
	super, createRole bool
}

func readSessionPrivs(ctx context.Context, conn *pgx.Conn) (sessionPrivs, error) {
	var s sessionPrivs
	err := conn.QueryRow(ctx, "SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user",
		pgx.QueryExecModeSimpleProtocol).Scan(&s.super, &s.createRole)
	if err != nil {
		return s, newError("read privileges", connAddr(conn), sessionRole(conn), err)
	}
	return s, nil
}

// groupsOf lists the roles role is a direct member of.
func groupsOf(ctx context.Context, conn *pgx.Conn, role string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT g.rolname FROM pg_catalog.pg_auth_members m
	JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles r ON r.oid = m.member
	WHERE r.rolname = $1 ORDER BY 1`, pgx.QueryExecModeSimpleProtocol, role)
	if err != nil {
		return nil, newError("read memberships", connAddr(conn), role, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, newError("read memberships", connAddr(conn), role, err)
	}
	return out, nil
}

// isAdminOf reports whether the session role has ADMIN OPTION on role.
func isAdminOf(ctx context.Context, conn *pgx.Conn, role string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER WITH ADMIN OPTION')",
		pgx.QueryExecModeSimpleProtocol, role).Scan(&ok)
	if err != nil {
		return false, newError("read privileges", connAddr(conn), role, err)
	}
	return ok, nil
}

// PairCheck is what checkPair found.
type PairCheck struct {
	Major   int      // the server's major version
	Missing []string // the statements an administrator must run, in order
	// SelfImpossible: the session is the first role itself on 16 or later,
	// where the roles of a pair cannot change each other's password.
	SelfImpossible bool
	Groups         []string // the groups of first
}

// CheckPair says whether the session of conn can set up and run the
// alternating pair first/second (second exists when secondExists) on this
// server, and what an administrator must run if not. Nothing is changed.
func CheckPair(ctx context.Context, conn *pgx.Conn, first, second string, secondExists bool) (PairCheck, error) {
	var pc PairCheck
	num, err := ServerVersionNum(ctx, conn)
	if err != nil {
		return pc, err
	}
	pc.Major = majorOf(num)
	if pc.Groups, err = groupsOf(ctx, conn, first); err != nil {
		return pc, err
	}
	sp, err := readSessionPrivs(ctx, conn)
	if err != nil || sp.super {
		return pc, err
	}
	who := sessionRole(conn)
	if !sp.createRole {
		pc.Missing = append(pc.Missing, "ALTER ROLE "+QuoteIdent(who)+" CREATEROLE")
	}
	if pc.Major < AdminOptionMajor {
		return pc, nil
	}
	if who == first || who == second {
		pc.SelfImpossible = true
		return pc, nil
	}
	need := []string{first}
	if secondExists {
		need = append(need, second)
	} else {
		need = append(pc.Groups, need...)
	}
	for _, r := range need {
		ok, err := isAdminOf(ctx, conn, r)
		if err != nil {
			return pc, err
		}
		if !ok {
			pc.Missing = append(pc.Missing, grantAdmin(r, who))
		}
	}
	return pc, nil
}

// selfImpossibleError is the refusal of changed_by: self for an
// alternating pair on PostgreSQL 16 and later.
func selfImpossibleError(conn *pgx.Conn, major int, first, second string, groups []string) *Error {
	return &Error{Op: "alternating pair", Addr: connAddr(conn), Role: first, Kind: ErrPrivilege,
		Detail: fmt.Sprintf("on PostgreSQL %d a role may change another role's password only with ADMIN OPTION on it, and PostgreSQL refuses the circular membership that %q and %q holding it on each other would be: changed_by: self cannot alternate between them", major, first, second),
		hint: "the alternating strategy needs an admin connection on PostgreSQL 16 and later. As an administrator run: " +
			strings.Join(AdminSetup(major, first, second, groups), "; ") +
			"; then give rekey that role's URL: for `rekey init --postgres-alternating`, as PG_ADMIN_URL=postgres://rekey_admin:…@HOST/DB in the .env; in an existing rekey.yaml, declare PG_ADMIN_URL (kind: manual), set changed_by: admin and admin_secret: PG_ADMIN_URL under postgres: of the password, `rekey config trust`, `rekey set PG_ADMIN_URL`, and run `rekey postgres add-role`"}
}

// missingError is the refusal when the session lacks privileges for the pair.
func missingError(conn *pgx.Conn, pc PairCheck, second string) *Error {
	who := sessionRole(conn)
	return &Error{Op: opClone, Addr: connAddr(conn), Role: second, Kind: ErrPrivilege,
		Detail: fmt.Sprintf("role %q lacks the privileges PostgreSQL %d needs to create role %q and change the pair's passwords", who, pc.Major, second),
		hint:   fmt.Sprintf("as an administrator run (PostgreSQL %d): %s; then run this again", pc.Major, strings.Join(pc.Missing, "; "))}
}
