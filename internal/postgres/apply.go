package postgres

// This file applies a new password (ALTER ROLE with a SCRAM verifier) for
// each strategy and checks that the database took it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// Apply makes the database accept pending as the password of its role:
// in the single strategy the role's only password (current is refused
// from then on), in the alternating strategy the idle role's (current's
// role keeps its password). Verify proves it.
func (a *Applier) Apply(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	a.setUntouched(spec.Name, true)
	if err := supported(spec); err != nil {
		return err
	}
	if len(pendingV.Value.Reveal()) == 0 {
		return rekey.Errorf(rekey.CodeInvalid, "refusing to set an empty password for %s", spec.Name)
	}
	switch {
	case alternating(spec):
		return a.applyAlternating(ctx, spec, pendingV, currentV)
	case byAdmin(spec):
		return a.applySingleAdmin(ctx, spec, pendingV)
	}
	return a.applySingleSelf(ctx, spec, pendingV, currentV)
}

// applySingleSelf: the role logs in with its current password and changes
// its own.
func (a *Applier) applySingleSelf(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	pend, cur, err := a.selfParams(ctx, spec, pendingV, currentV)
	if err != nil {
		return err
	}
	role := cur.User
	if len(cur.Password) == 0 {
		// No current value to log in with: only an already applied pending will do.
		ok, err := TryLogin(ctx, pend)
		if err != nil {
			return pgErr(err, codeOf(err))
		}
		if ok {
			a.setUntouched(spec.Name, false)
			return nil
		}
		return rekey.Errorf(rekey.CodeConflict, "%s has no current value to log in to PostgreSQL as role %q", spec.Name, role).
			WithHint("record the database's password with `rekey set %s`", spec.Name)
	}
	conn, err := selfSession(ctx, cur)
	if err != nil {
		if !errors.Is(err, ErrAuthFailed) {
			return pgErr(err, codeOf(err))
		}
		// The current password is refused: a crash after ALTER ROLE leaves
		// the database on pending already.
		ok, perr := TryLogin(ctx, pend)
		if perr == nil && ok {
			a.setUntouched(spec.Name, false)
			return nil
		}
		return storedRefused(spec, role, err)
	}
	defer closeQuietly(conn)
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, role, pend.Password); err != nil {
		return setErr(spec, err, role, role)
	}
	// The logins that prove it (new accepted, old refused) run in Verify,
	// after the .env is published: every millisecond between ALTER ROLE and
	// the publish is a window in which a fresh connection with the .env's
	// (old) password fails.
	return nil
}

// selfParams returns the connection parameters of a single role that
// changes its own password, with the pending and with the current password.
func (a *Applier) selfParams(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) (pend, cur Params, err error) {
	p, err := a.ParamsFor(ctx, spec, currentV)
	if err != nil {
		return Params{}, Params{}, err
	}
	return withPassword(p, pendingV.Value), withPassword(p, currentV.Value), nil
}

// selfSession logs in with p and checks that the server stores SCRAM
// verifiers; the caller closes the session. Its errors are this package's
// (a refused password is ErrAuthFailed).
func selfSession(ctx context.Context, p Params) (*pgx.Conn, error) {
	conn, err := Connect(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := CheckSCRAM(ctx, conn); err != nil {
		closeQuietly(conn)
		return nil, err
	}
	return conn, nil
}

// ensure makes p.Password the password of role p.User. When it logs in
// with it already (a crash after ALTER ROLE, or nothing to undo), set is
// false; else the password is set through the session open returns (and
// the role it names, for messages), closed before ensure returns. Apply is
// marked as having touched the database from the moment it may have.
func (a *Applier) ensure(ctx context.Context, spec *rekey.Spec, p Params, open func() (*pgx.Conn, string, error)) (set bool, err error) {
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return false, pgErr(err, codeOf(err))
	}
	if ok {
		a.setUntouched(spec.Name, false)
		return false, nil
	}
	conn, who, err := open()
	if err != nil {
		return false, err
	}
	defer closeQuietly(conn)
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, p.User, p.Password); err != nil {
		return false, setErr(spec, err, who, p.User)
	}
	return true, nil
}

// storedRefused is the error for a current password the database refuses.
func storedRefused(spec *rekey.Spec, role string, err error) error {
	if alternating(spec) {
		// rekey set cannot help here: a new version goes to the other role,
		// whose password only a session of this one may change (changed_by: self).
		return &rekey.Error{Code: rekey.CodeConflict,
			Msg: fmt.Sprintf("PostgreSQL refuses the stored password of %s for role %q, the role that changes its pair's passwords: it was changed outside rekey, or a rotation was interrupted (nothing was changed)", spec.Name, role),
			Err: err,
			Hint: fmt.Sprintf("run `rekey recover --probe` to find the stored version the database accepts; if role %q's password was changed by hand, set it back to the stored one (`rekey get %s` prints it; in psql, \\password %s), or switch to changed_by: admin, which needs no password of the pair",
				role, spec.Name, QuoteIdent(role))}
	}
	return &rekey.Error{Code: rekey.CodeConflict,
		// The engine puts its own hint over this one: the message says what to do too.
		Msg:  fmt.Sprintf("PostgreSQL refuses the stored password of %s for role %q: it was changed outside rekey, or a rotation was interrupted (nothing was changed; run `rekey recover`, or record the database's password with `rekey set %s`)", spec.Name, role, spec.Name),
		Err:  err,
		Hint: fmt.Sprintf("run `rekey recover` to finish or undo an interrupted rotation; if the password was changed by hand, record the database's password with `rekey set %s`", spec.Name)}
}

// applySingleAdmin: pending already logs in (a crash after ALTER ROLE), or
// the admin connection sets it. The current password is not needed.
func (a *Applier) applySingleAdmin(ctx context.Context, spec *rekey.Spec, pendingV rekey.VersionValue) error {
	p, err := a.ParamsFor(ctx, spec, pendingV)
	if err != nil {
		return err
	}
	_, err = a.ensure(ctx, spec, p, func() (*pgx.Conn, string, error) { return a.changer(ctx, spec, pendingV) })
	return err
}

// changer opens the session that changes another role's password in the
// alternating strategy: the admin connection, or a session of role `as`
// logged in with its value (which needs CREATEROLE). It returns the
// session's role for messages.
func (a *Applier) changer(ctx context.Context, spec *rekey.Spec, as rekey.VersionValue) (*pgx.Conn, string, error) {
	if byAdmin(spec) {
		conn, err := a.adminConn(ctx, spec)
		if err != nil {
			return nil, "", err
		}
		return conn, sessionRole(conn), nil
	}
	p, err := a.ParamsFor(ctx, spec, as)
	if err != nil {
		return nil, "", err
	}
	if len(p.Password) == 0 {
		return nil, "", rekey.Errorf(rekey.CodeConflict, "%s has no stored password of role %q to log in with", spec.Name, p.User).
			WithHint("record the database's password with `rekey set %s`, or use changed_by: admin", spec.Name)
	}
	conn, err := selfSession(ctx, p)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return nil, p.User, storedRefused(spec, p.User, err)
		}
		return nil, p.User, pgErr(err, codeOf(err))
	}
	return conn, p.User, nil
}

// applyAlternating sets pending on the idle role (pending's role): already
// done if pending logs in as it; else through the changer session.
func (a *Applier) applyAlternating(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	role := pendingRole(spec, pendingV.Version, currentV.Version)
	if cur := RoleOf(spec, currentV.Version); role == cur && !currentV.Value.IsZero() {
		return rekey.Errorf(rekey.CodeInvalid, "the new version of %s belongs to role %q, which the current version uses", spec.Name, role).
			WithHint("the alternating strategy sets the password of the role the application does not use: check roles in rekey.yaml")
	}
	p, err := a.ParamsFor(ctx, spec, withRole(pendingV, role)) // p.User is role
	if err != nil {
		return err
	}
	_, err = a.ensure(ctx, spec, p, func() (*pgx.Conn, string, error) { return a.changer(ctx, spec, currentV) })
	return err
}

// Verify checks, after publish, that pending logs in as its role; in the
// single strategy, that current is refused; in the alternating strategy,
// that pending's session runs a query as its role and that current still
// logs in as its own role (it stays valid for the grace period).
func (a *Applier) Verify(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	if err := supported(spec); err != nil {
		return err
	}
	if alternating(spec) {
		return a.verifyAlternating(ctx, spec, pendingV, currentV)
	}
	pending, current := pendingV.Value, currentV.Value
	p, err := a.ParamsFor(ctx, spec, pendingV)
	if err != nil {
		return err
	}
	old := current
	if old.IsZero() {
		old = pending // nothing to be refused: verify only checks the new one
	}
	return verify(ctx, spec.Name, p.User, withPassword(p, pending), withPassword(p, old), "new", "old")
}

func (a *Applier) verifyAlternating(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	role := pendingRole(spec, pendingV.Version, currentV.Version)
	p, err := a.ParamsFor(ctx, spec, withRole(pendingV, role))
	if err != nil {
		return err
	}
	if err := LoginQuery(ctx, p); err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return rekey.Errorf(rekey.CodeVerifyFailed, "the new password of %s does not log in as role %q", spec.Name, role)
		}
		return pgErr(err, rekey.CodeVerifyFailed)
	}
	if currentV.Value.IsZero() || RoleOf(spec, currentV.Version) == role {
		return nil
	}
	cp, err := a.ParamsFor(ctx, spec, currentV)
	if err != nil {
		return err
	}
	ok, err := TryLogin(ctx, cp)
	if err != nil {
		return pgErr(err, rekey.CodeVerifyFailed)
	}
	if !ok {
		return rekey.Errorf(rekey.CodeVerifyFailed, "after setting the password of role %q, the current password of %s no longer logs in as role %q: applications not yet restarted would be locked out", role, spec.Name, cp.User).
			WithHint("something else changed the password of role %q; `rekey recover --probe` finds the stored version the database accepts", cp.User)
	}
	return nil
}

// verify checks that want logs in and, unless they are equal, that old is refused.
func verify(ctx context.Context, name, role string, want, old Params, wantWhat, oldWhat string) error {
	ok, err := TryLogin(ctx, want)
	if err != nil {
		return pgErr(err, rekey.CodeVerifyFailed)
	}
	if !ok {
		return rekey.Errorf(rekey.CodeVerifyFailed, "after ALTER ROLE, the %s password of %s does not log in as role %q", wantWhat, name, role)
	}
	if bytes.Equal(want.Password, old.Password) {
		return nil
	}
	ok, err = TryLogin(ctx, old)
	if err != nil {
		return pgErr(err, rekey.CodeVerifyFailed)
	}
	if ok {
		return rekey.Errorf(rekey.CodeVerifyFailed, "after ALTER ROLE, the %s password of %s still logs in as role %q", oldWhat, name, role).
			WithHint("the server does not check this role's password (a trust or peer line in pg_hba.conf?): rotating it protects nothing until it does")
	}
	return nil
}
