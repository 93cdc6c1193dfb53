package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/spf13/cobra"
)

func (a *app) rotateCommand() *cobra.Command {
	var o rkapp.RotateRequest
	c := &cobra.Command{
		Use: "rotate NAME... | --due | --all [--environment E] [--dry-run] [--emergency]",
		Example: `  rekey rotate JWT_SECRET --dry-run
  rekey rotate JWT_SECRET DATABASE_PASSWORD
  rekey rotate --due
  rekey rotate --all --emergency`,
		Short: "Rotate secrets: generate, seal, publish to the .env, verify, finish (crash-safe)",
		Long: `rotate replaces secrets with new random values as one journaled rotation:

` + engine.StepsHelp() + `
If the process dies at any point, the next rekey command (or ` + "`rekey recover`" + `)
completes or rolls back the rotation so that the store and the .env agree.
If verification or a check fails, a scheduled or manual rotation is rolled
back (old values republished, services restarted, checks run again, both
results reported); an --emergency rotation keeps the new values (the old ones
may be exposed) and exits 7. A data key whose rows have started moving is
never rolled back: the old key stays sealed and published as NAME_PREVIOUS
until ` + "`rekey reencrypt`" + ` finishes. Only one rotation per environment runs at a time.

--due rotates the secrets whose rotation period has passed; --all every
secret rekey can rotate (user-managed keys are skipped: see ` + "`rekey set`" + `;
so are databases rekey cannot reach). An --emergency names the user-managed
keys still to revoke and reissue at their providers, and the ` + "`rekey set NAME`" + `
that records each, before it starts and again after it ends. A secret no
service in rekey.yaml consumes gets a warning (also with --dry-run): running
processes keep the old value until restarted; declare them under services:. Every mutating command first ends the
grace periods that have passed (NAME_PREVIOUS removed; the idle role of an
alternating PostgreSQL pair gets a random password nobody knows).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names = args
			return a.runRotate(cmd.Context(), o)
		},
	}
	c.Flags().BoolVar(&o.Due, "due", false, "rotate every secret that is overdue")
	c.Flags().BoolVar(&o.All, "all", false, "rotate every secret rekey can rotate")
	c.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	c.Flags().BoolVar(&o.Emergency, "emergency", false, "a secret was exposed: never roll back to the old values")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print the plan or the result as JSON")
	return c
}

func (a *app) runRotate(ctx context.Context, o rkapp.RotateRequest) error {
	p, err := a.s().PlanRotation(ctx, o)
	if err != nil {
		return err
	}
	plan := p.Plan
	if a.jsonOut {
		return a.rotateJSON(ctx, p, o)
	}
	if plan == nil {
		fmt.Fprintln(a.out(), "nothing to rotate")
		return nil
	}
	if o.DryRun {
		fmt.Fprintf(a.out(), "plan (%s rotation of %s; nothing changed):\n", plan.Mode, plan.Env)
		for _, s := range plan.Secrets {
			fmt.Fprintf(a.out(), "  %s (%s, %d-bit %s) v%d → v%d\n", s.Name, s.Kind, s.Generator.Bits(), s.Generator.Encoding, s.FromVersion, s.ToVersion)
			for _, step := range s.Steps {
				fmt.Fprintf(a.out(), "    - %s\n", step)
			}
			for _, w := range s.Warnings {
				fmt.Fprintf(a.out(), "    ! %s\n", w)
			}
		}
		return nil
	}
	res, err := a.runPlanned(ctx, p)
	if err != nil {
		return err
	}
	var parts []string
	for _, name := range sortedKeys(res.Versions) {
		v := res.Versions[name]
		parts = append(parts, fmt.Sprintf("%s v%d %s", name, v.N, v.Fingerprint))
	}
	fmt.Fprintf(a.out(), "rotated %s (rotation %s)\n", strings.Join(parts, ", "), res.Rotation.ID)
	return nil
}

// runPlanned runs a planned rotation after printing its warnings, and
// reminds of the user-managed keys an emergency leaves to the person (also
// after a failure).
func (a *app) runPlanned(ctx context.Context, p *rkapp.PlannedRotation) (*engine.Result, error) {
	for _, s := range p.Plan.Secrets {
		for _, w := range s.Warnings {
			a.warnf("%s", w)
		}
	}
	res, err := p.Run(ctx, a.narrate)
	if r := p.Reminder(); r != "" {
		a.warnf("%s", r)
	}
	return res, err
}

// rotateJSON prints the plan (--dry-run), or runs it and prints the result,
// as one JSON document; a failed run prints the rotation (rolled back or
// kept) and then returns its error.
func (a *app) rotateJSON(ctx context.Context, p *rkapp.PlannedRotation, o rkapp.RotateRequest) error {
	switch {
	case p.Plan == nil:
		mode := rekey.ModeManual
		switch {
		case o.Emergency:
			mode = rekey.ModeEmergency
		case o.Due:
			mode = rekey.ModeScheduled
		}
		out := &rotationJSON{Environment: a.envName, Mode: string(mode), Outcome: "nothing", Secrets: []rotatedSecretJSON{}}
		if cfg, err := a.s().Config(); err == nil {
			if env, err := a.s().Environment(cfg); err == nil {
				out.Environment = env.Name
			}
		}
		return a.printJSON(out)
	case o.DryRun:
		return a.printJSON(planView(p.Plan, "planned"))
	}
	res, err := a.runPlanned(ctx, p)
	if res == nil {
		return err
	}
	if jerr := a.printJSON(resultView(p.Plan, res)); jerr != nil {
		return jerr
	}
	return err
}
