package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *app) setCommand() *cobra.Command {
	var fromTarget, force bool
	var reason string
	c := &cobra.Command{
		Use:   "set NAME [--from-target] [--force --reason TEXT]",
		Short: "Record a new value given by a person (stdin) and publish it: user-managed keys",
		Long: `set records a value you obtained elsewhere, for example a third-party API key
rotated in the provider's dashboard, as a new version, and publishes it to the
.env like a rotation (journaled, verified, audited). The value is read from
stdin (one trailing newline is removed), never from argv; on a terminal it is
asked for without echo.

--from-target records the value the .env holds now (after a hand edit that
rekey reported as drift), so nothing the file held is lost.

A value equal to an earlier version is recorded with a warning (a value used
before may already be known; the value is never printed). A value equal to an
exposed version (one an emergency rotation superseded: ` + "`rekey history`" + ` shows
exposed=…) is refused (exit 5) unless --force --reason TEXT, which is audited.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, err := forceReason(force, reason)
			if err != nil {
				return err
			}
			return a.runSet(cmd.Context(), args[0], fromTarget, why)
		},
	}
	c.Flags().BoolVar(&fromTarget, "from-target", false, "record the value the .env holds now")
	c.Flags().BoolVar(&force, "force", false, "record even an exposed value (needs --reason)")
	c.Flags().StringVar(&reason, "reason", "", "why an exposed value is safe to publish again (audited)")
	return c
}

// forceReason checks --force and --reason (rollback, set): each needs the
// other, and the reason is one line of text for the audit log.
func forceReason(force bool, reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case force && reason == "":
		return "", rekey.Errorf(rekey.CodeInvalid, "--force needs --reason TEXT").WithHint("say why the exposed value is safe to publish again; the reason is audited")
	case !force && reason != "":
		return "", rekey.Errorf(rekey.CodeInvalid, "--reason goes with --force")
	case strings.ContainsFunc(reason, unicode.IsControl):
		return "", rekey.Errorf(rekey.CodeInvalid, "--reason must be one line of text")
	case utf8.RuneCountInString(reason) > 200:
		return "", rekey.Errorf(rekey.CodeInvalid, "--reason is longer than 200 characters")
	}
	return reason, nil
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

func (a *app) runSet(ctx context.Context, name string, fromTarget bool, force string) error {
	cfg, _, env, e, err := a.mutate(ctx)
	if err != nil {
		return err
	}
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
	// A value used before: the engine refuses an exposed one (unless forced,
	// then audited); any other earlier one gets a warning. Fingerprints only.
	var same []string
	var exposed *rekey.Exposure
	fp := e.Store.Fingerprint(val)
	if err := e.Store.View(ctx, func(tx rekey.Tx) error {
		vs, err := tx.Versions(env.Name, name)
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return err
		}
		for _, v := range vs {
			if v.Fingerprint == fp {
				same = append(same, "v"+strconv.Itoa(v.N))
			}
		}
		exposed, err = rekey.Exposed(tx, env.Name, name, fp)
		return err
	}); err != nil {
		return err
	}
	if len(same) > 0 && exposed == nil {
		what := "an earlier version"
		if len(same) > 1 {
			what = "earlier versions"
		}
		a.warnf("the new value of %s equals %s (%s): a value used before may already be known; prefer a new one", name, strings.Join(same, ", "), what)
	}
	e.Progress = func(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }
	res, err := e.Rotate(ctx, []string{name}, rekey.ModeSet, &rekey.NewValues{Values: map[string]rekey.Value{name: val}, Source: source, Note: note, SkipDrift: fromTarget, Force: force})
	if err != nil {
		return err
	}
	if exposed != nil {
		a.warnf("the new value of %s is v%d's, which was exposed (%s): recorded anyway (--force); the reason is in the audit log", name, exposed.Version, exposed)
	}
	v := res.Versions[name]
	fmt.Fprintf(a.out(), "recorded %s v%d %s\n", name, v.N, v.Fingerprint)
	return nil
}
