package app

import (
	"context"
	"errors"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// DefaultPostgresGrace is how long the previous role of an alternating
// pair keeps its password when rekey sets the strategy up.
const DefaultPostgresGrace = 24 * time.Hour

// PgPair is what setting up the alternating strategy of a PostgreSQL
// password did (init --postgres-alternating, postgres add-role).
type PgPair struct {
	// Secret is the password; First the role of its current version,
	// Second the other role of the pair.
	Secret, First, Second string
	Created               bool // the second role was created (else it existed)
	URLChanged            bool // the URL template now uses {{ NAME.role }}
	// The spec's settings as they are now: the derived value whose user is
	// the role, the two roles, and how long the previous one keeps its password.
	URLFrom string
	Roles   []string
	Grace   time.Duration
}

// makeAlternating switches the postgres-password secret spec to the
// alternating strategy: the role of the current version (the URL's user)
// is the first role of the pair; the second (named second, or proposed by
// postgres.PairRole when second is "") is created as a copy of it unless
// it exists; spec gets strategy alternating, roles and grace; the URLFrom
// template among derived gets {{ NAME.role | urlquery }} as its user.
// cur is the current version with its value. The role is created through
// the admin connection with changed_by: admin, else by the first role
// itself (which then needs CREATEROLE). Idempotent: on a spec that is
// already alternating it only makes sure both roles exist.
func makeAlternating(ctx context.Context, ap *postgres.Applier, spec *rekey.Spec, derived []rekey.Derived, cur rekey.VersionValue, second string, grace time.Duration) (PgPair, error) {
	pg := spec.Postgres
	res := PgPair{Secret: spec.Name}
	if pg == nil || pg.URLFrom == "" {
		return res, rekey.Errorf(rekey.CodeInvalid, "%s has no url_from: the alternating strategy switches the user of its URL", spec.Name).
			WithHint("set postgres: {url_from: DATABASE_URL} for %s in rekey.yaml", spec.Name)
	}
	if cur.Value.IsZero() {
		return res, rekey.Errorf(rekey.CodeNotFound, "%s has no current value to log in with", spec.Name)
	}
	ti := -1
	for i, d := range derived {
		if d.Name == pg.URLFrom {
			ti = i
		}
	}
	if ti < 0 {
		return res, rekey.Errorf(rekey.CodeInvalid, "url_from of %s: no derived value %s", spec.Name, pg.URLFrom)
	}
	if pg.Strategy == "alternating" && len(pg.Roles) == 2 {
		res.First = postgres.RoleOf(spec, cur.Version)
		res.Second = pg.Roles[0]
		if res.First == pg.Roles[0] {
			res.Second = pg.Roles[1]
		}
		if second != "" && second != res.Second {
			return res, rekey.Errorf(rekey.CodeConflict, "%s already alternates between roles %q and %q", spec.Name, pg.Roles[0], pg.Roles[1]).
				WithHint("change roles in rekey.yaml by hand if you mean to replace one")
		}
	} else {
		p, err := ap.ParamsFor(ctx, spec, cur)
		if err != nil {
			return res, err
		}
		res.First = p.User
		res.Second = second
		if res.Second == "" {
			if res.Second = postgres.PairRole(res.First); res.Second == "" {
				return res, rekey.Errorf(rekey.CodeInvalid, "role name %q is too long to derive the second role's name from", res.First).
					WithHint("name the second role (at most 63 bytes)")
			}
		}
		if res.Second == res.First {
			return res, rekey.Errorf(rekey.CodeInvalid, "the second role must differ from %q", res.First)
		}
	}

	// The session that creates the role: the admin's, or the first role's own.
	var p postgres.Params
	var err error
	if pg.ChangedBy == "admin" {
		p, err = ap.AdminParams(ctx, spec)
	} else {
		p, err = ap.ParamsFor(ctx, spec, cur)
	}
	if err != nil {
		return res, err
	}
	c, err := postgres.Connect(ctx, p)
	if err != nil {
		e := postgres.RekeyError(err)
		if errors.Is(err, postgres.ErrAuthFailed) && pg.ChangedBy != "admin" {
			e = rekey.Wrap(rekey.CodeConflict, err, "PostgreSQL refuses the current password of %s for role %q", spec.Name, p.User).
				WithHint("the stored password and the database's disagree: `rekey recover --probe` finds the one it accepts")
		}
		return res, e
	}
	defer c.Close(context.Background())
	if res.Created, err = postgres.EnsurePair(ctx, c, res.First, res.Second); err != nil {
		return res, postgres.RekeyError(err)
	}

	src := derived[ti].Template.Source()
	out, changed, err := postgres.RoleTemplate(src, spec.Name)
	if err != nil {
		return res, rekey.Wrap(rekey.ErrorCode(err), err, "%s", pg.URLFrom)
	}
	if changed {
		t, err := rekey.ParseTemplate(out)
		if err != nil {
			return res, err
		}
		derived[ti].Template = t
		res.URLChanged = true
	}
	pg.Strategy = "alternating"
	if len(pg.Roles) != 2 {
		pg.Roles = []string{res.First, res.Second}
	}
	if pg.Grace == 0 {
		pg.Grace = grace
	}
	if pg.Role != "" {
		pg.Role = "" // the version's role is the user from now on
	}
	res.URLFrom, res.Roles, res.Grace = pg.URLFrom, pg.Roles, pg.Grace
	return res, nil
}

// initPostgresAlternating is `rekey init --postgres-alternating[=ROLE]`:
// for the .env's database password next to the URL that embeds it, it
// creates the second role of an alternating pair (named ROLE, or proposed
// from the URL's user), sets strategy: alternating, roles and grace on the
// spec, and rewrites the URL's template to use {{ NAME.role }}. It returns
// the attributes of the versions init imports (the URL's user is the role
// of the imported password). arg "" means the flag was not given;
// addingEnv that init adds an environment to an existing inventory;
// onPair, when not nil, hears each pair set up.
func initPostgresAlternating(ctx context.Context, arg string, addingEnv bool, specs []rekey.Spec, derived []rekey.Derived, values map[string]string, onPair func(PgPair)) (map[string]map[string]string, error) {
	if arg == "" {
		return nil, nil
	}
	if addingEnv {
		// The secrets' settings are shared by every environment: switching
		// them here would change the existing environments too.
		return nil, rekey.Errorf(rekey.CodeInvalid, "--postgres-alternating sets up a new inventory, not another environment of an existing one").
			WithHint("init the environment without it, then run `rekey postgres add-role -e ENVIRONMENT`")
	}
	second := arg
	if second == "auto" {
		second = ""
	}
	ap := &postgres.Applier{Derived: derived, Values: func(context.Context) (map[string]rekey.Value, error) {
		out := make(map[string]rekey.Value, len(values))
		for k, v := range values {
			out[k] = rekey.NewValueString(v)
		}
		return out, nil
	}}
	attrs := map[string]map[string]string{}
	for i := range specs {
		sp := &specs[i]
		if sp.Kind != rekey.KindPostgresPassword || sp.Postgres == nil || sp.Postgres.URLFrom == "" || values[sp.Name] == "" {
			continue
		}
		found := false
		for _, d := range derived {
			found = found || d.Name == sp.Postgres.URLFrom
		}
		if !found {
			continue
		}
		cur := rekey.VersionValue{Value: rekey.NewValueString(values[sp.Name])}
		res, err := makeAlternating(ctx, ap, sp, derived, cur, second, DefaultPostgresGrace)
		if err != nil {
			return nil, rekey.Wrap(rekey.ErrorCode(err), err, "--postgres-alternating")
		}
		attrs[sp.Name] = map[string]string{"role": res.First}
		if onPair != nil {
			onPair(res)
		}
	}
	if len(attrs) == 0 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--postgres-alternating: the .env has no PostgreSQL password next to a URL that embeds it").
			WithHint("it needs DATABASE_PASSWORD and a DATABASE_URL with that password; or set strategy: alternating in rekey.yaml by hand")
	}
	return attrs, nil
}
