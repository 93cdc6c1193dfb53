package postgres

// This file undoes an applied password (rollback) and ends the grace of an
// alternating role's old one.

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// Revert makes the database accept current again: in the single strategy
// it sets current back (pending is refused again); in the alternating
// strategy current's role was never touched, so there is normally nothing
// to do. The idle role keeps the abandoned password (it is in the store's
// history): an application instance that read the .env during the
// rotation keeps working until the next rotation sets a new one.
func (a *Applier) Revert(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	if a.takeUntouched(spec.Name) {
		return nil // the Apply of this process changed nothing
	}
	if supported(spec) != nil {
		return nil // Apply refuses these: nothing was changed
	}
	if currentV.Value.IsZero() {
		return rekey.Errorf(rekey.CodeConflict, "%s has no current value to restore for PostgreSQL", spec.Name)
	}
	switch {
	case alternating(spec):
		return a.revertAlternating(ctx, spec, pendingV, currentV)
	case byAdmin(spec):
		return a.revertSingleAdmin(ctx, spec, pendingV, currentV)
	}
	return a.revertSingleSelf(ctx, spec, pendingV, currentV)
}

func (a *Applier) revertSingleSelf(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	pend, cur, err := a.selfParams(ctx, spec, pendingV, currentV)
	if err != nil {
		return err
	}
	role := cur.User
	ok, err := TryLogin(ctx, cur)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		return nil
	}
	if len(pend.Password) == 0 {
		return rekey.Errorf(rekey.CodeConflict, "PostgreSQL refuses the current password of %s for role %q and there is no new one to log in with", spec.Name, role).
			WithHint("record the database's password with `rekey set %s`", spec.Name)
	}
	conn, err := selfSession(ctx, pend)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			// Neither logs in: the database never took pending, there is
			// nothing of this rotation to undo.
			return nil
		}
		return pgErr(err, codeOf(err))
	}
	defer closeQuietly(conn)
	if err := SetPassword(ctx, conn, role, cur.Password); err != nil {
		return setErr(spec, err, role, role)
	}
	closeQuietly(conn)
	return verify(ctx, spec.Name, role, cur, pend, "restored", "abandoned")
}

func (a *Applier) revertSingleAdmin(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	p, err := a.ParamsFor(ctx, spec, currentV)
	if err != nil {
		return err
	}
	set, err := a.ensure(ctx, spec, p, func() (*pgx.Conn, string, error) { return a.changer(ctx, spec, currentV) })
	if err != nil || !set {
		return err
	}
	old := withPassword(p, pendingV.Value)
	if pendingV.Value.IsZero() {
		old = p
	}
	return verify(ctx, spec.Name, p.User, p, old, "restored", "abandoned")
}

// revertAlternating: current's role logs in with current (the normal case:
// Apply never touches it), or it is set again through the admin
// connection, or a session of the pending role.
func (a *Applier) revertAlternating(ctx context.Context, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	cp, err := a.ParamsFor(ctx, spec, currentV)
	if err != nil {
		return err
	}
	set, err := a.ensure(ctx, spec, cp, func() (*pgx.Conn, string, error) {
		role := pendingRole(spec, pendingV.Version, currentV.Version)
		if role == cp.User {
			return nil, "", storedRefused(spec, cp.User, nil)
		}
		return a.changer(ctx, spec, withRole(pendingV, role))
	})
	if err != nil || !set {
		return err
	}
	ok, err := TryLogin(ctx, cp)
	if err != nil {
		return pgErr(err, rekey.CodeVerifyFailed)
	}
	if !ok {
		return rekey.Errorf(rekey.CodeVerifyFailed, "after ALTER ROLE, the restored password of %s does not log in as role %q", spec.Name, cp.User)
	}
	return nil
}

// Expire is the rekey.Expirer hook (alternating strategy; a no-op for
// single): after the grace period, the role of the superseded version old
// gets a fresh random password that is never stored or shown, so that a
// copy of old's password that leaked is worthless. The role changes its
// own password, logged in with old's (no privilege needed). Idempotent:
// when old's password no longer logs in as its role there is nothing to
// end. It refuses to touch the role the current version uses.
func (a *Applier) Expire(ctx context.Context, env string, spec *rekey.Spec, old rekey.VersionValue) error {
	if !alternating(spec) || old.Value.IsZero() {
		return nil
	}
	if err := supported(spec); err != nil {
		return err
	}
	role := RoleOf(spec, old.Version)
	if a.Current != nil {
		cur, err := a.Current(ctx, spec.Name)
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return err
		}
		if err == nil && (cur.N == old.N || RoleOf(spec, cur) == role) {
			return rekey.Errorf(rekey.CodeConflict, "refusing to expire %s v%d: role %q belongs to the current version v%d", spec.Name, old.N, role, cur.N)
		}
	}
	p, err := a.ParamsFor(ctx, spec, old)
	if err != nil {
		return err
	}
	conn, err := selfSession(ctx, p)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return nil // already ended (or changed since): nothing of old's to end
		}
		return pgErr(err, codeOf(err))
	}
	defer closeQuietly(conn)
	fresh, err := randomPassword()
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "random password")
	}
	err = SetPassword(ctx, conn, role, fresh)
	clear(fresh)
	if err != nil {
		return setErr(spec, err, role, role)
	}
	closeQuietly(conn)
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		return rekey.Errorf(rekey.CodeVerifyFailed, "after ALTER ROLE, the expired password of %s v%d still logs in as role %q", spec.Name, old.N, role).
			WithHint("the server does not check this role's password (a trust or peer line in pg_hba.conf?)")
	}
	return nil
}
