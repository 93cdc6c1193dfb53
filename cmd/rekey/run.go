package main

import (
	"context"
	"errors"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
)

func (a *app) runCommand() *cobra.Command {
	return &cobra.Command{
		Use: "run [--environment E] -- CMD ARGS...",
		Example: `  rekey run -- ./target/release/atlas-api
  rekey run --environment staging -- env`,
		Short: "Run a command with the environment's current secrets in its environment (audited)",
		Long: `run starts CMD with every managed secret and derived value of the
environment added to its environment variables (never to its argv), after
recording the read in the audit log. rekey exits with CMD's exit status.

CMD gets rekey's environment without rekey's own key material:
REKEY_MASTER_KEY, REKEY_PASSPHRASE, REKEY_NEW_* and any other REKEY_*
variable naming a key, passphrase, password, secret or token are removed.`,
		Args:               cobra.MinimumNArgs(1),
		DisableFlagParsing: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runRun(cmd.Context(), args)
		},
	}
}

func (a *app) runRun(ctx context.Context, args []string) error {
	vals, err := a.s().RunValues(ctx, "command: "+truncateArg(args[0]))
	if err != nil {
		return err
	}
	defer vals.Wipe()
	for _, f := range vals.Failed() {
		a.warnf("not set for the command: derived value %s", f)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.m.Stdin, a.m.Stdout, a.m.Stderr
	if a.m.Dir != "" {
		cmd.Dir = a.m.Dir
	}
	// rekey's environment without its key material, then the values.
	environ := a.environ()
	for _, k := range vals.Keys() {
		v, _ := vals.Resolve(k)
		environ = append(environ, k+"="+v.RevealString())
		v.Wipe()
	}
	cmd.Env = environ
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: ee.ExitCode()}
		}
		return rekey.Wrap(rekey.CodeNotFound, err, "run %s", truncateArg(args[0]))
	}
	return nil
}

func truncateArg(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
