package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *app) setCommand() *cobra.Command {
	var fromTarget bool
	c := &cobra.Command{
		Use:   "set NAME [--from-target]",
		Short: "Record a new value given by a person (stdin) and publish it: user-managed keys",
		Long: `set records a value you obtained elsewhere, for example a third-party API key
rotated in the provider's dashboard, as a new version, and publishes it to the
.env like a rotation (journaled, verified, audited). The value is read from
stdin (one trailing newline is removed), never from argv; on a terminal it is
asked for without echo.

--from-target records the value the .env holds now (after a hand edit that
rekey reported as drift), so nothing the file held is lost.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runSet(cmd.Context(), args[0], fromTarget)
		},
	}
	c.Flags().BoolVar(&fromTarget, "from-target", false, "record the value the .env holds now")
	return c
}

func (a *app) readSecretInput(name string) (rekey.Value, error) {
	if f, ok := a.m.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.errw(), "New value for %s: ", name)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.errw())
		if err != nil {
			return rekey.Value{}, err
		}
		return rekey.NewValue(b), nil
	}
	b, err := io.ReadAll(io.LimitReader(a.m.Stdin, 1<<20))
	if err != nil {
		return rekey.Value{}, err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return rekey.NewValue(b), nil
}

func (a *app) runSet(ctx context.Context, name string, fromTarget bool) error {
	cfg, _, env, e, err := a.mutate(ctx)
	if err != nil {
		return err
	}
	_ = env
	sp, ok := cfg.Secret(name)
	if !ok {
		return rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", name).WithHint("`rekey status` lists the managed secrets")
	}
	var val rekey.Value
	source, note := rekey.SourceManual, "set by a person"
	if fromTarget {
		names := e.TargetOrder
		if len(sp.Targets) > 0 {
			names = sp.Targets
		}
		got, err := e.Targets[names[0]].Read(ctx, []string{name})
		if err != nil {
			return err
		}
		v, ok := got[name]
		if !ok {
			return rekey.Errorf(rekey.CodeNotFound, "%s does not hold %s", e.Targets[names[0]].Name(), name)
		}
		val, note = v, "recorded from "+e.Targets[names[0]].Name()
	} else {
		val, err = a.readSecretInput(name)
		if err != nil {
			return err
		}
	}
	if val.IsZero() {
		return rekey.Errorf(rekey.CodeInvalid, "empty value for %s", name).WithHint("pipe the value on stdin: `rekey set %s < file`", name)
	}
	e.Progress = func(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }
	res, err := e.Rotate(ctx, []string{name}, rekey.ModeSet, &rekey.NewValues{Values: map[string]rekey.Value{name: val}, Source: source, Note: note, SkipDrift: fromTarget})
	if err != nil {
		return err
	}
	v := res.Versions[name]
	fmt.Fprintf(a.out(), "recorded %s v%d %s\n", name, v.N, v.Fingerprint)
	return nil
}
