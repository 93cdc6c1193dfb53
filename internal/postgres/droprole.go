package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

const opDrop = "drop role"

// DropRoleStatement is the statement that drops role: what DropRole runs,
// and what a hint tells an administrator to run when it could not.
func DropRoleStatement(role string) string { return "DROP ROLE " + QuoteIdent(role) }

// DropRole drops role through conn: the undo of EnsurePair's CloneRole when
// a step after it fails (init, add-role). conn must be the same kind of
// session that created the role (the first role's own, or the admin's): it
// may drop what it could create (CREATEROLE; from PostgreSQL 16 also ADMIN
// OPTION on the role, which its creator holds). The role's memberships go
// with it; a role that owns an object or holds a privilege on one is not
// dropped (PostgreSQL refuses: SQLSTATE 2BP01), nor a superuser unless the
// session is one. The caller drops only a role it created itself
// (EnsurePair reported so), never one that existed before.
func DropRole(ctx context.Context, conn *pgx.Conn, role string) error {
	addr := connAddr(conn)
	if err := checkRoleName(role); err != nil {
		return &Error{Op: opDrop, Addr: addr, Role: role, Detail: strings.TrimPrefix(err.Error(), "postgres: ")}
	}
	if conn.PgConn().TxStatus() != 'I' {
		return &Error{Op: opDrop, Addr: addr, Role: role, Detail: "the connection is inside a transaction"}
	}
	if _, err := conn.PgConn().Exec(ctx, DropRoleStatement(role)).ReadAll(); err != nil {
		e := newError(opDrop, addr, role, err)
		if e.Kind == ErrPrivilege || e.SQLState == "2BP01" {
			e.hint = fmt.Sprintf("as an administrator run %s", DropRoleStatement(role))
		}
		return e
	}
	return nil
}
