package main

import (
	"context"
	"fmt"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
)

func (a *app) getCommand() *cobra.Command {
	var version int
	var noNewline bool
	c := &cobra.Command{
		Use:   "get NAME [--version N]",
		Short: "Print a secret's value (current, or version N); every read is audited",
		Long: `get prints a secret's current value, or version N, followed by a newline
(-n: none). The read is recorded in the audit log before the value is printed:
if the record cannot be written, nothing is printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runGet(cmd.Context(), args[0], version, noNewline)
		},
	}
	c.Flags().IntVar(&version, "version", 0, "version number (default: current)")
	c.Flags().BoolVarP(&noNewline, "no-newline", "n", false, "no newline after the value")
	return c
}

func (a *app) runGet(ctx context.Context, name string, n int, noNewline bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	var val rekey.Value
	err = st.Update(ctx, func(tx rekey.Tx) error {
		var v rekey.Version
		if n == 0 {
			v, err = tx.Labeled(env.Name, name, rekey.LabelCurrent)
		} else {
			var vs []rekey.Version
			vs, err = tx.Versions(env.Name, name)
			for _, x := range vs {
				if x.N == n {
					v = x
				}
			}
			if err == nil && v.N == 0 {
				err = rekey.Errorf(rekey.CodeNotFound, "%s has no version %d", name, n).WithHint("`rekey history %s` lists its versions", name)
			}
		}
		if err != nil {
			return err
		}
		val, err = tx.Value(env.Name, name, v.N)
		if err != nil {
			return err
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: "get", Env: env.Name, Secret: name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"})
		return err
	})
	if err != nil {
		return err
	}
	if _, err := a.out().Write(val.Reveal()); err != nil {
		return err
	}
	if !noNewline {
		fmt.Fprintln(a.out())
	}
	return nil
}
