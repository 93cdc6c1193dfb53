package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// PairRole proposes the second role of an alternating pair for role
// first: app_blue ↔ app_green (also -blue/-green, Blue/Green), else
// first + "_green". It is "" when the result would be longer than 63 bytes.
func PairRole(first string) string {
	for _, p := range [][2]string{{"_blue", "_green"}, {"-blue", "-green"}, {"Blue", "Green"}, {"_BLUE", "_GREEN"}} {
		if base, ok := strings.CutSuffix(first, p[0]); ok && base != "" {
			return checkLen(base + p[1])
		}
		if base, ok := strings.CutSuffix(first, p[1]); ok && base != "" {
			return checkLen(base + p[0])
		}
	}
	return checkLen(first + "_green")
}

func checkLen(s string) string {
	if len(s) > maxIdentLen {
		return ""
	}
	return s
}

// RoleTemplate rewrites the source of a postgres:// URL template so that
// its user is the role of the version of secret name:
//
//	postgres://app_blue:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app
//	postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app
//
// A template that already references {{ name.role }} is returned as is
// (changed false). The error never quotes the template (it may hold
// literal secrets).
func RoleTemplate(src, name string) (out string, changed bool, err error) {
	t, err := rekey.ParseTemplate(src)
	if err != nil {
		return "", false, err
	}
	for _, ref := range t.Refs() {
		if ref == name+".role" {
			return src, false, nil
		}
	}
	fail := func(why string) (string, bool, error) {
		return "", false, rekey.Errorf(rekey.CodeInvalid, "cannot put the role into the URL template: %s", why).
			WithHint("write {{ %s.role | urlquery }} where the user name goes in the template", name)
	}
	i := strings.Index(src, "://")
	if i < 0 {
		return fail("it is not a URL (no ://)")
	}
	rest := src[i+3:]
	at := strings.Index(rest, "@")
	if at < 0 {
		return fail("it has no user@ part")
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	if user == "" || strings.Contains(user, "{{") || strings.ContainsAny(user, "/?#") {
		return fail("no literal user name before the password")
	}
	out = src[:i+3] + "{{ " + name + ".role | urlquery }}" + rest[len(user):]
	if _, err := rekey.ParseTemplate(out); err != nil {
		return fail("the result does not parse")
	}
	return out, true, nil
}

// RoleInfo says whether a role exists and can log in.
type RoleInfo struct {
	Exists, CanLogin, Super bool
}

// LookupRole reads pg_roles for role on conn.
func LookupRole(ctx context.Context, conn *pgx.Conn, role string) (RoleInfo, error) {
	var ri RoleInfo
	err := conn.QueryRow(ctx, "SELECT rolcanlogin, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
		pgx.QueryExecModeSimpleProtocol, role).Scan(&ri.CanLogin, &ri.Super)
	if errors.Is(err, pgx.ErrNoRows) {
		return RoleInfo{}, nil
	}
	if err != nil {
		return RoleInfo{}, newError("look up role", connAddr(conn), role, err)
	}
	ri.Exists = true
	return ri, nil
}

// EnsurePair makes sure role second exists as a copy of first (CloneRole,
// with a random password nobody knows: the first rotation sets one). It
// reports whether it created it. An existing second role is kept as it is
// if it can log in. conn is the session that creates it: first's own
// (first needs CREATEROLE; PostgreSQL 15 and earlier only) or an admin's
// (CREATEROLE; from 16, also ADMIN OPTION on first, on second when it
// exists, and on first's groups when it does not). CheckPair runs first:
// a missing privilege is refused, with the statements to run, before
// anything is created.
func EnsurePair(ctx context.Context, conn *pgx.Conn, first, second string) (bool, error) {
	if first == second {
		return false, &Error{Op: opClone, Addr: connAddr(conn), Role: second, Detail: "the two roles of the pair are the same"}
	}
	ri, err := LookupRole(ctx, conn, second)
	if err != nil {
		return false, err
	}
	// What this server version needs, checked before anything is created.
	pc, err := CheckPair(ctx, conn, first, second, ri.Exists)
	if err != nil {
		return false, err
	}
	if pc.SelfImpossible {
		return false, selfImpossibleError(conn, pc.Major, first, second, pc.Groups)
	}
	if len(pc.Missing) > 0 {
		return false, missingError(conn, pc, second)
	}
	if ri.Exists {
		if !ri.CanLogin {
			return false, &Error{Op: opClone, Addr: connAddr(conn), Role: second, Detail: fmt.Sprintf("role %q exists but cannot log in", second),
				hint: fmt.Sprintf("as an administrator run ALTER ROLE %s LOGIN, or choose another name for the second role", QuoteIdent(second))}
		}
		return false, nil
	}
	pw, err := randomPassword()
	if err != nil {
		return false, err
	}
	defer clear(pw)
	if err := CloneRole(ctx, conn, first, second, pw); err != nil {
		var e *Error
		if errors.Is(err, ErrPrivilege) && errors.As(err, &e) && e.hint == "" {
			e.hint = fmt.Sprintf("role %q may not create role %q on PostgreSQL %d: as an administrator run ALTER ROLE %s CREATEROLE (PostgreSQL 16 and later: and GRANT <each group role of %s> TO %s WITH ADMIN OPTION, INHERIT FALSE, SET FALSE), or create the role yourself (CREATE ROLE %s LOGIN IN ROLE <the group roles of %s>) and run this again",
				sessionRole(conn), second, pc.Major, QuoteIdent(sessionRole(conn)), QuoteIdent(first), QuoteIdent(sessionRole(conn)), QuoteIdent(second), QuoteIdent(first))
		}
		return false, err
	}
	return true, nil
}
