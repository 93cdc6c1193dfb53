package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/doctor"
	"github.com/spf13/cobra"
)

func (a *app) doctorCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use: "doctor [--json]",
		Example: `  rekey doctor
  rekey doctor --json`,
		Short: "Check the project against the runbook's best practices",
		Long: `doctor checks the project against the Best Practices of the rotation
runbook and prints one line per practice, PASS, WARN or FAIL, with a fix for
each that does not pass:

  env-ignored          every .env target is ignored by git
  env-never-committed  no commit in any ref ever contained a .env target
  example              a .env.example sits beside each .env and holds no real
                       value: no stored version of a secret, and no value that
                       looks like a credential (a provider prefix such as sk-
                       or whsec_, a high-entropy string, a URL with a
                       credential), managed or not
  file-modes           no secret file is readable by others; the store and the
                       master key file are 0600; a .env its group can read is a
                       warning; the detail says who can read each file
  env-distinct         no secret has the same current value in two environments
  strength             no secret is weak for its kind, neither the current value
                       in the store nor the value a .env target holds (a hand
                       edit): the file, line and name are reported, never the
                       value, with the fix (` + "`rekey rotate NAME`" + `; an API key:
                       a new one from the provider, ` + "`rekey set NAME`" + `)
  schedule             nothing is overdue (due-soon is a warning)
  log-level            the production .env does not log at debug or trace
  tracked-values       no managed value, old or current, is in a file tracked by git
  audit-chain          the audit log's hash chain is intact
  master-key-outside   the master key file is outside the project and the repository
  tls-expiry           no certificate listed under tls: in rekey.yaml (a PEM file
                       or a host:port endpoint) expires within 30 days
  config-approved      rekey.yaml is approved on this machine as it is (` + "`rekey config trust`" + `)

A check that cannot run (not a git repository, git not installed) is a WARN
saying why. doctor compares values in-process only; it never prints one and
never hands one to git. It exits 0 when nothing fails and 1 when something
does. --json prints an array of {check, status, detail, fix}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDoctor(cmd.Context(), asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (a *app) runDoctor(ctx context.Context, asJSON bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	checks, err := doctor.Run(ctx, doctor.Inputs{
		Config: cfg, Store: st, Environment: a.environment,
		Status: func(ctx context.Context, env string) ([]rekey.SecretStatus, error) {
			return a.computeStatus(ctx, cfg, st, env)
		},
		EachVersion: rkapp.EachVersion, Now: a.now, Environ: a.environ(),
		StateDir: a.stateDir(), Placeholder: rkapp.ExamplePlaceholder,
	})
	if err != nil {
		return err
	}
	if err := a.s().Audit(ctx, st, rekey.AuditEntry{Action: "doctor", Outcome: "ok", Detail: doctor.Summary(checks)}); err != nil {
		return err
	}
	if asJSON {
		if err := a.printJSON(checks); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(w, "%s\t%s\t%s\n", a.paint(string(c.Status)), c.Check, c.Detail)
			if c.Status != doctor.Pass && c.Fix != "" {
				fmt.Fprintf(w, "%s\t\tfix: %s\n", a.paint(""), c.Fix) // as wide as a coloured status
			}
		}
		w.Flush()
		fmt.Fprintf(a.out(), "\n%s\n", doctor.Summary(checks))
	}
	if doctor.Failed(checks) {
		a.exit = 1
	}
	return nil
}
