package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// Applier is the rekey.Applier of rekey.KindPostgresPassword secrets: it
// changes the role's password in the database inside the journaled
// rotation, always with a SCRAM verifier computed here.
//
// Who changes it (PostgresSpec.ChangedBy):
//   - self: a session logged in with the current password (strategy single:
//     the role changes its own password; alternating: the current role
//     changes the idle one's, which needs CREATEROLE);
//   - admin: a session opened with the connection URL held by another
//     managed secret (PostgresSpec.AdminSecret, read through Values).
//
// Strategies (PostgresSpec.Strategy):
//   - single: one role; after ALTER ROLE the old password is refused;
//   - alternating: two login roles (Roles); each version carries the role
//     it belongs to in Attrs["role"] (chosen by Attrs), each rotation sets
//     the new password on the idle role and the .env then points at it; the
//     other role keeps its password until Expire ends it after the grace
//     period. A version without a role attribute (imported before the
//     switch to alternating) belongs to Roles[0].
//
// Connection parameters come from the spec: the derived value named by
// URLFrom, rendered with the version's value (and its attributes, for
// {{ NAME.role }}) and parsed, then the explicit Host, Port, Database, Role
// and SSLMode fields override it; in the alternating strategy the
// version's role is the user.
//
// Apply, Revert and Expire are idempotent: after a crash, recovery may call
// them again whatever the database accepts at that point. No error carries
// a password.
type Applier struct {
	// Derived are the environment's derived values (for URLFrom).
	Derived []rekey.Derived
	// Values returns the current values of the environment's secrets. It is
	// called when the URLFrom template references secrets other than the
	// one being rotated, and for the admin connection (AdminSecret). May be
	// nil.
	Values func(ctx context.Context) (map[string]rekey.Value, error)
	// Current returns the version of a secret labeled current; Expire uses
	// it to refuse ending the role the application uses. May be nil.
	Current func(ctx context.Context, name string) (rekey.Version, error)

	mu sync.Mutex
	// untouched records, per secret, that the last Apply of this process
	// returned before changing anything, so that the Revert of the
	// rollback that follows need not contact the database (it may be
	// unreachable). Absent means unknown: Revert probes.
	untouched map[string]bool
}

var (
	_ rekey.Applier     = (*Applier)(nil)
	_ rekey.Attributer  = (*Applier)(nil)
	_ rekey.Expirer     = (*Applier)(nil)
	_ rekey.Verifier    = (*Applier)(nil)
	_ rekey.Prober      = (*Applier)(nil)
	_ rekey.Preflighter = (*Applier)(nil)
)

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
	switch pg.ChangedBy {
	case "", "self":
	case "admin":
		if pg.AdminSecret == "" {
			return rekey.Errorf(rekey.CodeInvalid, "%s: changed_by: admin needs admin_secret", spec.Name).
				WithHint("admin_secret names the managed secret holding the admin connection URL, e.g. admin_secret: PG_ADMIN_URL")
		}
		if pg.AdminSecret == spec.Name {
			return rekey.Errorf(rekey.CodeInvalid, "%s: admin_secret names the secret itself", spec.Name).
				WithHint("admin_secret names another managed secret holding an admin connection URL")
		}
	default:
		return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: changed_by: %s is not available", spec.Name, pg.ChangedBy).
			WithHint("use changed_by: self (the role changes its own password) or changed_by: admin")
	}
	switch pg.Strategy {
	case "", "single":
	case "alternating":
		if len(pg.Roles) != 2 || pg.Roles[0] == "" || pg.Roles[1] == "" || pg.Roles[0] == pg.Roles[1] {
			return rekey.Errorf(rekey.CodeInvalid, "%s: strategy: alternating needs two different roles", spec.Name).
				WithHint("list them in rekey.yaml: roles: [app_blue, app_green]; `rekey postgres add-role` creates the second")
		}
	default:
		return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: strategy %s is not available", spec.Name, pg.Strategy).
			WithHint("use strategy: single or alternating")
	}
	return nil
}

// alternating reports whether spec uses the alternating strategy.
func alternating(spec *rekey.Spec) bool {
	return spec.Postgres != nil && spec.Postgres.Strategy == "alternating" && len(spec.Postgres.Roles) == 2
}

// byAdmin reports whether an admin connection changes the password.
func byAdmin(spec *rekey.Spec) bool {
	return spec.Postgres != nil && spec.Postgres.ChangedBy == "admin"
}

// RoleOf is the login role of version v in the alternating strategy: its
// role attribute, or Roles[0] when it has none (a version imported before
// the switch to alternating belongs to the role the project used then).
// It is "" in the single strategy (the role comes from the URL or the
// spec's Role).
func RoleOf(spec *rekey.Spec, v rekey.Version) string {
	if !alternating(spec) {
		return ""
	}
	if r := v.Attrs["role"]; r != "" {
		return r
	}
	return spec.Postgres.Roles[0]
}

// Attrs is the rekey.Attributer hook: in the alternating strategy a new
// version belongs to the role the current one does not use (Roles[1] when
// the current version has no role attribute: see RoleOf). Nil otherwise.
func (a *Applier) Attrs(spec *rekey.Spec, current rekey.Version) map[string]string {
	if !alternating(spec) {
		return nil
	}
	return map[string]string{"role": idleRole(spec, current)}
}

// idleRole is the role of the pair that current does not use.
func idleRole(spec *rekey.Spec, current rekey.Version) string {
	roles := spec.Postgres.Roles
	if RoleOf(spec, current) == roles[0] {
		return roles[1]
	}
	return roles[0]
}

// pendingRole is the role a pending version belongs to: its attribute, or
// (a version created before the switch to alternating) the idle role.
func pendingRole(spec *rekey.Spec, pending, current rekey.Version) string {
	if r := pending.Attrs["role"]; r != "" {
		return r
	}
	return idleRole(spec, current)
}

// withRole returns v with Attrs["role"] = role (a copy: v's map is not touched).
func withRole(v rekey.VersionValue, role string) rekey.VersionValue {
	attrs := make(map[string]string, len(v.Attrs)+1)
	for k, x := range v.Attrs {
		attrs[k] = x
	}
	attrs["role"] = role
	v.Attrs = attrs
	return v
}

// Params returns the connection parameters of spec's role, with password
// pw. The derived URL is rendered with pw as the secret's value. In the
// alternating strategy the role is Roles[0]: use ParamsFor for a version.
func (a *Applier) Params(ctx context.Context, spec *rekey.Spec, pw rekey.Value) (Params, error) {
	return a.ParamsFor(ctx, spec, rekey.VersionValue{Value: pw})
}

// ParamsFor returns the connection parameters of version v: the URLFrom
// template rendered with v's value as the secret and v's attributes as
// {{ NAME.attr }} (in the alternating strategy {{ NAME.role }} is always
// RoleOf(v)), then the spec's explicit fields; in the alternating strategy
// the user is RoleOf(v) whatever the URL says.
func (a *Applier) ParamsFor(ctx context.Context, spec *rekey.Spec, v rekey.VersionValue) (Params, error) {
	pg := spec.Postgres
	if pg == nil {
		return Params{}, supported(spec)
	}
	role := RoleOf(spec, v.Version)
	if alternating(spec) && !slices.Contains(pg.Roles, role) {
		// Attributes are authenticated by the store; this holds even so: rekey
		// never sets the password of a role rekey.yaml does not name.
		return Params{}, &rekey.Error{Code: rekey.CodeAuth,
			Msg:  fmt.Sprintf("%s v%d names login role %q, which is not one of the roles rekey.yaml declares (%s)", spec.Name, v.N, role, strings.Join(pg.Roles, ", ")),
			Hint: "the version's attributes were changed outside rekey: run `rekey audit verify` and restore .rekey/rekey.db from a backup you trust",
			Err:  rekey.ErrCorrupt}
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
			if base, _ := rekey.SplitRef(ref); base == spec.Name {
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
		values[spec.Name] = v.Value
		for k, x := range v.Attrs {
			values[spec.Name+"."+k] = rekey.NewValueString(x)
		}
		if role != "" {
			values[spec.Name+".role"] = rekey.NewValueString(role)
		}
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
	if role != "" {
		p.User = role
	}
	if p.User == "" {
		return Params{}, rekey.Errorf(rekey.CodeInvalid, "%s: no role: set postgres.role in rekey.yaml, or a user in %s", spec.Name, orName(pg.URLFrom, "url_from"))
	}
	p.Password = v.Value.Reveal()
	return p, nil
}

// AdminParams returns the admin connection of spec (changed_by: admin):
// the URL held by the managed secret AdminSecret.
func (a *Applier) AdminParams(ctx context.Context, spec *rekey.Spec) (Params, error) {
	pg := spec.Postgres
	if pg == nil || pg.AdminSecret == "" {
		return Params{}, rekey.Errorf(rekey.CodeInvalid, "%s has no admin_secret", spec.Name)
	}
	if a.Values == nil {
		return Params{}, rekey.Errorf(rekey.CodeInternal, "the value of %s (admin_secret of %s) is not available", pg.AdminSecret, spec.Name)
	}
	all, err := a.Values(ctx)
	if err != nil {
		return Params{}, rekey.Wrap(rekey.ErrorCode(err), err, "load %s (admin_secret of %s)", pg.AdminSecret, spec.Name)
	}
	v, ok := all[pg.AdminSecret]
	if !ok || v.IsZero() {
		return Params{}, rekey.Errorf(rekey.CodeNotFound, "%s (admin_secret of %s) has no current value", pg.AdminSecret, spec.Name).
			WithHint("declare %s as a managed secret in rekey.yaml (kind: manual) and record the admin connection URL with `rekey set %s`", pg.AdminSecret, pg.AdminSecret)
	}
	p, err := ParseURL(v.RevealString())
	if err != nil {
		return Params{}, rekey.Wrap(rekey.CodeInvalid, err, "%s (admin_secret of %s)", pg.AdminSecret, spec.Name)
	}
	if p.User == "" {
		return Params{}, rekey.Errorf(rekey.CodeInvalid, "%s (admin_secret of %s) names no user", pg.AdminSecret, spec.Name)
	}
	return p, nil
}

// adminConn opens the admin connection and checks it can take a verifier.
func (a *Applier) adminConn(ctx context.Context, spec *rekey.Spec) (*pgx.Conn, error) {
	p, err := a.AdminParams(ctx, spec)
	if err != nil {
		return nil, err
	}
	conn, err := Connect(ctx, p)
	if err != nil {
		e := pgErr(err, codeOf(err))
		if errors.Is(err, ErrAuthFailed) {
			e.Hint = fmt.Sprintf("the admin connection URL in %s is refused: record the right one with `rekey set %s`", spec.Postgres.AdminSecret, spec.Postgres.AdminSecret)
		}
		return nil, rekey.Wrap(rekey.ErrorCode(e), e, "admin connection (%s)", spec.Postgres.AdminSecret)
	}
	if err := CheckSCRAM(ctx, conn); err != nil {
		closeQuietly(conn)
		return nil, pgErr(err, codeOf(err))
	}
	return conn, nil
}

// setErr explains a failed SetPassword of role on a session of who.
func setErr(spec *rekey.Spec, err error, who, role string) error {
	e := pgErr(err, codeOf(err))
	switch {
	case errors.Is(err, ErrPrivilege) && byAdmin(spec):
		e.Hint = fmt.Sprintf("the admin connection of %s (%s, role %s) may not change the password of role %q: use a superuser, or a role with CREATEROLE (PostgreSQL 16 and later: and ADMIN OPTION on %q)", spec.Name, spec.Postgres.AdminSecret, who, role, role)
	case errors.Is(err, ErrPrivilege) && who != role:
		e.Hint = fmt.Sprintf("role %q may not change the password of role %q: as an administrator run ALTER ROLE %s CREATEROLE (and the same for the other role of the pair; a superuser role can only be changed by a superuser), or set changed_by: admin and admin_secret: NAME (a managed secret holding an admin connection URL) in rekey.yaml", who, role, QuoteIdent(who))
	case errors.Is(err, ErrRoleMissing) && alternating(spec):
		e.Hint = fmt.Sprintf("role %q of the alternating pair does not exist: create it with `rekey postgres add-role` (a copy of the other role's memberships), or fix roles in rekey.yaml", role)
	}
	return e
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
func pgErr(err error, code rekey.Code) *rekey.Error {
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
	pending, current := pendingV.Value, currentV.Value
	p, err := a.ParamsFor(ctx, spec, currentV)
	if err != nil {
		return err
	}
	role := p.User
	pend, cur := withPassword(p, pending), withPassword(p, current)
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
		return storedRefused(spec, role, err)
	}
	defer closeQuietly(conn)
	if err := CheckSCRAM(ctx, conn); err != nil {
		return pgErr(err, codeOf(err))
	}
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, role, pending.Reveal()); err != nil {
		return setErr(spec, err, role, role)
	}
	// The logins that prove it (new accepted, old refused) run in Verify,
	// after the .env is published: every millisecond between ALTER ROLE and
	// the publish is a window in which a fresh connection with the .env's
	// (old) password fails.
	return nil
}

// storedRefused is the error for a current password the database refuses.
func storedRefused(spec *rekey.Spec, role string, err error) error {
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
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		a.setUntouched(spec.Name, false)
		return nil
	}
	conn, err := a.adminConn(ctx, spec)
	if err != nil {
		return err
	}
	defer closeQuietly(conn)
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, p.User, pendingV.Value.Reveal()); err != nil {
		return setErr(spec, err, sessionRole(conn), p.User)
	}
	return nil
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
	conn, err := Connect(ctx, p)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return nil, p.User, storedRefused(spec, p.User, err)
		}
		return nil, p.User, pgErr(err, codeOf(err))
	}
	if err := CheckSCRAM(ctx, conn); err != nil {
		closeQuietly(conn)
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
	pendingV = withRole(pendingV, role)
	p, err := a.ParamsFor(ctx, spec, pendingV)
	if err != nil {
		return err
	}
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		a.setUntouched(spec.Name, false)
		return nil
	}
	conn, who, err := a.changer(ctx, spec, currentV)
	if err != nil {
		return err
	}
	defer closeQuietly(conn)
	a.setUntouched(spec.Name, false)
	if err := SetPassword(ctx, conn, role, pendingV.Value.Reveal()); err != nil {
		return setErr(spec, err, who, role)
	}
	return nil
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
	pending, current := pendingV.Value, currentV.Value
	p, err := a.ParamsFor(ctx, spec, currentV)
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
	ok, err := TryLogin(ctx, p)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		return nil
	}
	conn, err := a.adminConn(ctx, spec)
	if err != nil {
		return err
	}
	defer closeQuietly(conn)
	if err := SetPassword(ctx, conn, p.User, currentV.Value.Reveal()); err != nil {
		return setErr(spec, err, sessionRole(conn), p.User)
	}
	closeQuietly(conn)
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
	ok, err := TryLogin(ctx, cp)
	if err != nil {
		return pgErr(err, codeOf(err))
	}
	if ok {
		return nil
	}
	role := pendingRole(spec, pendingV.Version, currentV.Version)
	if role == cp.User {
		return storedRefused(spec, cp.User, nil)
	}
	conn, who, err := a.changer(ctx, spec, withRole(pendingV, role))
	if err != nil {
		return err
	}
	defer closeQuietly(conn)
	if err := SetPassword(ctx, conn, cp.User, currentV.Value.Reveal()); err != nil {
		return setErr(spec, err, who, cp.User)
	}
	ok, err = TryLogin(ctx, cp)
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
	conn, err := Connect(ctx, p)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return nil // already ended (or changed since): nothing of old's to end
		}
		return pgErr(err, codeOf(err))
	}
	defer closeQuietly(conn)
	if err := CheckSCRAM(ctx, conn); err != nil {
		return pgErr(err, codeOf(err))
	}
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

// Preflight reports whether the role of the current version can be
// reached and logs in with the current password (and, with changed_by:
// admin, whether the admin connection logs in), so `rekey rotate --all`
// can skip (with a warning) a database that is not there instead of
// failing the whole rotation.
func (a *Applier) Preflight(ctx context.Context, env string, spec *rekey.Spec, currentV rekey.VersionValue) error {
	if err := supported(spec); err != nil {
		return err
	}
	p, err := a.ParamsFor(ctx, spec, currentV)
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
	if err := supported(spec); err != nil {
		return false, err
	}
	p, err := a.ParamsFor(ctx, spec, candidateV)
	if err != nil {
		return false, err
	}
	return TryLogin(ctx, p)
}

// randomPassword is a fresh 256-bit password that nobody is told (an
// expired role's, a new pair role's before its first rotation).
func randomPassword() ([]byte, error) {
	raw := make([]byte, 32)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return []byte(base64.RawURLEncoding.EncodeToString(raw)), nil
}
