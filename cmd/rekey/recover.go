package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
)

func (a *app) recoverCommand() *cobra.Command {
	var probe bool
	c := &cobra.Command{
		Use: "recover [--probe]",
		Example: `  rekey recover
  rekey recover --probe`,
		Short: "Complete or roll back interrupted rotations; check the store and the .env agree",
		Long: `recover brings the environment back to one consistent state after a crash,
a kill or a full disk: a rotation whose new values were sealed is completed
(apply and publish are idempotent), one that was rolling back finishes rolling
back (the abandoned values stay in history, unlabeled). It then checks the
store file (SQLite integrity and every sealed value) and reports any .env value
that differs from the store's current one (drift). Every mutating command runs
this recovery first.

--probe also asks each database which stored password it accepts (pending,
current, previous, then older versions) and, when it is not the current one
(the store and the database disagree), makes it current and writes it to the
.env again; the repair is audited. If no stored version logs in, it says so
and changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runRecover(cmd.Context(), probe) },
	}
	c.Flags().BoolVar(&probe, "probe", false, "ask the databases which stored password they accept and repair the labels")
	return c
}

// narrate prints an engine step on stderr.
func (a *app) narrate(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }

func (a *app) runRecover(ctx context.Context, probe bool) error {
	r, err := a.s().Recover(ctx, probe, a.narrate)
	if r == nil {
		return err
	}
	rep := r.Report
	for _, id := range rep.RolledForward {
		fmt.Fprintf(a.out(), "completed rotation %s\n", id)
	}
	for _, id := range rep.RolledBack {
		fmt.Fprintf(a.out(), "rolled back rotation %s\n", id)
	}
	for _, p := range r.Probe {
		switch {
		case p.Repaired:
			fmt.Fprintf(a.out(), "probe: %s: the database accepts v%d, not v%d: v%d is current again and published\n", p.Name, p.Accepted, p.Current, p.Accepted)
		case p.Accepted != 0:
			fmt.Fprintf(a.out(), "probe: %s: the database accepts the current v%d\n", p.Name, p.Accepted)
		}
	}
	if err != nil {
		return err
	}
	for _, d := range rep.Drift {
		if d.Missing {
			fmt.Fprintf(a.out(), "drift: %s has no %s\n", d.Target, d.Key)
		} else {
			fmt.Fprintf(a.out(), "drift: %s holds a %s that is not the store's current value\n", d.Target, d.Key)
		}
	}
	if len(rep.Drift) > 0 {
		return rekey.Errorf(rekey.CodeConflict, "%d value(s) in the targets differ from the store", len(rep.Drift)).
			WithHint("`rekey set NAME --from-target` records the file's value; `rekey publish NAME` writes the store's")
	}
	if len(rep.RolledForward)+len(rep.RolledBack) == 0 {
		fmt.Fprintf(a.out(), "%s: consistent, nothing to recover\n", r.Env)
	} else {
		fmt.Fprintf(a.out(), "%s: consistent\n", r.Env)
	}
	return nil
}

func (a *app) publishCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "publish NAME...",
		Example: `  rekey publish JWT_SECRET DATABASE_PASSWORD`,
		Short:   "Write the store's current values (and derived values) to the .env again",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.s().Publish(cmd.Context(), args); err != nil {
				return err
			}
			fmt.Fprintf(a.out(), "published %d secret(s)\n", len(args))
			return nil
		},
	}
}

func (a *app) rollbackCommand() *cobra.Command {
	var force bool
	var reason string
	c := &cobra.Command{
		Use: "rollback NAME [--force --reason TEXT]",
		Example: `  rekey rollback JWT_SECRET
  rekey rollback JWT_SECRET --force --reason "the exposure was a false alarm (INC-42)"`,
		Short: "Republish a secret's previous version, as a new journaled and audited rotation",
		Long: `rollback makes the previous version's value current again. It is a new
rotation (a new version whose value is the previous one's, source "rollback"),
journaled, verified and audited like any other; nothing is deleted.

It refuses (exit 5) when that value was exposed: an emergency rotation
superseded it (` + "`rekey history`" + ` shows exposed=emergency ROTATION), or it is
the same value as such a version. Rotate instead. If you know the value is
safe after all, --force --reason TEXT republishes it; the reason goes into
the audit log (rotate.force).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, err := forceReason(force, reason)
			if err != nil {
				return err
			}
			return a.runRollback(cmd.Context(), args[0], why)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "roll back even to an exposed value (needs --reason)")
	c.Flags().StringVar(&reason, "reason", "", "why an exposed value is safe to publish again (audited)")
	return c
}

func (a *app) runRollback(ctx context.Context, name, force string) error {
	r, err := a.s().Rollback(ctx, name, force, a.narrate)
	if err != nil {
		return err
	}
	if x := r.Exposed; x != nil {
		a.warnf("%s v%d was exposed (%s): rolled back anyway (--force); the reason is in the audit log", name, x.Version, x)
	}
	fmt.Fprintf(a.out(), "rolled %s back to the value of v%d (now v%d %s)\n", name, r.From, r.Version.N, r.Version.Fingerprint)
	return nil
}
