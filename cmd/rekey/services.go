package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/services"
	"github.com/spf13/cobra"
)

func (a *app) servicesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "services",
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
		Use:   "status [--json] [NAME...]",
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
		Use:   "restart [NAME...]",
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

const servicesExample = "add services to rekey.yaml, e.g.\n  services:\n    api:\n      systemd: atlas-api\n      consumes: [JWT_SECRET, DATABASE_URL]"

// selectServices returns the environment's services in restart order, or
// those named.
func selectServices(cfg *config.Config, env string, names []string) ([]config.Service, error) {
	all := cfg.ServicesFor(env)
	if len(all) == 0 {
		if len(cfg.Services) > 0 {
			return nil, rekey.Errorf(rekey.CodeNotFound, "no service of %s runs in environment %s", config.FileName, env).
				WithHint("remove environments from a service, or add %s to its environments", env)
		}
		return nil, rekey.Errorf(rekey.CodeNotFound, "%s has no services", config.FileName).WithHint("%s", servicesExample)
	}
	if len(names) == 0 {
		return all, nil
	}
	for _, n := range names {
		if !slices.ContainsFunc(all, func(s config.Service) bool { return s.Name == n }) {
			var have []string
			for _, s := range all {
				have = append(have, s.Name)
			}
			return nil, rekey.Errorf(rekey.CodeNotFound, "no service %q in environment %s", n, env).WithHint("services: %s", strings.Join(have, ", "))
		}
	}
	var out []config.Service
	for _, s := range all {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (a *app) runServicesStatus(ctx context.Context, names []string, asJSON bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	svcs, err := selectServices(cfg, env.Name, names)
	if err != nil {
		return err
	}
	// The values are read only to redact the commands' output.
	vals, err := a.currentValues(ctx, st, cfg, env.Name, "services.status", "services: "+serviceNames(svcs))
	if err != nil {
		return err
	}
	defer vals.wipe()
	o := services.Options{Dir: cfg.Dir, Env: a.environ(), Redact: vals.redact}
	w := nameWidth(svcs)
	if !asJSON {
		o.OnResult = func(r services.Result) { printService(a.out(), r, w, true) }
	}
	res := services.Status(ctx, svcs, o)
	if asJSON {
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	var failed []string
	for _, r := range res {
		if !r.OK {
			failed = append(failed, r.Service)
		}
	}
	outcome := "ok"
	if len(failed) > 0 {
		outcome = "failed: " + strings.Join(failed, ",")
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "services.status", Env: env.Name, Outcome: outcome}); err != nil {
		return err
	}
	if len(failed) > 0 {
		return rekey.Errorf(rekey.CodeVerifyFailed, "%d of %d services failed their status check: %s", len(failed), len(res), strings.Join(failed, ", ")).
			WithHint("`rekey services restart %s` restarts it", failed[0])
	}
	return nil
}

func (a *app) runServicesRestart(ctx context.Context, names []string) error {
	cfg, st, env, _, err := a.mutate(ctx)
	if err != nil {
		return err
	}
	svcs, err := selectServices(cfg, env.Name, names)
	if err != nil {
		return err
	}
	vals, err := a.currentValues(ctx, st, cfg, env.Name, "services.restart", "services: "+serviceNames(svcs))
	if err != nil {
		return err
	}
	defer vals.wipe()
	w := nameWidth(svcs)
	o := services.Options{Dir: cfg.Dir, Env: a.environ(), Redact: vals.redact,
		OnResult: func(r services.Result) { printService(a.out(), r, w, false) }}
	_, rerr := services.RestartAll(ctx, svcs, o)
	outcome, detail := "ok", "services: "+serviceNames(svcs)
	if rerr != nil {
		outcome, detail = "failed", rerr.Error()
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "services.restart", Env: env.Name, Outcome: outcome, Detail: detail}); err != nil {
		return err
	}
	return rerr
}

func serviceNames(svcs []config.Service) string {
	n := make([]string, len(svcs))
	for i, s := range svcs {
		n[i] = s.Name
	}
	return strings.Join(n, ",")
}

func nameWidth(svcs []config.Service) int {
	w := 0
	for _, s := range svcs {
		w = max(w, len(s.Name))
	}
	return w
}

// printService prints one command's result; withTail adds the end of a
// failing command's output (restart leaves it to the error's hint).
func printService(w io.Writer, r services.Result, width int, withTail bool) {
	switch {
	case r.Skipped != "":
		fmt.Fprintf(w, "-     %-*s  %s\n", width, r.Service, r.Skipped)
	case r.OK:
		fmt.Fprintf(w, "ok    %-*s  %s (%s)\n", width, r.Service, r.Action, shortDuration(r.Duration))
	default:
		fmt.Fprintf(w, "FAIL  %-*s  %s: %s (%s)\n", width, r.Service, r.Action, r.Err, shortDuration(r.Duration))
		if withTail {
			for _, l := range r.Tail {
				fmt.Fprintf(w, "      %-*s  | %s\n", width, "", l)
			}
		}
	}
}
