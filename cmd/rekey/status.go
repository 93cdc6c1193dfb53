package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show every secret's version, last rotation, next due date and state",
		Long: `status prints one line per secret of the environment: kind, version, last
rotated, next due, and a state: ok, due-soon (within 14 days or a sixth of the
period), overdue, manual (user-managed), weak (below 256 bits for signing and
data keys, 128 for passwords) or missing (no value).

It exits 0 when everything is in order and 8 when anything is overdue, weak or
missing. --json prints an array of objects with name, environment, kind,
version, last_rotated, next_due, period, state, bits and fingerprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runStatus(cmd.Context(), asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// computeStatus unseals the current values (for strength) and computes the rows.
func (a *app) computeStatus(ctx context.Context, cfg *config.Config, st rekey.Store, env string) ([]rekey.SecretStatus, error) {
	var current map[string]rekey.Version
	bits := map[string]int{}
	err := st.View(ctx, func(tx rekey.Tx) error {
		var err error
		current, err = tx.AllLabeled(env, rekey.LabelCurrent)
		if err != nil {
			return err
		}
		for _, s := range cfg.Secrets {
			v, ok := current[s.Name]
			if !ok {
				continue
			}
			val, err := tx.Value(env, s.Name, v.N)
			if err != nil {
				return err
			}
			bits[s.Name] = rekey.EstimateBits(val, s.Generator.Encoding)
			val.Wipe()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rekey.ComputeStatus(env, cfg.Secrets, current, bits, a.now()), nil
}

func (a *app) runStatus(ctx context.Context, asJSON bool) error {
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
	var open []*rekey.Rotation
	if err := st.View(ctx, func(tx rekey.Tx) error {
		open, err = tx.Rotations(env.Name, true)
		return err
	}); err != nil {
		return err
	}
	attention := false
	for _, r := range rows {
		attention = attention || r.NeedsAttention()
	}
	if asJSON {
		if rows == nil {
			rows = []rekey.SecretStatus{}
		}
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
		fmt.Fprintf(w, "SECRET\tENVIRONMENT\tKIND\tVERSION\tLAST ROTATED\tNEXT DUE\tSTATE\n")
		for _, r := range rows {
			q := textsafe.Quote
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", q(r.Name), q(r.Environment), q(string(r.Kind)), ver(r.Version), day(r), due(r), q(string(r.State)))
		}
		w.Flush()
		for _, r := range open {
			a.warnf("rotation %s was interrupted: run `rekey recover`", textsafe.Quote(r.ID))
		}
	}
	if attention {
		a.exit = 8
	}
	return nil
}

func ver(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("v%d", n)
}

func day(r rekey.SecretStatus) string {
	if r.LastRotated.IsZero() {
		return "-"
	}
	return r.LastRotated.UTC().Format("2006-01-02")
}

func due(r rekey.SecretStatus) string {
	if r.NextDue.IsZero() {
		if r.Kind == rekey.KindManual {
			return "(user managed)"
		}
		return "-"
	}
	return r.NextDue.UTC().Format("2006-01-02")
}
