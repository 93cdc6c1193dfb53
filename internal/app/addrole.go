package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// AddedRole is what `rekey postgres add-role` did.
type AddedRole struct {
	Pair PgPair
	// Wrote is rekey.yaml as messages show it, when it was rewritten.
	Wrote string
}

// AddRole is `rekey postgres add-role`: it switches the PostgreSQL password
// name (default: the only one) of rekey.yaml to the alternating strategy
// (makeAlternating: the second role, named role or derived from the first,
// is created unless it exists), marks the current version as the first
// role's (marked, when not nil, hears it) and rewrites rekey.yaml. Audited,
// under the lock, after recovery.
func (s *Session) AddRole(ctx context.Context, name, role string, grace time.Duration, marked func(secret string, version int, role string)) (*AddedRole, error) {
	cfg, st, env, _, err := s.Mutate(ctx)
	if err != nil {
		return nil, err
	}
	spec, err := postgresPassword(cfg, name)
	if err != nil {
		return nil, err
	}
	name = spec.Name
	wasAlternating := spec.Postgres.Strategy == "alternating"
	var cur rekey.VersionValue
	if err := st.View(ctx, func(tx rekey.Tx) error {
		v, err := tx.Labeled(env.Name, name, rekey.LabelCurrent)
		if err != nil {
			return err
		}
		cur.Version = v
		cur.Value, err = tx.Value(env.Name, name, v.N)
		return err
	}); err != nil {
		return nil, rekey.Wrap(rekey.ErrorCode(err), err, "current version of %s", name)
	}

	ap, _ := s.PostgresApplier(cfg, env).(*postgres.Applier)
	// Work on a copy of the spec: rekey.yaml changes only at the end.
	sp := *spec
	pg := *spec.Postgres
	pg.Roles = append([]string(nil), pg.Roles...)
	sp.Postgres = &pg
	// All or nothing: when a step after the second role was created fails,
	// the role is dropped again (never one that existed before).
	var created createdRoles
	res, err := makeAlternating(ctx, ap, &sp, cfg.DerivedFor(env.Name), cur, role, grace, &created)
	if err != nil {
		return nil, created.undo(ctx, "add-role", err)
	}
	if err := s.markRole(ctx, st, env.Name, cur, res, marked); err != nil {
		return nil, created.undo(ctx, "add-role", err)
	}
	out := &AddedRole{Pair: res}
	if wasAlternating && !res.URLChanged {
		return out, nil
	}
	// rekey.yaml: the spec, and the URL template wherever it is defined.
	saved := *spec
	*spec = sp
	err = roleTemplates(cfg, pg.URLFrom, name)
	if err == nil {
		err = s.rewriteConfig(cfg)
	}
	if err != nil {
		*spec = saved
		err = created.undo(ctx, "add-role", err)
		if u := (*undoneError)(nil); errors.As(err, &u) {
			// markRole audited the pair: the audit log says it was undone
			// (best effort: the error is what the caller must see).
			_ = s.Audit(ctx, st, rekey.AuditEntry{Action: "postgres.add-role", Env: env.Name, Secret: name, Version: cur.N, Outcome: "error",
				Detail: "rekey.yaml not rewritten; " + u.note})
		}
		return nil, err
	}
	out.Wrote = envfile.RelTo(cfg.Dir, cfg.Path)
	return out, nil
}

// postgresPassword is the PostgreSQL password name of rekey.yaml (""
// = the only one), with its postgres settings.
func postgresPassword(cfg *config.Config, name string) (*rekey.Spec, error) {
	if name == "" {
		var names []string
		for _, s := range cfg.Secrets {
			if s.Kind == rekey.KindPostgresPassword {
				names = append(names, s.Name)
			}
		}
		if len(names) != 1 {
			return nil, rekey.Errorf(rekey.CodeInvalid, "name the database password: rekey.yaml has %d postgres-password secrets", len(names)).
				WithHint("rekey postgres add-role NAME")
		}
		name = names[0]
	}
	spec, ok := cfg.Secret(name)
	if !ok {
		return nil, rekey.UnknownSecret(name, cfg.Secrets)
	}
	if spec.Kind != rekey.KindPostgresPassword {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s is a %s secret, not a postgres-password", name, spec.Kind)
	}
	if spec.Postgres == nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s has no postgres settings in rekey.yaml", name)
	}
	return spec, nil
}

// markRole gives the current version its role, so that the URL template
// can be rendered for it (a rollback to it, `rekey publish`), and audits
// the pair.
func (s *Session) markRole(ctx context.Context, st rekey.Store, env string, cur rekey.VersionValue, res PgPair, marked func(string, int, string)) error {
	name := res.Secret
	if cur.Attrs["role"] == res.First {
		return s.Audit(ctx, st, rekey.AuditEntry{Action: "postgres.add-role", Env: env, Secret: name, Version: cur.N, Outcome: "ok",
			Detail: fmt.Sprintf("pair %s/%s", res.First, res.Second)})
	}
	attrs := map[string]string{}
	maps.Copy(attrs, cur.Attrs)
	attrs["role"] = res.First
	err := st.Update(ctx, func(tx rekey.Tx) error {
		if err := tx.SetAttrs(env, name, cur.N, attrs); err != nil {
			return err
		}
		_, err := tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "postgres.add-role", Env: env, Secret: name, Version: cur.N, Fingerprint: cur.Fingerprint, Outcome: "ok",
			Detail: fmt.Sprintf("v%d belongs to role %s; pair %s/%s", cur.N, res.First, res.First, res.Second)})
		return err
	})
	if err == nil && marked != nil {
		marked(name, cur.N, res.First)
	}
	return err
}

// roleTemplates makes the URL template urlFrom take its user from
// {{ NAME.role }} wherever rekey.yaml defines it (shared, and per
// environment).
func roleTemplates(cfg *config.Config, urlFrom, name string) error {
	all := [][]rekey.Derived{cfg.Derived}
	for i := range cfg.Environments {
		all = append(all, cfg.Environments[i].Derived)
	}
	for _, ds := range all {
		for i := range ds {
			if ds[i].Name != urlFrom {
				continue
			}
			out, changed, err := postgres.RoleTemplate(ds[i].Template.Source(), name)
			if err != nil {
				return rekey.Wrap(rekey.ErrorCode(err), err, "%s", ds[i].Name)
			}
			if changed {
				t, err := rekey.ParseTemplate(out)
				if err != nil {
					return err
				}
				ds[i].Template = t
			}
		}
	}
	return nil
}
