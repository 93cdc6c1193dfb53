package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/spf13/cobra"
)

func (a *app) postgresCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "postgres",
		Short: "PostgreSQL helpers: add-role (set up the alternating strategy)",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(a.postgresAddRoleCommand())
	return c
}

type addRoleOptions struct {
	role  string
	grace string
}

func (a *app) postgresAddRoleCommand() *cobra.Command {
	var o addRoleOptions
	c := &cobra.Command{
		Use:   "add-role [NAME] [--role ROLE] [--grace DURATION]",
		Short: "Switch a database password to the alternating strategy: create the second login role",
		Long: `add-role switches the PostgreSQL password NAME (default: the only
postgres-password secret) from the single strategy to the alternating one.

The role of the current password (the user of its URL) becomes the first
role of the pair. The second role (--role, default derived from the first:
app_blue -> app_green, app -> app_green) is created as a copy of it: LOGIN,
the same attributes, the same role memberships (with their ADMIN option)
and the same per-role settings; object privileges granted to the first role
directly are not copied (grant them to a group role both are members of).
Its password is random and nobody knows it until the first rotation.

The role is created through the admin connection with changed_by: admin,
else by the first role itself, which then needs CREATEROLE (it needs it
anyway to change the other role's password at each rotation).

rekey.yaml then says strategy: alternating, roles: [FIRST, SECOND] and
grace (--grace, default 1d), and the URL's template takes its user from
{{ NAME.role | urlquery }}. The current version is marked as the first
role's. Nothing in the .env changes: the next
` + "`rekey rotate NAME`" + ` sets the second role's password and points the URL at it.

Running it again (or for another environment with -e) only makes sure both
roles exist.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return a.runAddRole(cmd.Context(), name, o)
		},
	}
	c.Flags().StringVar(&o.role, "role", "", "name of the second login role (default: derived from the first)")
	c.Flags().StringVar(&o.grace, "grace", "", "how long the previous role keeps its password after a rotation (default 1d)")
	return c
}

func (a *app) runAddRole(ctx context.Context, name string, o addRoleOptions) error {
	grace := DefaultPostgresGrace
	if o.grace != "" {
		g, err := config.ParseDuration(o.grace)
		if err != nil || g <= 0 {
			return rekey.Errorf(rekey.CodeInvalid, "--grace %q: want a duration such as 12h or 1d", o.grace)
		}
		grace = g
	}
	cfg, st, env, _, err := a.mutate(ctx)
	if err != nil {
		return err
	}
	if name == "" {
		var names []string
		for _, s := range cfg.Secrets {
			if s.Kind == rekey.KindPostgresPassword {
				names = append(names, s.Name)
			}
		}
		if len(names) != 1 {
			return rekey.Errorf(rekey.CodeInvalid, "name the database password: rekey.yaml has %d postgres-password secrets", len(names)).
				WithHint("rekey postgres add-role NAME")
		}
		name = names[0]
	}
	spec, ok := cfg.Secret(name)
	if !ok {
		return rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", name).WithHint("`rekey status` lists the managed secrets")
	}
	if spec.Kind != rekey.KindPostgresPassword {
		return rekey.Errorf(rekey.CodeInvalid, "%s is a %s secret, not a postgres-password", name, spec.Kind)
	}
	if spec.Postgres == nil {
		return rekey.Errorf(rekey.CodeInvalid, "%s has no postgres settings in rekey.yaml", name)
	}
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
		return rekey.Wrap(rekey.ErrorCode(err), err, "current version of %s", name)
	}

	ap, _ := a.postgresApplier(cfg, env).(*postgres.Applier)
	derived := cfg.DerivedFor(env.Name)
	// Work on a copy of the spec: rekey.yaml changes only at the end.
	sp := *spec
	pg := *spec.Postgres
	pg.Roles = append([]string(nil), pg.Roles...)
	sp.Postgres = &pg
	res, err := makeAlternating(ctx, ap, &sp, derived, cur, o.role, grace)
	if err != nil {
		return err
	}

	// The current version gets its role, so that the URL template can be
	// rendered for it (a rollback to it, `rekey publish`).
	if cur.Attrs["role"] != res.first {
		attrs := map[string]string{}
		for k, v := range cur.Attrs {
			attrs[k] = v
		}
		attrs["role"] = res.first
		err := st.Update(ctx, func(tx rekey.Tx) error {
			if err := tx.SetAttrs(env.Name, name, cur.N, attrs); err != nil {
				return err
			}
			_, err := tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: "postgres.add-role", Env: env.Name, Secret: name, Version: cur.N, Fingerprint: cur.Fingerprint, Outcome: "ok",
				Detail: fmt.Sprintf("v%d belongs to role %s; pair %s/%s", cur.N, res.first, res.first, res.second)})
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out(), "%s: the current v%d belongs to role %q\n", name, cur.N, res.first)
	} else if err := a.audit(ctx, st, rekey.AuditEntry{Action: "postgres.add-role", Env: env.Name, Secret: name, Version: cur.N, Outcome: "ok",
		Detail: fmt.Sprintf("pair %s/%s", res.first, res.second)}); err != nil {
		return err
	}

	if wasAlternating && !res.urlChanged {
		a.reportPair(res, &sp)
		return nil
	}
	// rekey.yaml: the spec, and the URL template wherever it is defined.
	*spec = sp
	for _, ds := range append([][]rekey.Derived{cfg.Derived}, envDerived(cfg)...) {
		for i := range ds {
			if ds[i].Name != pg.URLFrom {
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
	if err := a.rewriteConfig(cfg); err != nil {
		return err
	}
	a.reportPair(res, &sp)
	fmt.Fprintf(a.out(), "wrote %s\n", relTo(cfg.Dir, cfg.Path))
	return nil
}

func envDerived(cfg *config.Config) [][]rekey.Derived {
	var out [][]rekey.Derived
	for i := range cfg.Environments {
		out = append(out, cfg.Environments[i].Derived)
	}
	return out
}

// rewriteConfig writes cfg back to its rekey.yaml, refusing when that
// would lose anything config.Marshal does not write.
func (a *app) rewriteConfig(cfg *config.Config) error {
	old, err := os.ReadFile(cfg.Path)
	if err != nil {
		return rekey.Wrap(rekey.CodeNotFound, err, "read %s", cfg.Path)
	}
	text, err := config.Marshal(cfg)
	if err != nil {
		return err
	}
	back, err := config.Parse(cfg.Path, text)
	if err != nil {
		return configErr(err)
	}
	if len(back.Secrets) != len(cfg.Secrets) || len(back.Environments) != len(cfg.Environments) || len(back.TLS) != len(cfg.TLS) ||
		len(back.Services) != len(cfg.Services) || len(back.Checks) != len(cfg.Checks) {
		return rekey.Errorf(rekey.CodeInternal, "cannot rewrite %s without losing some of it", relTo(cfg.Dir, cfg.Path)).
			WithHint("edit it by hand: under the secret's postgres: strategy: alternating, roles: [FIRST, SECOND], grace: 1d; in the URL template write {{ NAME.role | urlquery }} as the user")
	}
	if hasComments(old) {
		a.warnf("%s is rewritten without its comments", relTo(cfg.Dir, cfg.Path))
	}
	if err := dotenv.WriteFileAtomic(cfg.Path, text, 0o644); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write %s", cfg.Path)
	}
	a.approveWritten(cfg.Path, text)
	return nil
}

// hasComments reports whether a rekey.yaml has comment lines besides the
// header config.Marshal writes.
func hasComments(text []byte) bool {
	for _, l := range bytes.Split(text, []byte("\n")) {
		t := strings.TrimSpace(string(l))
		if strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "# rekey.yaml") && !strings.HasPrefix(t, "# It names the secrets") && !strings.HasPrefix(t, "# holds no secret values") {
			return true
		}
	}
	return false
}
