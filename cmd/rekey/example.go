package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) exampleCommand() *cobra.Command {
	var output string
	var force bool
	c := &cobra.Command{
		Use: "example [--output .env.example] [--force]",
		Example: `  rekey example
  rekey example --output config/.env.example --force`,
		Short: "Write a .env.example: the .env's lines, every value but known non-secret ones (PORT, LOG_LEVEL) replaced by a placeholder",
		Long: `example writes a .env.example from the environment's first .env target:
the same lines in the same order, comments kept byte for byte, and every
value replaced by a placeholder with a comment saying what it is, except the
values of keys known not to be secret: ports (PORT, *_PORT), hosts without
credentials (*_HOST), log levels (RUST_LOG, LOG_LEVEL), environment names
(NODE_ENV) and feature flags (ENABLE_*, FEATURE_*, *_ENABLED with a boolean
value), and even those only when the value does not look like a credential
(a provider prefix such as sk- or whsec_, a high-entropy string, a URL with
a credential):

  JWT_SECRET=change-me  # generated: 64 bytes base64, rotated by rekey every 180 days
  SMTP_PASSWD=change-me  # not copied: rekey keeps only values known not to be secret

The file (mode 0644) is meant to be committed. By default it is written beside
the .env; example refuses to replace an existing file without --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runExample(output, force) },
	}
	c.Flags().StringVarP(&output, "output", "o", "", "where to write (default: .env.example beside the .env)")
	c.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return c
}

func (a *app) runExample(output string, force bool) error {
	ex, err := a.s().WriteExample(output, force)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out(), "wrote %s from %s: %d placeholders, %d values kept\n", ex.Rel, ex.Source, ex.Placeholders, ex.Kept)
	return nil
}
