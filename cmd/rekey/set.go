package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *app) setCommand() *cobra.Command {
	var fromTarget, force bool
	var reason string
	c := &cobra.Command{
		Use: "set NAME [--from-target] [--force --reason TEXT]",
		Example: `  rekey set ANTHROPIC_API_KEY < new-key.txt
  rekey set JWT_SECRET --from-target`,
		Short: "Record a new value given by a person (stdin) and publish it: user-managed keys",
		Long: `set records a value you obtained elsewhere, for example a third-party API key
rotated in the provider's dashboard, as a new version, and publishes it to the
.env like a rotation (journaled, verified, audited). The value is read from
stdin (one trailing newline is removed), never from argv; on a terminal it is
asked for without echo.

--from-target records the value the .env holds now (after a hand edit that
rekey reported as drift), so nothing the file held is lost.

A value weak for the secret's kind is recorded with a warning that says why
and what to do: a signing secret or data-encryption key below 256 estimated
bits, a database password below 128, an API key shorter than 20 characters or
below 96 bits, or any long value repeating a few characters. A value equal to
an earlier version (compared by fingerprint) is recorded with a warning too (a
value used before may already be known). Warnings go to stderr and never
print the value; the set still happens, so a key you have no better one for
yet (an emergency) is not held up. A value equal to an
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
	v, err := a.s().Set(ctx, rkapp.SetRequest{Name: name, FromTarget: fromTarget, Force: force, Read: a.readSecretInput}, a.narrate)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out(), "recorded %s v%d %s\n", name, v.N, v.Fingerprint)
	return nil
}
