package main

import (
	"context"
	"errors"
	"maps"
	"os/exec"
	"sort"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
)

func (a *app) runCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "run [--environment E] -- CMD ARGS...",
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
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	values := map[string]rekey.Value{}
	attrs := map[string]rekey.Value{} // "NAME.attr" for templates
	err = st.Update(ctx, func(tx rekey.Tx) error {
		cur, err := tx.AllLabeled(env.Name, rekey.LabelCurrent)
		if err != nil {
			return err
		}
		var names []string
		for _, s := range cfg.Secrets {
			v, ok := cur[s.Name]
			if !ok {
				continue
			}
			val, err := tx.Value(env.Name, s.Name, v.N)
			if err != nil {
				return err
			}
			values[s.Name] = val
			for k, x := range v.Attrs {
				attrs[s.Name+"."+k] = rekey.NewValueString(x)
			}
			names = append(names, s.Name)
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: "run", Env: env.Name, Outcome: "ok", Detail: "secrets: " + strings.Join(names, ",") + "; command: " + truncateArg(args[0])})
		return err
	})
	if err != nil {
		return err
	}
	tvals := maps.Clone(values)
	maps.Copy(tvals, attrs)
	for _, d := range cfg.DerivedFor(env.Name) {
		if v, err := d.Template.Render(tvals); err == nil {
			values[d.Name] = v
		}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.m.Stdin, a.m.Stdout, a.m.Stderr
	if a.m.Dir != "" {
		cmd.Dir = a.m.Dir
	}
	// rekey's environment without its key material, then the values.
	environ := a.environ()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		environ = append(environ, k+"="+values[k].RevealString())
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
