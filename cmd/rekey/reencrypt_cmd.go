package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

type reencryptOptions struct {
	verify, rehearse bool
}

func (a *app) reencryptCommand() *cobra.Command {
	var o reencryptOptions
	c := &cobra.Command{
		Use:   "reencrypt [NAME...] [--verify | --rehearse]",
		Short: "Finish, check or rehearse the re-encryption of data-key columns",
		Long: `A rotation of a data key (kind data-key, with a reencrypt: section in
rekey.yaml) re-encrypts every configured column from the old key to the new
one as part of ` + "`rekey rotate`" + `. This command is for around it:

  rekey reencrypt              finish a re-encryption that ended with rows still
                               on the old key (rows that opened with neither key,
                               now repaired; or a run stopped by an error). When
                               every row has moved, NAME_PREVIOUS leaves the .env
                               and its consumers restart. Resumes from its
                               checkpoint after a crash.
  rekey reencrypt --verify     count, per column, the values under the current
                               key, the previous key, neither, and empty ones.
                               The old key is needed while its count is not zero.
  rekey reencrypt --rehearse   copy the database (CREATE DATABASE ... TEMPLATE, or
                               pg_dump | pg_restore when others are connected), run
                               the whole re-encryption on the copy with a fresh
                               throwaway key, report time, rows, failures and
                               table growth, and drop the copy.

Keyset pagination by primary key, one short transaction per batch,
compare-and-swap writes (a concurrent application write is never lost: the
row is read again and redone), every new ciphertext decrypted and compared
before it is written. A value that opens with neither key is never written:
it is listed (table, key, column) and the run exits 7.`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runReencrypt(cmd.Context(), o, args) },
	}
	c.Flags().BoolVar(&o.verify, "verify", false, "count the values under each key, per column; change nothing")
	c.Flags().BoolVar(&o.rehearse, "rehearse", false, "run the re-encryption on a throwaway copy of the database")
	return c
}

// dataKeys returns the named data keys, or all of them.
func dataKeys(specs []rekey.Spec, names []string) ([]*rekey.Spec, error) {
	var out []*rekey.Spec
	for i := range specs {
		s := &specs[i]
		if s.Kind != rekey.KindDataKey {
			continue
		}
		if len(names) == 0 || contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		found := false
		for _, s := range out {
			found = found || s.Name == n
		}
		if !found {
			return nil, rekey.Errorf(rekey.CodeNotFound, "%s is not a data key of rekey.yaml", n).WithHint("`rekey status` lists the secrets and their kinds")
		}
	}
	if len(out) == 0 {
		return nil, rekey.Errorf(rekey.CodeNotFound, "rekey.yaml has no data key (kind: data-key)")
	}
	for _, s := range out {
		if s.Reencrypt == nil {
			return nil, rekey.Errorf(rekey.CodeInvalid, "%s has no reencrypt section", s.Name).
				WithHint("add reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [table.column]} to %s", s.Name)
		}
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (a *app) runReencrypt(ctx context.Context, o reencryptOptions, names []string) error {
	if o.verify && o.rehearse {
		return rekey.Errorf(rekey.CodeInvalid, "--verify and --rehearse are separate runs").WithHint("pass one of them")
	}
	if o.verify || o.rehearse {
		return a.runReencryptCheck(ctx, o, names)
	}
	cfg, _, _, e, err := a.mutate(ctx)
	if err != nil {
		return err
	}
	specs, err := dataKeys(cfg.Secrets, names)
	if err != nil {
		return err
	}
	e.Progress = func(format string, args ...any) { fmt.Fprintf(a.errw(), "  "+format+"\n", args...) }
	did := 0
	for _, s := range specs {
		ok, err := e.FinishMigration(ctx, s.Name)
		if err != nil {
			return err
		}
		if ok {
			did++
			fmt.Fprintf(a.out(), "%s: every row is on the current key\n", s.Name)
		}
	}
	if did == 0 {
		fmt.Fprintln(a.out(), "nothing to finish: no re-encryption is incomplete (`rekey reencrypt --verify` counts the rows per key)")
	}
	return nil
}

// runReencryptCheck runs --verify (counts per key) or --rehearse (a run on a
// copy of the database). Neither changes the store or the application's data.
func (a *app) runReencryptCheck(ctx context.Context, o reencryptOptions, names []string) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	specs, err := dataKeys(cfg.Secrets, names)
	if err != nil {
		return err
	}
	e := a.engine(cfg, st, env)
	w := &wiring{a: a, cfg: cfg, env: env, e: e}
	action := "reencrypt.verify"
	if o.rehearse {
		action = "reencrypt.rehearse"
	}
	vals, err := a.currentValues(ctx, st, cfg, env.Name, action, "keys: "+specNames(specs))
	if err != nil {
		return err
	}
	defer vals.wipe()
	for _, s := range specs {
		var cur, prev rekey.Value
		var curN, prevN int
		if err := st.View(ctx, func(tx rekey.Tx) error {
			c, err := tx.Labeled(env.Name, s.Name, rekey.LabelCurrent)
			if err != nil {
				return err
			}
			curN = c.N
			if cur, err = tx.Value(env.Name, s.Name, c.N); err != nil {
				return err
			}
			if p, err := tx.Labeled(env.Name, s.Name, rekey.LabelPrevious); err == nil {
				prevN = p.N
				prev, err = tx.Value(env.Name, s.Name, p.N)
				return err
			}
			return nil
		}); err != nil {
			return err
		}
		dsn, err := vals.resolve(s.Reencrypt.Database)
		if err != nil {
			return err
		}
		if o.rehearse {
			if err := w.rehearse(ctx, s, cur, dsn); err != nil {
				return err
			}
			continue
		}
		keys := []rekey.Value{cur}
		heads := []string{fmt.Sprintf("v%d (current)", curN)}
		if prevN != 0 {
			keys = append(keys, prev)
			heads = append(heads, fmt.Sprintf("v%d (previous)", prevN))
		}
		stderr := a.redactedStderr(ctx, st, cur, prev, dsn)
		counts, err := reencrypt.Count(ctx, reencrypt.CountJob{DSN: dsn.RevealString(), Config: reencryptConfig(s.Reencrypt), Keys: keys,
			Progress: a.progressPrinter("counting " + s.Name), Stderr: stderr})
		stderr.Close()
		a.progressDone()
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "count the values of %s", s.Name)
		}
		tw := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tCOLUMN\t%s\tNEITHER\tEMPTY\n", s.Name, strings.Join(heads, "\t"))
		var neither, onPrev int64
		for _, c := range counts.Columns {
			row := []string{c.Table + "." + c.Column}
			for _, n := range c.ByKey {
				row = append(row, fmt.Sprint(n))
			}
			fmt.Fprintf(tw, "\t%s\t%d\t%d\n", strings.Join(row, "\t"), c.Neither, c.Empty)
			neither += c.Neither
			if len(c.ByKey) > 1 {
				onPrev += c.ByKey[1]
			}
		}
		tw.Flush()
		switch {
		case neither > 0:
			fmt.Fprintf(a.out(), "%s: %d values open with neither key\n", s.Name, neither)
			a.exit = int(rekey.CodeVerifyFailed)
		case onPrev > 0:
			fmt.Fprintf(a.out(), "%s: %d values still need v%d: keep it (run `rekey reencrypt`)\n", s.Name, onPrev, prevN)
		default:
			fmt.Fprintf(a.out(), "%s: every value is on the current key\n", s.Name)
		}
	}
	return nil
}

func specNames(specs []*rekey.Spec) string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return strings.Join(out, ",")
}
