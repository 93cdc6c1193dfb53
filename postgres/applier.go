package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rekeyhq/rekey"
)

// Applier is the rekey.Applier of rekey.KindPostgresPassword secrets: it
// changes the role's password in the database inside the journaled
// rotation (strategy single, changed_by self: the role logs in with its
// current password and runs ALTER ROLE on itself).
//
// Connection parameters come from the spec: the derived value named by
// URLFrom, rendered with the secret's value and parsed, then the explicit
// Host, Port, Database, Role and SSLMode fields override it.
//
// Apply and Revert are idempotent: after a crash, recovery may call them
// again whatever the database accepts at that point. No error carries a
// password.
type Applier struct {
	// Derived are the environment's derived values (for URLFrom).
	Derived []rekey.Derived
	// Values returns the current values of the environment's secrets. It is
	// called only when the URLFrom template references secrets other than
	// the one being rotated. May be nil.
	Values func(ctx context.Context) (map[string]rekey.Value, error)

	mu sync.Mutex
	// untouched records, per secret, that the last Apply of this process
	// returned before changing anything, so that the Revert of the
	// rollback that follows need not contact the database (it may be
	// unreachable). Absent means unknown: Revert probes.
	untouched map[string]bool
}

var _ rekey.Applier = (*Applier)(nil)

func (a *Applier) setUntouched(name string, v bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.untouched == nil {
		a.untouched = map[string]bool{}
	}
	if v {
		a.untouched[name] = true
	} else {
		delete(a.untouched, name)
	}
}

func (a *Applier) takeUntouched(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.untouched[name]
	delete(a.untouched, name)
	return v
}

// supported refuses what this applier does not implement.
func supported(spec *rekey.Spec) error {
	pg := spec.Postgres
	if pg == nil {
		return rekey.Errorf(rekey.CodeInvalid, "%s has no postgres settings in rekey.yaml", spec.Name).
			WithHint("add postgres: {url_from: DATABASE_URL} (or host, port, database and role) to %s", spec.Name)
	}
	if pg.ChangedBy != "" && pg.ChangedBy != "self" {
		return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: changed_by: %s is not available yet", spec.Name, pg.ChangedBy).
			WithHint("use changed_by: self (the role changes its own password)")
	}
	if pg.Strategy != "" && pg.Strategy != "single" {
		return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: strategy %s is not available yet", spec.Name, pg.Strategy).
			WithHint("use strategy: single")
	}
	return nil
}

// Params returns the connection parameters of spec's role, with password
// pw. The derived URL is rendered with pw as the secret's value.
func (a *Applier) Params(ctx context.Context, spec *rekey.Spec, pw rekey.Value) (Params, error) {
	pg := spec.Postgres
	if pg == nil {
		return Params{}, supported(spec)
	}
	var p Params
	if pg.URLFrom != "" {
		var tmpl *rekey.Template
		for _, d := range a.Derived {
			if d.Name == pg.URLFrom {
				tmpl = d.Template
			}
		}
		if tmpl == nil {
			return Params{}, rekey.Errorf(rekey.CodeInvalid, "url_from of %s: no derived value %s in this environment", spec.Name, pg.URLFrom)
		}
		values := map[string]rekey.Value{}
		for _, ref := range tmpl.Refs() {
			if ref == spec.Name {
				continue
			}
			if a.Values == nil {
				return Params{}, rekey.Errorf(rekey.CodeInternal, "%s references %s, whose value is not available", pg.URLFrom, ref)
			}
			all, err := a.Values(ctx)
			if err != nil {
				return Params{}, rekey.Wrap(rekey.ErrorCode(err), err, "load the values %s references", pg.URLFrom)
			}
			for k, v := range all {
				values[k] = v
			}
			break
		}
		values[spec.Name] = pw
		u, err := tmpl.Render(values)
		if err != nil {
			return Params{}, rekey.Wrap(rekey.CodeInvalid, err, "render %s", pg.URLFrom)
		}
		p, err = ParseURL(u.RevealString())
		if err != nil {
			// ParseURL's errors never include the URL.
			return Params{}, rekey.Wrap(rekey.CodeInvalid, err, "%s (url_from of %s)", pg.URLFrom, spec.Name)
		}
	}
	if pg.Host != "" {
		p.Host = pg.Host
	}
	if pg.Port != 0 {
		p.Port = pg.Port
	}
	if pg.Database != "" {
		p.Database = pg.Database
	}
	if pg.Role != "" {
		p.User = pg.Role
	}
	if pg.SSLMode != "" {
		p.SSLMode = pg.SSLMode
	}
	if p.User == "" {
		return Params{}, rekey.Errorf(rekey.CodeInvalid, "%s: no role: set postgres.role in rekey.yaml, or a user in %s", spec.Name, orName(pg.URLFrom, "url_from"))
	}
	p.Password = pw.Reveal()
	return p, nil
}

func orName(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func withPassword(p Params, v rekey.Value) Params {
	p.Password = v.Reveal()
	return p
}

// pgErr turns an error of this package into a rekey error with its hint.
func pgErr(err error, code rekey.Code) error {
	return &rekey.Error{Code: code, Err: err, Hint: Hint(err)}
}

func codeOf(err error) rekey.Code {
	switch {
	case errors.Is(err, ErrAuthFailed):
		return rekey.CodeConflict
	case errors.Is(err, ErrNoSCRAM), errors.Is(err, ErrTLSRequired):
		return rekey.CodeUnsafe
	case errors.Is(err, ErrPrivilege), errors.Is(err, ErrRoleMissing):
		return rekey.CodeConflict
	}
	return rekey.CodeInternal
}

// Apply makes the database accept pending (and refuse current) as the
// role's password; Verify proves it.
func (a *Applier) Apply(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	pending, current := pendingV.Value, currentV.Value
	if err := supported(spec); err != nil {
		a.setUntouched(spec.Name, true)
		return err
	}
	a.setUntouched(spec.Name, true)
	p, err := a.Params(ctx, spec, current)
	if err != nil {
		return err
	}
	role := p.User
	pend, cur := withPassword(p, pending), withPassword(p, current)
	if len(pending.Reveal()) == 0 {
		return rekey.Errorf(rekey.CodeInvalid, "refusing to set an empty password for role %q", role)
	}
	if len(current.Reveal()) == 0 {
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
	conn, err := Connect(ctx, cur)
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
		return &rekey.Error{Code: rekey.CodeConflict,
			// The engine puts its own hint over this one: the message says what to do too.
			Msg:  fmt.Sprintf("PostgreSQL refuses the stored password of %s for role %q: it was changed outside rekey, or a rotation was interrupted (nothing was changed; run `rekey recover`, or record the database's password with `rekey set %s`)", spec.Name, role, spec.Name),
			Err:  err,
			Hint: fmt.Sprintf("run `rekey recover` to finish or undo an interrupted rotation; if the password was changed by hand, record the database's password with `rekey set %s`", spec.Name)}
	}
	defer closeQuietly(conn)
	if err := CheckSCRAM(ctx, conn); err != nil {
		return pgErr(err, codeOf(err))
	}
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, role, pending.Reveal()); err != nil {
		return pgErr(err, codeOf(err))
	}
	// The logins that prove it (new accepted, old refused) run in Verify,
	// after the .env is published: every millisecond between ALTER ROLE and
	// the publish is a window in which a fresh connection with the .env's
	// (old) password fails.
	return nil
}

// Verify checks, after publish, that the role logs in with pending and, in
// the single strategy, that current is refused.
func (a *Applier) Verify(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	pending, current := pendingV.Value, currentV.Value
	if err := supported(spec); err != nil {
		return err
	}
	p, err := a.Params(ctx, spec, pending)
	if err != nil {
		return err
	}
	old := current
	if old.IsZero() {
		old = pending // nothing to be refused: verify only checks the new one
	}
	return verify(ctx, spec.Name, p.User, withPassword(p, pending), withPassword(p, old), "new", "old")
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

// Revert makes the database accept current again (and refuse pending).
func (a *Applier) Revert(ctx context.Context, env string, spec *rekey.Spec, pendingV, currentV rekey.VersionValue) error {
	pending, current := pendingV.Value, currentV.Value
	if a.takeUntouched(spec.Name) {
		return nil // the Apply of this process changed nothing
	}
	if supported(spec) != nil {
		return nil // Apply refuses these: nothing was changed
	}
	if len(current.Reveal()) == 0 {
		return rekey.Errorf(rekey.CodeConflict, "%s has no current value to restore for PostgreSQL", spec.Name)
	}
	p, err := a.Params(ctx, spec, current)
	if err != nil {
		return err
	}
	role := p.User
	pend, cur := withPassword(p, pending), withPassword(p, current)
	ok, err := TryLogin(ctx, cur)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		return nil
	}
	if len(pending.Reveal()) == 0 {
		return rekey.Errorf(rekey.CodeConflict, "PostgreSQL refuses the current password of %s for role %q and there is no new one to log in with", spec.Name, role).
			WithHint("record the database's password with `rekey set %s`", spec.Name)
	}
	conn, err := Connect(ctx, pend)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			// Neither logs in: the database never took pending, there is
			// nothing of this rotation to undo.
			return nil
		}
		return pgErr(err, codeOf(err))
	}
	defer closeQuietly(conn)
	if err := CheckSCRAM(ctx, conn); err != nil {
		return pgErr(err, codeOf(err))
	}
	if err := SetPassword(ctx, conn, role, current.Reveal()); err != nil {
		return pgErr(err, codeOf(err))
	}
	closeQuietly(conn)
	return verify(ctx, spec.Name, role, cur, pend, "restored", "abandoned")
}

// Preflight reports whether the role can be reached and logs in with the
// current password, so `rekey rotate --all` can skip (with a warning) a
// database that is not there instead of failing the whole rotation.
func (a *Applier) Preflight(ctx context.Context, env string, spec *rekey.Spec, currentV rekey.VersionValue) error {
	current := currentV.Value
	if err := supported(spec); err != nil {
		return err
	}
	p, err := a.Params(ctx, spec, current)
	if err != nil {
		return err
	}
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the current password of role %s is refused", p.User)
	}
	return nil
}

// Accepts reports whether the role logs in with candidate (for `rekey recover --probe`).
func (a *Applier) Accepts(ctx context.Context, env string, spec *rekey.Spec, candidateV rekey.VersionValue) (bool, error) {
	candidate := candidateV.Value
	if err := supported(spec); err != nil {
		return false, err
	}
	p, err := a.Params(ctx, spec, candidate)
	if err != nil {
		return false, err
	}
	return TryLogin(ctx, p)
}
