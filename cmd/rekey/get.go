package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) getCommand() *cobra.Command {
	var version int
	var noNewline bool
	c := &cobra.Command{
		Use: "get NAME [--version N]",
		Example: `  rekey get JWT_SECRET
  rekey get JWT_SECRET --version 3 -n`,
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
	val, err := a.s().Get(ctx, name, n)
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
