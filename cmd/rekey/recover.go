package main

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/engine"
)

func (a *app) recoverCommand() *cobra.Command {
	var probe bool
	c := &cobra.Command{
		Use: "recover [--probe] [--json]",
		Example: `  rekey recover
  rekey recover --probe`,
		Short: "Complete or roll back interrupted rotations; check the store and the .env agree",
		Long: `recover brings the environment back to one consistent state after a crash,
a kill or a full disk: a rotation whose new values were sealed is completed
(apply and publish are idempotent), one that was rolling back finishes rolling
back (the abandoned values stay in history, unlabeled). An incident whose
actions an interruption left unfinished (` + "`rekey incident open`" + ` killed part
way) then gets them run, each once, with "interrupted" and "recover" on its
timeline. It then checks the store file (SQLite integrity and every sealed value) and reports any .env value
that differs from the store's current one (drift). Every mutating command runs
this recovery first.

--probe also asks each database which stored password it accepts (pending,
current, previous, then older versions) and, when it is not the current one
(the store and the database disagree), makes it current and writes it to the
.env again; the repair is audited. If no stored version logs in, it says so
and changes nothing.

--json prints {environment, completed, rolled_back, probe, drift,
consistent}: the rotations completed and rolled back (ids), the probe's
answers ({name, accepted_version, current_version, repaired}) and the drift
({target, key, missing}).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer a.flushAfter(cmd.Context()) // notifications it recorded (notify.go)
			return a.runRecover(cmd.Context(), probe)
		},
	}
	c.Flags().BoolVar(&probe, "probe", false, "ask the databases which stored password they accept and repair the labels")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// narrate prints an engine step on stderr: nothing with --quiet; with
// --verbose, followed by the time since the previous step's line (or the
// command's start).
func (a *app) narrate(format string, args ...any) {
	if a.quiet {
		return
	}
	line := fmt.Sprintf("  "+format, args...)
	if a.verbose {
		now := time.Now()
		since := cmp.Or(a.lastStep, a.started)
		if since.IsZero() {
			since = now
		}
		line += fmt.Sprintf("  (+%s)", shortDuration(now.Sub(since)))
		a.lastStep = now
	}
	fmt.Fprintln(a.errw(), line)
}

func (a *app) runRecover(ctx context.Context, probe bool) error {
	r, err := a.s().Recover(ctx, probe, a.narrate)
	if r == nil {
		return err
	}
	if a.jsonOut {
		return a.recoverJSON(r, err)
	}
	rep := r.Report
	for _, id := range rep.RolledForward {
		fmt.Fprintf(a.out(), "completed rotation %s\n", id)
	}
	for _, id := range rep.RolledBack {
		fmt.Fprintf(a.out(), "rolled back rotation %s\n", id)
	}
	for _, id := range r.Incidents {
		fmt.Fprintf(a.out(), "finished the interrupted actions of incident %s (rekey incident status %s)\n", id, id)
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
	if err := driftErr(rep.Drift); err != nil {
		return err
	}
	if len(rep.RolledForward)+len(rep.RolledBack)+len(r.Incidents) == 0 {
		a.infof("%s: consistent, nothing to recover", r.Env)
	} else {
		a.infof("%s: consistent", r.Env)
	}
	return nil
}

// driftErr is the error of a recovery that left drift (exit 4).
func driftErr(drift []engine.DriftItem) error {
	if len(drift) == 0 {
		return nil
	}
	return rekey.Errorf(rekey.CodeConflict, "%d value(s) in the targets differ from the store", len(drift)).
		WithHint("`rekey set NAME --from-target` records the file's value; `rekey publish NAME` writes the store's")
}

// recoverJSON prints what recover did as JSON, then returns its error
// (err, or the drift's).
func (a *app) recoverJSON(r *rkapp.Recovered, err error) error {
	if jerr := a.printJSON(recoverView(r)); jerr != nil {
		return jerr
	}
	if err != nil {
		return err
	}
	return driftErr(r.Report.Drift)
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
			a.infof("published %d secret(s)", len(args))
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
journaled, verified and audited like any other; nothing is deleted. The value
keeps its true age: ` + "`rekey status`" + ` counts last rotated and next due from the
version that first held it (history shows value_of=N value_since=T), so a
rollback to an old value can leave it overdue, and ` + "`rekey report`" + ` lists it
as rolled back, not as a rotation.

It refuses (exit 5) when that value was exposed: an emergency rotation
superseded it (` + "`rekey history`" + ` shows exposed=emergency ROTATION), or it is
the same value as such a version. Rotate instead. If you know the value is
safe after all, --force --reason TEXT republishes it; the reason goes into
the audit log (rotate.force).

--json prints {name, from_version, version, fingerprint, exposed}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer a.flushAfter(cmd.Context()) // notifications it recorded (notify.go)
			why, err := forceReason(force, reason)
			if err != nil {
				return err
			}
			return a.runRollback(cmd.Context(), args[0], why)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "roll back even to an exposed value (needs --reason)")
	c.Flags().StringVar(&reason, "reason", "", "why an exposed value is safe to publish again (audited)")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
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
	if a.jsonOut {
		out := rollbackJSON{Name: name, FromVersion: r.From, Version: r.Version.N, Fingerprint: r.Version.Fingerprint}
		if r.Exposed != nil {
			out.Exposed = r.Exposed.String()
		}
		return a.printJSON(out)
	}
	fmt.Fprintf(a.out(), "rolled %s back to the value of v%d (now v%d %s)\n", name, r.From, r.Version.N, r.Version.Fingerprint)
	return nil
}
