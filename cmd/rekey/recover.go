package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
)

func (a *app) recoverCommand() *cobra.Command {
	var probe bool
	c := &cobra.Command{
		Use:   "recover [--probe]",
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

func (a *app) runRecover(ctx context.Context, probe bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	if err := a.lockEnv(cfg, env.Name); err != nil {
		return err
	}
	e := a.engine(cfg, st, env)
	e.Progress = func(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }
	a.removeStaleTemps(e)
	rep, err := e.Recover(ctx)
	if err != nil {
		return err
	}
	for _, id := range rep.RolledForward {
		fmt.Fprintf(a.out(), "completed rotation %s\n", id)
	}
	for _, id := range rep.RolledBack {
		fmt.Fprintf(a.out(), "rolled back rotation %s\n", id)
	}
	ends, err := e.ExpireGrace(ctx)
	for _, g := range ends {
		a.warnf("the grace period of %s v%d ended: it no longer works", g.Name, g.Version)
	}
	if err != nil {
		return err
	}
	if probe {
		res, err := e.ProbeRepair(ctx, nil)
		for _, r := range res {
			switch {
			case r.Repaired:
				fmt.Fprintf(a.out(), "probe: %s: the database accepts v%d, not v%d: v%d is current again and published\n", r.Name, r.Accepted, r.Current, r.Accepted)
			case r.Accepted != 0:
				fmt.Fprintf(a.out(), "probe: %s: the database accepts the current v%d\n", r.Name, r.Accepted)
			}
		}
		if err != nil {
			return err
		}
		if rep.Drift, err = e.Drift(ctx, nil); err != nil {
			return err
		}
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
		fmt.Fprintf(a.out(), "%s: consistent, nothing to recover\n", env.Name)
	} else {
		fmt.Fprintf(a.out(), "%s: consistent\n", env.Name)
	}
	return nil
}

func (a *app) publishCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "publish NAME...",
		Short: "Write the store's current values (and derived values) to the .env again",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, _, e, err := a.mutate(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range args {
				if _, ok := cfg.Secret(n); !ok {
					return rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", n)
				}
			}
			if err := e.Publish(cmd.Context(), args); err != nil {
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
		Use:   "rollback NAME [--force --reason TEXT]",
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
	cfg, st, env, e, err := a.mutate(ctx)
	if err != nil {
		return err
	}
	if _, ok := cfg.Secret(name); !ok {
		return rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", name)
	}
	var prev rekey.Version
	var val rekey.Value
	var exposed *rekey.Exposure
	err = st.View(ctx, func(tx rekey.Tx) error {
		prev, err = tx.Labeled(env.Name, name, rekey.LabelPrevious)
		if errors.Is(err, rekey.ErrNotFound) {
			return rekey.Wrap(rekey.CodeNotFound, err, "").WithHint("%s has no previous version to roll back to", name)
		}
		if err != nil {
			return err
		}
		if val, err = tx.Value(env.Name, name, prev.N); err != nil {
			return err
		}
		exposed, err = rekey.Exposed(tx, env.Name, name, prev.Fingerprint)
		return err
	})
	if err != nil {
		return err
	}
	e.Progress = func(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }
	// The engine refuses an exposed value without force, and audits it with.
	note := fmt.Sprintf("rollback to v%d", prev.N)
	if exposed != nil {
		note += ", forced although exposed"
	}
	res, err := e.Rotate(ctx, []string{name}, rekey.ModeRollback, &rekey.NewValues{Values: map[string]rekey.Value{name: val}, Source: rekey.SourceRollback, Note: note, Force: force})
	if err != nil {
		return err
	}
	if exposed != nil {
		a.warnf("%s v%d was exposed (%s): rolled back anyway (--force); the reason is in the audit log", name, exposed.Version, exposed)
	}
	v := res.Versions[name]
	fmt.Fprintf(a.out(), "rolled %s back to the value of v%d (now v%d %s)\n", name, prev.N, v.N, v.Fingerprint)
	return nil
}
