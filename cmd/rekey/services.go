package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/services"
)

func (a *app) servicesCommand() *cobra.Command {
	c := &cobra.Command{
		Use: "services",
		Example: `  rekey services status
  rekey services restart api`,
		Short: "Show the status of the services that read the secrets, or restart them",
		Long: `services runs the commands listed under services: in rekey.yaml. A
service has a restart command (or stop and start), an optional status
command, and the secrets and derived values it consumes; after a rotation
rekey restarts the services that consume what changed, in order.

A command is an argv list ([systemctl, restart, api]) run as is, or text run
with sh -c; systemd: UNIT and compose: {file, service} are shorthands. Each
runs in the folder of rekey.yaml with rekey's environment minus rekey's key
material (REKEY_MASTER_KEY, REKEY_PASSPHRASE, REKEY_NEW_*), in a process
group of its own, killed when its timeout passes (60s; status 10s). Its
output is never printed, except the last lines of a failing command, with
every stored version of every managed value redacted (raw, base64, hex, URL
and JSON forms, as rekey scan finds them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var asJSON bool
	status := &cobra.Command{
		Use: "status [--json] [NAME...]",
		Example: `  rekey services status
  rekey services status --json api`,
		Short: "Run each service's status command",
		Long: `status runs the status command of each service of the environment (or
of those named) and prints one line each: ok, FAIL with the last lines of the
command's output, or - when the service has no status command. It exits 0
when every status command succeeds and 7 when one fails. --json prints an
array of {service, action, command, ok, skipped, exit_code, timed_out,
error, tail, duration_ms}.`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runServicesStatus(cmd.Context(), args, asJSON) },
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	restart := &cobra.Command{
		Use: "restart [NAME...]",
		Example: `  rekey services restart
  rekey services restart api worker`,
		Short: "Restart the environment's services (or those named), in order",
		Long: `restart restarts each service of the environment (or each one named), in
restart order (order:, then file order), each with its timeout; a service
without a restart command is stopped, then started. It stops at the first
failure and exits 7, printing the end of the failing command's output with
every managed value redacted. Like every command that changes something, it
takes the environment's lock and completes an interrupted rotation first.`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runServicesRestart(cmd.Context(), args) },
	}
	c.AddCommand(status, restart)
	return c
}

func (a *app) runServicesStatus(ctx context.Context, names []string, asJSON bool) error {
	svcs, err := a.s().SelectServices(names)
	if err != nil {
		return err
	}
	w := nameWidth(svcs)
	return printResults(a, asJSON, func(r services.Result) { a.printService(r, w, true) },
		func(onResult func(services.Result)) ([]services.Result, error) {
			return a.s().ServicesStatus(ctx, svcs, onResult)
		})
}

func (a *app) runServicesRestart(ctx context.Context, names []string) error {
	svcs, err := a.s().SelectServices(names)
	if err != nil {
		return err
	}
	w := nameWidth(svcs)
	return a.s().ServicesRestart(ctx, svcs, func(r services.Result) { a.printService(r, w, false) })
}

func nameWidth(svcs []rekey.Service) int {
	w := 0
	for _, s := range svcs {
		w = max(w, len(s.Name))
	}
	return w
}

// printService prints one command's result; withTail adds the end of a
// failing command's output (restart leaves it to the error's hint). With
// --verbose, the command it ran follows on a line of its own.
func (a *app) printService(r services.Result, width int, withTail bool) {
	w := a.out()
	switch {
	case r.Skipped != "":
		fmt.Fprintf(w, "%s  %-*s  %s\n", a.paintPadded("-", 4), width, r.Service, r.Skipped)
	case r.OK:
		fmt.Fprintf(w, "%s  %-*s  %s (%s)\n", a.paintPadded("ok", 4), width, r.Service, r.Action, shortDuration(r.Duration))
	default:
		fmt.Fprintf(w, "%s  %-*s  %s: %s (%s)\n", a.paint("FAIL"), width, r.Service, r.Action, r.Err, shortDuration(r.Duration))
		if withTail {
			for _, l := range r.Tail {
				fmt.Fprintf(w, "      %-*s  | %s\n", width, "", l)
			}
		}
	}
	if a.verbose && r.Command != "" {
		fmt.Fprintf(w, "      %-*s  ran: %s\n", width, "", r.Command)
	}
}
