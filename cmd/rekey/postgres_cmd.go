package main

import (
	"context"
	"fmt"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
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
		Use: "add-role [NAME] [--role ROLE] [--grace DURATION]",
		Example: `  rekey postgres add-role
  rekey postgres add-role DATABASE_PASSWORD --role app_green --grace 24h`,
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
else by the first role itself. What each needs depends on the server's
version (the README's privilege table): on PostgreSQL 15, CREATEROLE (the
first role needs it anyway to change the other role's password at each
rotation); on 16 and later changed_by: self cannot alternate (the roles
cannot hold ADMIN OPTION on each other) and the admin role needs CREATEROLE
and ADMIN OPTION on the first role and its groups. A missing privilege is
refused before anything is created, naming the statements to run.

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
	grace := rkapp.DefaultPostgresGrace
	if o.grace != "" {
		g, err := rekey.ParseDuration(o.grace)
		if err != nil || g <= 0 {
			return rekey.Errorf(rekey.CodeInvalid, "--grace %q: want a duration such as 12h or 1d", o.grace)
		}
		grace = g
	}
	res, err := a.s().AddRole(ctx, name, o.role, grace, func(secret string, n int, role string) {
		fmt.Fprintf(a.out(), "%s: the current v%d belongs to role %q\n", secret, n, role)
	})
	if err != nil {
		return err
	}
	a.reportPair(res.Pair)
	if res.Wrote != "" {
		fmt.Fprintf(a.out(), "wrote %s\n", res.Wrote)
	}
	return nil
}

// reportPair tells what setting up an alternating pair did (add-role, init
// --postgres-alternating).
func (a *app) reportPair(p rkapp.PgPair) {
	if p.Created {
		fmt.Fprintf(a.out(), "postgres: created role %q as a copy of %q (memberships, attributes, settings; a password nobody knows until the first rotation)\n", p.Second, p.First)
	} else {
		fmt.Fprintf(a.out(), "postgres: role %q exists: kept\n", p.Second)
	}
	if p.AdminSecret != "" {
		fmt.Fprintf(a.out(), "postgres: the pair's passwords are changed through the admin connection %s (changed_by: admin)\n", p.AdminSecret)
	}
	if p.URLChanged {
		fmt.Fprintf(a.out(), "postgres: %s now takes its user from {{ %s.role }}\n", p.URLFrom, p.Secret)
	}
	fmt.Fprintf(a.out(), "postgres: %s alternates between roles %q and %q (grace %s); the next rotation sets %q's password and points %s at it\n",
		p.Secret, p.Roles[0], p.Roles[1], rekey.FormatDuration(p.Grace), p.Second, p.URLFrom)
}
