package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/demo"
)

// demoAppEnv names the reference app's binary when --app is not given.
const demoAppEnv = "REKEY_DEMO_APP"

func (a *app) demoCommand() *cobra.Command {
	var o demo.Options
	var withPostgres bool
	c := &cobra.Command{
		Use: "demo [--dir DIR] [--with-postgres [--keep] [--app PATH]]",
		Example: `  rekey demo
  rekey demo --with-postgres
  rekey demo --with-postgres --keep --dir /tmp/rekey-demo`,
		Short: "A 1-minute tour in a temporary folder: init, status, rotate, report (no server needed)",
		Long: `demo writes a .env shaped like the Atlas PharmaTech backend's (fake values)
and the team's rotation log into a new folder, then runs, narrating each step:
rekey init --import-log, rekey status, rekey rotate --all, rekey status,
rekey history JWT_SECRET, rekey report and rekey audit verify. The folder is
kept so you can try more commands in it; its master key file lives in the
folder's config/ subfolder, outside the project.

--with-postgres runs the whole runbook against a real application instead:
it starts a throwaway PostgreSQL cluster (its server binaries must be
installed: $REKEY_TEST_PG_BINDIR, else pg_config --bindir, else the newest
/usr/lib/postgresql/*/bin, else PATH) and the reference backend
(examples/atlas-app, a binary of its own: --app, else $` + demoAppEnv + `,
else atlas-app beside rekey, else built with go build from the source tree
rekey was built from, else atlas-app on PATH), seeds encrypted patients,
and narrates init, status, verify, rotate --all (graceful JWT sessions,
alternating database roles, online re-encryption of the PII, restart of
the app, checks), the end of the grace period, report and audit verify.
The database roles get the least privilege the server's version needs: on
PostgreSQL 15 the app's login role has CREATEROLE and manages its pair
(changed_by: self); on 16 and later an admin role does (PG_ADMIN_URL in the
.env, changed_by: admin), as the roles of a pair cannot change each
other's password there. Everything is stopped and removed at the end, or
on Ctrl-C; --keep leaves PostgreSQL and the app running until Ctrl-C so
you can try more commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !withPostgres && (o.Keep || o.App != "") {
				return rekey.Errorf(rekey.CodeInvalid, "--keep and --app go with --with-postgres")
			}
			if err := a.demoOptions(&o); err != nil {
				return err
			}
			run := demo.Tour
			if withPostgres {
				run = demo.Postgres
			}
			err := run(cmd.Context(), o)
			if errors.Is(err, demo.ErrInterrupted) {
				return &exitError{code: 130}
			}
			return err
		},
	}
	c.Flags().StringVar(&o.Dir, "dir", "", "folder to create the demo in (default: a new temporary folder)")
	c.Flags().BoolVar(&withPostgres, "with-postgres", false, "run the runbook against a throwaway PostgreSQL and the reference app")
	c.Flags().BoolVar(&o.Keep, "keep", false, "with --with-postgres: keep PostgreSQL and the app running until Ctrl-C")
	c.Flags().DurationVar(&o.Grace, "grace", demo.DefaultGrace, "with --with-postgres: the token lifetime and the grace of the previous JWT secret and database role (at least 2s)")
	c.Flags().StringVar(&o.App, "app", "", "with --with-postgres: the reference app's binary (go build ./examples/atlas-app)")
	return c
}

// demoOptions completes o: absolute paths, the output, the environment,
// and rekey run in-process for each of the demo's commands.
func (a *app) demoOptions(o *demo.Options) error {
	if o.Grace < 2*time.Second {
		return rekey.Errorf(rekey.CodeInvalid, "--grace %s: at least 2s (the demo shows the old token working during it, then refused)", o.Grace).WithHint("rekey demo --with-postgres --grace 20s")
	}
	if o.App == "" {
		o.App = a.getenv(demoAppEnv)
	}
	for _, p := range []*string{&o.Dir, &o.App} {
		if *p == "" {
			continue
		}
		abs, err := a.s().Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	o.Stdout, o.Stderr, o.Environ = a.out(), a.errw(), a.environ()
	o.Rekey = func(ctx context.Context, dir string, env map[string]string, args []string) int {
		sub := &Main{Stdin: bytes.NewReader(nil), Stdout: a.out(), Stderr: a.errw(), Dir: dir, Env: maps.Clone(a.m.Env)}
		if sub.Env == nil {
			sub.Env = map[string]string{}
		}
		maps.Copy(sub.Env, env)
		return sub.Run(ctx, args)
	}
	return nil
}
