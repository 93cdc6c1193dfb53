package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
)

func (a *app) runCommand() *cobra.Command {
	var secretsOnly bool
	c := &cobra.Command{
		Use: "run [--environment E] [--secrets-only] -- CMD ARGS...",
		Example: `  rekey run -- ./target/release/atlas-api
  rekey run --environment staging -- env
  rekey run --secrets-only -- ./app   # the managed values only, not the .env's other keys`,
		Short: "Run a command with the environment's .env and current secrets in its environment (audited)",
		Long: `run starts CMD with the environment's variables added to its environment
(never to its argv), after recording the read in the audit log, as
` + "`dotenvx run`" + ` and ` + "`doppler run`" + ` do. rekey exits with CMD's exit status.

What CMD gets:
  - every managed secret and derived value, from the store (never from the
    .env: a hand-edited .env value is not passed; rekey warns that it
    differs, and ` + "`rekey status`" + ` shows the drift), over any variable of the
    same name rekey was started with;
  - a NAME_PREVIOUS key the .env holds (a graceful rotation's grace, an
    online re-encryption), with the store's previous version;
  - every other key of the environment's .env files (PORT, RUST_LOG, ...),
    unless a variable of that name is already set (as dotenv loaders do;
    a key in two files: the first file's).
--secrets-only passes the first only: the .env is not read.

CMD gets rekey's environment without rekey's own key material:
REKEY_MASTER_KEY, REKEY_PASSPHRASE, REKEY_NEW_* and any other REKEY_*
variable naming a key, passphrase, password, secret or token are removed,
and a .env key of such a name is not passed either.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runRun(cmd.Context(), args, !secretsOnly)
		},
	}
	c.Flags().BoolVar(&secretsOnly, "secrets-only", false, "pass the managed values only (secrets, derived values), not the .env's other keys")
	return c
}

func (a *app) runRun(ctx context.Context, args []string, envFile bool) error {
	vals, err := a.s().RunValues(ctx, "command: "+truncateArg(args[0]), envFile)
	if err != nil {
		return err
	}
	defer vals.Wipe()
	for _, f := range vals.Failed() {
		a.warnf("not set for the command: derived value %s", f)
	}
	for _, n := range vals.Notes {
		a.warnf("%s", n)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.m.Stdin, a.m.Stdout, a.m.Stderr
	if a.m.Dir != "" {
		cmd.Dir = a.m.Dir
	}
	cmd.Env = runEnviron(a.environ(), vals.Plain, func(add func(k string, v []byte)) {
		for _, k := range vals.Keys() {
			v, _ := vals.Resolve(k)
			add(k, v.Reveal())
			v.Wipe()
		}
	})
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: ee.ExitCode()}
		}
		return rekey.Wrap(rekey.CodeNotFound, err, "run %s", truncateArg(args[0]))
	}
	return nil
}

// runEnviron is the command's environment: rekey's (already without its
// key material), then each .env key not set there, then the managed values
// (which replace a variable of the same name). It holds no key material.
func runEnviron(environ, plain []string, managed func(add func(k string, v []byte))) []string {
	set := map[string]bool{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	out := environ
	for _, kv := range plain {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			out = append(out, kv)
		}
	}
	var last []string
	managed(func(k string, v []byte) { last = append(last, k+"="+string(v)) })
	drop := map[string]bool{}
	for _, kv := range last {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	kept := out[:0:0]
	for _, kv := range out {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			kept = append(kept, kv)
		}
	}
	return rekey.ChildEnv(append(kept, last...))
}

func truncateArg(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
