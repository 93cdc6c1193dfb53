package main

import (
	"bytes"
	"context"
	"path/filepath"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/report"
	"github.com/spf13/cobra"
)

func (a *app) reportCommand() *cobra.Command {
	var format, output, title string
	c := &cobra.Command{
		Use: "report [--format md|json] [--output FILE] [--title NAME]",
		Example: `  rekey report
  rekey report --format json -o rotation-log.json`,
		Short: "Regenerate the rotation log (runbook format) from the store's truth",
		Long: `report writes the team's rotation log in the runbook's structure: the latest
rotation date, the rotated secrets with their strength in bits, the secrets
rolled back (` + "`rekey rollback`" + ` restored an earlier value: listed with the version
that first held it and that value's age, never as a fresh rotation), the
secrets not rotated that require user action, the rotation schedule (last rotated,
next due, frequency) and the secret inventory (purpose, storage, encryption,
access). It never contains a value; fingerprints identify versions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runReport(cmd.Context(), format, output, title)
		},
	}
	c.Flags().StringVar(&format, "format", "md", "md or json")
	c.Flags().StringVarP(&output, "output", "o", "", "write to FILE (atomically) instead of stdout")
	c.Flags().StringVar(&title, "title", "", "project name in the title (default: the project folder's name)")
	return c
}

func (a *app) runReport(ctx context.Context, format, output, title string) error {
	if format != "md" && format != "json" {
		return rekey.Errorf(rekey.CodeInvalid, "--format %q: want md or json", format)
	}
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	rows, err := a.computeStatus(ctx, cfg, st, env.Name)
	if err != nil {
		return err
	}
	if title == "" {
		title = filepath.Base(cfg.Dir)
	}
	r := report.Build(title, env.Name, cfg.Secrets, rows, a.now())
	var buf bytes.Buffer
	if format == "json" {
		err = r.WriteJSON(&buf)
	} else {
		err = r.WriteMarkdown(&buf)
	}
	if err != nil {
		return err
	}
	if output == "" {
		_, err = a.out().Write(buf.Bytes())
		return err
	}
	p, err := a.s().Abs(output)
	if err != nil {
		return err
	}
	return dotenv.WriteFileAtomic(p, buf.Bytes(), 0o644)
}
