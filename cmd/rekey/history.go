package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

func (a *app) historyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "history NAME",
		Short: "List a secret's versions: dates, labels, sources, fingerprints (never values)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runHistory(cmd.Context(), args[0])
		},
	}
}

func (a *app) runHistory(ctx context.Context, name string) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	if _, ok := cfg.Secret(name); !ok {
		return rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", name).WithHint("`rekey status` lists the managed secrets")
	}
	var vs []rekey.Version
	var exposed map[int]*rekey.Exposure
	if err := st.View(ctx, func(tx rekey.Tx) error {
		if vs, err = tx.Versions(env.Name, name); err != nil {
			return err
		}
		exposed, err = rekey.Exposures(tx, env.Name, name)
		return err
	}); err != nil {
		return err
	}
	w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "VERSION\tLABEL\tCREATED\tSOURCE\tFINGERPRINT\tNOTE\n")
	for _, v := range vs {
		label := string(v.Label)
		if label == "" {
			label = "-"
		}
		note := v.Note
		for _, k := range sortedKeys(v.Attrs) {
			note = strings.TrimSpace(note + " " + k + "=" + v.Attrs[k])
		}
		// Exposed without its own mark: the same value as an exposed
		// version, or superseded by an emergency before the mark existed.
		if x := exposed[v.N]; x != nil && v.Attrs[rekey.AttrExposed] == "" {
			if x.Same != 0 {
				note = strings.TrimSpace(note + " " + rekey.AttrExposed + "=same value as v" + strconv.Itoa(x.Version))
			} else {
				note = strings.TrimSpace(note + " " + rekey.AttrExposed + "=emergency " + x.Rotation)
			}
		}
		q := textsafe.Quote // notes and attributes may come from an imported log
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", "v"+strconv.Itoa(v.N), q(label), v.CreatedAt.Format("2006-01-02 15:04:05Z"), q(string(v.Source)), q(v.Fingerprint), q(note))
	}
	return w.Flush()
}
