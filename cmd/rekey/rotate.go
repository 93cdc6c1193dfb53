package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/spf13/cobra"
)

func (a *app) rotateCommand() *cobra.Command {
	var o rkapp.RotateRequest
	var rb readByFlags
	c := &cobra.Command{
		Use: "rotate NAME... | --due | --all | --read-by ACTOR [--since DATE] [--environment E] [--dry-run] [--emergency]",
		Example: `  rekey rotate JWT_SECRET --dry-run
  rekey rotate JWT_SECRET DATABASE_PASSWORD
  rekey rotate --due
  rekey rotate --all --emergency
  rekey rotate --read-by alice --since 90d --dry-run`,
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

--dry-run prints the plan and changes nothing. For a data key it also
estimates the re-encryption, per table, reading only (a sample of the first
2,000 rows, opened and re-encrypted in memory under a throwaway key): rows
and size (measured), WAL volume (a model: full-page images of every page
changed, the new row versions, the index entries of non-HOT updates), the
read+crypto speed of the sample (an upper bound: writes are not sampled), and
the time: at least rows ÷ rows_per_second when a ceiling is set, else
measure it with ` + "`rekey reencrypt --rehearse NAME`" + ` (--json: the secret's
"reencrypt" list). A database it cannot reach is a warning.

--due rotates the secrets whose rotation period has passed; --all every
secret rekey can rotate (user-managed keys are skipped: see ` + "`rekey set`" + `;
so are databases rekey cannot reach). An --emergency names the user-managed
keys still to revoke and reissue at their providers, and the ` + "`rekey set NAME`" + `
that records each, before it starts and again after it ends. A secret no
service in rekey.yaml consumes gets a warning (also with --dry-run): running
processes keep the old value until restarted; declare them under services:.

--read-by ACTOR (offboarding) rotates, as one rotation, every secret of the
environment the audit log shows ACTOR read (` + "`rekey get`" + `), had injected
into a command (` + "`rekey run`" + `) or supplied (` + "`rekey set`" + `, init's import),
since --since (an RFC 3339 date, 2026-09-01, or a duration back from now such
as 90d; default: the whole log). ACTOR is matched exactly as ` + "`rekey audit`" + `
lists it (REKEY_ACTOR, else the login name; no host). The plan shows the
evidence per secret; the audit log's hash chain is verified first and a
broken one is refused (exit 6): it is no evidence. Checks, service commands
and publish are not counted: they hand values to rekey.yaml's commands and
the .env, not to the person. A user-managed key read is named with what to
do at its provider. An actor who read nothing: exit 0, nothing rotated.

Every mutating command first ends the
grace periods that have passed (NAME_PREVIOUS removed; the idle role of an
alternating PostgreSQL pair gets a random password nobody knows).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			defer a.flushAfter(cmd.Context()) // notifications it recorded (notify.go)
			o.Names = args
			if cmd.Flags().Changed("read-by") || rb.since != "" {
				return a.runRotateReadBy(cmd.Context(), o, rb)
			}
			return a.runRotate(cmd.Context(), o, nil)
		},
	}
	c.Flags().StringVar(&rb.actor, "read-by", "", "rotate every secret this actor read, per the audit log (offboarding)")
	c.Flags().StringVar(&rb.since, "since", "", "with --read-by: only evidence newer than this (2026-09-01, RFC 3339, or 90d)")
	c.Flags().BoolVar(&o.Due, "due", false, "rotate every secret that is overdue")
	c.Flags().BoolVar(&o.All, "all", false, "rotate every secret rekey can rotate")
	c.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	c.Flags().BoolVar(&o.Emergency, "emergency", false, "a secret was exposed: never roll back to the old values")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print the plan or the result as JSON")
	return c
}

func (a *app) runRotate(ctx context.Context, o rkapp.RotateRequest, rb *rkapp.ReadBy) error {
	p, err := a.s().PlanRotation(ctx, o)
	if err != nil {
		return err
	}
	plan := p.Plan
	if a.jsonOut {
		return a.rotateJSON(ctx, p, o, rb)
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
			for _, line := range estimateLines(p.Estimates[s.Name], s.Name) {
				fmt.Fprintf(a.out(), "    %s\n", line)
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
func (a *app) rotateJSON(ctx context.Context, p *rkapp.PlannedRotation, o rkapp.RotateRequest, rb *rkapp.ReadBy) error {
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
		return a.printJSON(withReadBy(out, rb))
	case o.DryRun:
		out := planView(p.Plan, "planned")
		for i := range out.Secrets {
			out.Secrets[i].Reencrypt = estimateView(p.Estimates[out.Secrets[i].Name])
		}
		return a.printJSON(withReadBy(out, rb))
	}
	res, err := a.runPlanned(ctx, p)
	if res == nil {
		return err
	}
	if jerr := a.printJSON(withReadBy(resultView(p.Plan, res), rb)); jerr != nil {
		return jerr
	}
	return err
}

// estimateLines are the lines of a dry run's estimate of a data key's
// re-encryption, one per table: rows and bytes (measured), WAL (modelled),
// read+crypto speed (measured on a sample: an upper bound), and the time:
// a lower bound from rows_per_second, else what measures it.
func estimateLines(est *reencrypt.Estimate, name string) []string {
	if est == nil {
		return nil
	}
	var out []string
	for _, t := range est.Tables {
		model := "model"
		if !est.FullPageWrites {
			model = "model, full_page_writes off"
		}
		line := fmt.Sprintf("re-encrypt %s: ~%s rows (%s), WAL ~%s (%s), ", t.Table, groupDigits(t.Rows), bytesIEC(t.HeapBytes+t.IndexBytes), bytesIEC(t.WAL.Total()), model)
		if t.ReadCryptoRowsPerSecond > 0 {
			line += fmt.Sprintf("read+crypto %s rows/s (sample of %s)", groupDigits(int64(t.ReadCryptoRowsPerSecond)), groupDigits(int64(t.SampleRows)))
		} else {
			line += "read+crypto not sampled (a dry run starts no command codec)"
		}
		if t.SampleRows > 0 && t.WriteFraction < 1 {
			line += fmt.Sprintf(", %.0f%% of it on the current key", 100*t.WriteFraction)
		}
		if t.MinTime > 0 {
			d := t.MinTime.Round(time.Second)
			if t.MinTime < 10*time.Second {
				d = t.MinTime.Round(time.Millisecond)
			}
			line += fmt.Sprintf("; time: at least %s at rows_per_second %s", d, groupDigits(int64(est.RowsPerSecond)))
		} else {
			line += "; time: measure with rekey reencrypt --rehearse " + name
		}
		out = append(out, line)
	}
	return out
}
