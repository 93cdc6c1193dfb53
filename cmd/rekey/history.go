package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

func (a *app) historyCommand() *cobra.Command {
	c := &cobra.Command{
		Use: "history NAME [--json]",
		Example: `  rekey history DATABASE_PASSWORD
  rekey history JWT_SECRET --json`,
		Short: "List a secret's versions: dates, labels, sources, fingerprints (never values)",
		Long: `history lists a secret's versions, oldest first: version, label (current,
previous, pending or none), when it was created, its source (generated,
imported, set, rollback...), its fingerprint and a note (attributes such as
role=, exposed=). It never prints a value.

--json prints an array of {version, label, created_at, source, fingerprint,
rotation_id, note, attributes}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runHistory(cmd.Context(), args[0])
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) runHistory(ctx context.Context, name string) error {
	vs, err := a.s().History(ctx, name)
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(historyView(vs))
	}
	w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "VERSION\tLABEL\tCREATED\tSOURCE\tFINGERPRINT\tNOTE\n")
	for _, v := range vs {
		label := string(v.Label)
		if label == "" {
			label = "-"
		}
		q := textsafe.Quote // notes and attributes may come from an imported log
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", "v"+strconv.Itoa(v.N), q(label), v.CreatedAt.Format("2006-01-02 15:04:05Z"), q(string(v.Source)), q(v.Fingerprint), q(v.Note))
	}
	return w.Flush()
}
