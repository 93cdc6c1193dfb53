package postgres

import (
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

// The applier implements every optional interface of rekey.Applier.
var (
	_ rekey.Applier     = (*Applier)(nil)
	_ rekey.Preflighter = (*Applier)(nil)
	_ rekey.Attributer  = (*Applier)(nil)
	_ rekey.Expirer     = (*Applier)(nil)
	_ rekey.Verifier    = (*Applier)(nil)
	_ rekey.Prober      = (*Applier)(nil)
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

// setErr explains a failed SetPassword of role on a session of who, with
// the statement the server's version needs.
func setErr(spec *rekey.Spec, err error, who, role string) error {
	e := pgErr(err, codeOf(err))
	major := 0
	var pe *Error
	if errors.As(err, &pe) {
		major = pe.major
	}
	v16 := major >= AdminOptionMajor
	switch {
	case errors.Is(err, ErrPrivilege) && byAdmin(spec) && v16:
		e.Hint = fmt.Sprintf("the admin connection of %s (%s, role %s) may not change the password of role %q: on PostgreSQL %d, as an administrator run %s (and ALTER ROLE %s CREATEROLE if it lacks it)", spec.Name, spec.Postgres.AdminSecret, who, role, major, grantAdmin(role, who), QuoteIdent(who))
	case errors.Is(err, ErrPrivilege) && byAdmin(spec):
		e.Hint = fmt.Sprintf("the admin connection of %s (%s, role %s) may not change the password of role %q: as an administrator run ALTER ROLE %s CREATEROLE (a superuser role's password only a superuser changes)", spec.Name, spec.Postgres.AdminSecret, who, role, QuoteIdent(who))
	case errors.Is(err, ErrPrivilege) && who != role && v16:
		e.Hint = fmt.Sprintf("on PostgreSQL %d role %q may change role %q's password only with ADMIN OPTION on it, and the two roles of a pair cannot hold it on each other (PostgreSQL refuses circular memberships): use an admin connection. As an administrator run: %s; then set changed_by: admin and admin_secret: PG_ADMIN_URL (a managed secret holding its URL) in rekey.yaml", major, who, role, strings.Join(AdminSetup(major, who, "", nil)[:1], "; ")+"; "+grantAdmin(who, AdminRoleExample)+"; "+grantAdmin(role, AdminRoleExample))
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
