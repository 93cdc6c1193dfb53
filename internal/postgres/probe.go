package postgres

// This file asks the database, without changing anything, whether a
// rotation can go ahead (Preflight) and which password it accepts.

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// LoginQuery logs in with p and runs a query that checks the session's
// user is p.User. Errors are *Error (ErrAuthFailed for a refused password).
func LoginQuery(ctx context.Context, p Params) error {
	conn, err := Connect(ctx, p)
	if err != nil {
		return err
	}
	defer closeQuietly(conn)
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user", pgx.QueryExecModeSimpleProtocol).Scan(&user); err != nil {
		return newError("query", connAddr(conn), p.User, err, p.secrets()...)
	}
	if user != p.User {
		return &Error{Op: "query", Addr: connAddr(conn), Role: p.User, Detail: fmt.Sprintf("the session runs as %q", user)}
	}
	return nil
}

// Preflight reports whether the role of the current version can be
// reached and logs in with the current password (and, with changed_by:
// admin, whether the admin connection logs in), so `rekey rotate --all`
// can skip (with a warning) a database that is not there instead of
// failing the whole rotation.
func (a *Applier) Preflight(ctx context.Context, env string, spec *rekey.Spec, currentV rekey.VersionValue) error {
	role, ok, err := a.login(ctx, spec, currentV)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the current password of role %s is refused", role)
	}
	if byAdmin(spec) {
		conn, err := a.adminConn(ctx, spec)
		if err != nil {
			return err
		}
		closeQuietly(conn)
	}
	return nil
}

// Accepts reports whether candidate logs in as its role (for `rekey
// recover --probe`).
func (a *Applier) Accepts(ctx context.Context, env string, spec *rekey.Spec, candidateV rekey.VersionValue) (bool, error) {
	_, ok, err := a.login(ctx, spec, candidateV)
	return ok, err
}

// login reports whether the password of version v logs in as its role,
// and names the role (for messages). Errors are those of supported,
// ParamsFor and TryLogin, as they are.
func (a *Applier) login(ctx context.Context, spec *rekey.Spec, v rekey.VersionValue) (role string, ok bool, err error) {
	if err := supported(spec); err != nil {
		return "", false, err
	}
	p, err := a.ParamsFor(ctx, spec, v)
	if err != nil {
		return "", false, err
	}
	ok, err = TryLogin(ctx, p)
	return p.User, ok, err
}
