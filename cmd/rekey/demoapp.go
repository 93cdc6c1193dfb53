package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
)

// demoAppCommand is the hidden `rekey demo-app`: the reference application
// (examples/atlas-app) run from the rekey binary, so that `rekey demo
// --with-postgres` needs nothing but rekey and PostgreSQL. Its arguments
// are atlas-app's (`rekey demo-app help`).
func (a *app) demoAppCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "demo-app [serve|start|restart|reload|stop|status|smoke] ARGS...",
		Short:              "The demo's reference application (examples/atlas-app)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			o := atlas.Options{Self: []string{self, "demo-app"}, Stdout: a.out(), Stderr: a.errw()}
			if code := atlas.Main(cmd.Context(), o, args); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}
