package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

type reencryptOptions struct {
	verify, rehearse bool
	adminSecret      string
}

func (a *app) reencryptCommand() *cobra.Command {
	var o reencryptOptions
	c := &cobra.Command{
		Use: "reencrypt [NAME...] [--verify | --rehearse [--admin-secret NAME]] [--json]",
		Example: `  rekey reencrypt --verify
  rekey reencrypt --rehearse ENCRYPTION_KEY
  rekey reencrypt --rehearse --admin-secret PG_ADMIN_URL
  rekey reencrypt --verify --json
  rekey reencrypt
  rekey reencrypt pause
  rekey reencrypt pace 2000`,
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
                               key, the previous key, the pending key (a rotation
                               created and not finished: running, or interrupted
                               until ` + "`rekey recover`" + `), neither, and empty ones.
                               The old key is needed while its count is not zero.
  rekey reencrypt --rehearse   copy the database (CREATE DATABASE ... TEMPLATE, or
                               pg_dump | pg_restore when others are connected), run
                               the whole re-encryption on the copy with a fresh
                               throwaway key, report time, rows, failures,
                               table growth and the WAL written (measured, beside
                               the estimate of ` + "`rekey rotate NAME --dry-run`" + `),
                               and drop the copy. The copy needs
                               CREATEDB: the app's role's, or an admin
                               connection's (--admin-secret NAME, or the
                               admin_secret of a postgres secret with
                               changed_by: admin on the same server, used
                               automatically), so the app's role needs none.
                               pg_dump must be of the server's major version or
                               later (PostgreSQL 18 needs pg_dump 18): an older
                               one is refused, naming both versions, before
                               anything is copied; the template copy needs no
                               client tools (stop the app's connections).
  rekey reencrypt pause|resume|pace N|pace auto
                               control a re-encryption running in another
                               process: hold it at a batch boundary, continue,
                               go at most N rows/s (capped at rows_per_second),
                               or back to the configured pace.

The configured tables and columns are looked up first (also before a
rotation of the data key creates anything): a typo is named, with the
nearest name the database has. Progress totals are exact (count(*)) when
the table's statistics are stale. Ctrl-C stops after the batches in flight
(at most a few seconds, even on a row another session holds locked):
exit 130; ` + "`rekey status`" + ` then reports the rotation or re-encryption
left open (exit 8), and ` + "`rekey recover`" + ` or ` + "`rekey reencrypt`" + ` resumes
from the checkpoint.

Online runs pace themselves (pace: adaptive, the default): a probe query
(probe:, default a primary-key point read on the table) calibrates for 1 s
before the first table, then the batch rate drops by 30% whenever its p99
goes over the target (target_p99:, default twice the idle p99), lock waits
on the table appear or active connections jump (then 5 probes judge the
new rate), and grows under 80% of the target by 1,000 rows/s per probe,
200 near the rate it last backed off from; smaller batches, evenly spaced;
rows_per_second stays the ceiling. Under 5,000 rows left: 5,000 rows/s,
no probe. pace: full (and maintenance mode) goes as fast as
rows_per_second allows.
Every run holds before its next batch while a streaming replica (the
primary's pg_stat_replication, and the replicas: secrets' URLs) lags more
than 80% of replica_lag_ceiling: (default 5s), until it is under half of it;
each hold is a line on stderr. The role needs pg_monitor to see the lag in
pg_stat_replication (rekey warns once when it may not).

Keyset pagination by primary key, one short transaction per batch,
compare-and-swap writes (a concurrent application write is never lost: the
row is read again and redone), every new ciphertext decrypted and compared
before it is written. A value that opens with neither key is never written:
it is listed (table, key, column) and the run exits 7.

--json prints one document: {"finished": [NAME...]}; with --verify
{"secrets": [{secret, keys: [{version, label, values}], columns: [{table,
column, by_key, neither, empty}], neither, pending, needs_previous}]}; with
--rehearse {"rehearsals": [{secret, method, admin, copy_ms, run_ms, rows,
reencrypted, empty, failed, failures, wal_bytes, estimated_wal_bytes,
estimate (per table, as in rotate --dry-run --json), tables: [{table,
before_bytes, after_bytes}]}]}. The exit status is the same as without it.`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runReencrypt(cmd.Context(), o, args) },
	}
	c.Flags().BoolVar(&o.verify, "verify", false, "count the values under each key, per column; change nothing")
	c.Flags().BoolVar(&o.rehearse, "rehearse", false, "run the re-encryption on a throwaway copy of the database")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON: the secrets finished, the counts per key (--verify) or the rehearsal's figures (--rehearse)")
	c.AddCommand(a.reencryptControlCommands()...)
	c.Flags().StringVar(&o.adminSecret, "admin-secret", "", "with --rehearse: the secret (or derived value) of rekey.yaml holding a postgres:// URL of a role with CREATEDB on the database's server, to make the copy")
	return c
}

func (a *app) runReencrypt(ctx context.Context, o reencryptOptions, names []string) error {
	if o.verify && o.rehearse {
		return rekey.Errorf(rekey.CodeInvalid, "--verify and --rehearse are separate runs").WithHint("pass one of them")
	}
	if o.adminSecret != "" && !o.rehearse {
		return rekey.Errorf(rekey.CodeInvalid, "--admin-secret is for --rehearse (the copy of the database)").WithHint("rekey reencrypt --rehearse --admin-secret %s", o.adminSecret)
	}
	if o.verify || o.rehearse {
		return a.runReencryptCheck(ctx, o, names)
	}
	finished := reencryptFinishedView{Finished: []string{}}
	done, err := a.s().FinishReencryption(ctx, names, a.narrate, func(name string) {
		finished.Finished = append(finished.Finished, name)
		if !a.jsonOut {
			fmt.Fprintf(a.out(), "%s: every row is on the current key\n", name)
		}
	})
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(finished)
	}
	if done == 0 {
		fmt.Fprintln(a.out(), "nothing to finish: no re-encryption is incomplete (`rekey reencrypt --verify` counts the rows per key)")
	}
	return nil
}

// runReencryptCheck runs --verify (counts per key) or --rehearse (a run on a
// copy of the database). Neither changes the store or the application's data.
func (a *app) runReencryptCheck(ctx context.Context, o reencryptOptions, names []string) error {
	if o.rehearse {
		views := []rehearsalView{}
		err := a.s().RehearseKeys(ctx, names, o.adminSecret, func(spec *rekey.Spec, reh *reencrypt.Rehearsal, err error) {
			if a.jsonOut {
				views = append(views, rehearsalJSON(spec, reh, err))
			} else {
				printRehearsal(a.out(), spec, reh)
			}
			if errors.Is(err, reencrypt.ErrUndecryptable) {
				a.exit = exitCode(rekey.CodeVerifyFailed)
			}
		})
		if err != nil || !a.jsonOut {
			return err
		}
		return a.printJSON(struct {
			Rehearsals []rehearsalView `json:"rehearsals"`
		}{views})
	}
	views := []keyCountView{}
	err := a.s().CountKeys(ctx, names, func(k rkapp.KeyCount) {
		if a.jsonOut {
			views = append(views, keyCountJSON(k))
			if k.Counts.Neither() > 0 {
				a.exit = exitCode(rekey.CodeVerifyFailed)
			}
			return
		}
		a.printCounts(k)
	})
	if err != nil || !a.jsonOut {
		return err
	}
	return a.printJSON(struct {
		Secrets []keyCountView `json:"secrets"`
	}{views})
}

// printCounts prints the values of a data key's columns per key: current,
// previous, and pending (a rotation created and not finished), so a value
// sealed under the pending key is never counted as opening with neither.
func (a *app) printCounts(k rkapp.KeyCount) {
	var heads []string
	for _, ck := range k.Keys {
		heads = append(heads, fmt.Sprintf("v%d (%s)", ck.N, ck.Label))
	}
	tw := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tCOLUMN\t%s\tNEITHER\tEMPTY\n", k.Spec.Name, strings.Join(heads, "\t"))
	for _, c := range k.Counts.Columns {
		row := []string{c.Table + "." + c.Column}
		for _, n := range c.ByKey {
			row = append(row, fmt.Sprint(n))
		}
		fmt.Fprintf(tw, "\t%s\t%d\t%d\n", strings.Join(row, "\t"), c.Neither, c.Empty)
	}
	tw.Flush()
	name := k.Spec.Name
	var prev, pend *rkapp.CountedKey
	var onPrev, onPend int64
	for i := range k.Keys {
		switch k.Keys[i].Label {
		case rekey.LabelPrevious:
			prev, onPrev = &k.Keys[i], k.Counts.ByKey(i)
		case rekey.LabelPending:
			pend, onPend = &k.Keys[i], k.Counts.ByKey(i)
		}
	}
	if n := k.Counts.Neither(); n > 0 {
		fmt.Fprintf(a.out(), "%s: %d values open with neither key\n", name, n)
		a.exit = exitCode(rekey.CodeVerifyFailed)
	}
	switch {
	case pend != nil:
		fmt.Fprintf(a.out(), "%s: a rotation to v%d is not finished: %d values already on v%d (pending), %d on v%d (current); `rekey status` says whether it is running, `rekey recover` completes one that was interrupted\n",
			name, pend.N, onPend, pend.N, k.Counts.ByKey(0), k.Keys[0].N)
	case onPrev > 0:
		fmt.Fprintf(a.out(), "%s: %d values still need v%d: keep it (run `rekey reencrypt`)\n", name, onPrev, prev.N)
	case k.Counts.Neither() == 0:
		fmt.Fprintf(a.out(), "%s: every value is on the current key\n", name)
	}
}

// printRehearsal prints the figures of a rehearsal.
func printRehearsal(out io.Writer, spec *rekey.Spec, reh *reencrypt.Rehearsal) {
	if reh == nil {
		return
	}
	via := ""
	if reh.Admin {
		via = " through the admin connection"
	}
	fmt.Fprintf(out, "%s: rehearsal on a copy of the database (%s, made%s in %s, dropped)\n", spec.Name, reh.Method, via, reh.CopyTime.Round(time.Millisecond))
	if res := reh.Result; res != nil {
		rate := 0.0
		if reh.RunTime > 0 {
			rate = float64(res.Rows) / reh.RunTime.Seconds()
		}
		fmt.Fprintf(out, "  re-encryption: %s for %d rows (%.0f rows/s): %d values re-encrypted, %d empty, %d open with neither key\n",
			reh.RunTime.Round(time.Millisecond), res.Rows, rate, res.Reencrypted, res.Empty, res.Failed)
		for _, f := range res.Failures {
			fmt.Fprintf(out, "  opens with neither key: %s\n", f)
		}
		fmt.Fprintf(out, "  %s\n", rehearsalWAL(reh))
	}
	for _, g := range reh.Tables {
		pct := 0.0
		if g.Before > 0 {
			pct = 100 * float64(g.After-g.Before) / float64(g.Before)
		}
		fmt.Fprintf(out, "  %s: %s before, %s after (%+.0f%%, dead row versions until VACUUM)\n", g.Table, bytesIEC(g.Before), bytesIEC(g.After), pct)
	}
}

// rehearsalWAL is the line of a rehearsal's WAL: measured during the run
// on the copy, beside the model's estimate (made on the source) and how
// far apart they are.
func rehearsalWAL(reh *reencrypt.Rehearsal) string {
	measured := "not measured"
	if reh.WALBytes >= 0 {
		measured = bytesIEC(reh.WALBytes) + " measured during the run (the whole server's WAL)"
	}
	if reh.Estimate == nil {
		why := "no estimate"
		if reh.EstimateErr != nil {
			why += ": " + reh.EstimateErr.Error()
		}
		return "WAL: " + measured + "; " + why
	}
	est := reh.Estimate
	model := est.WALBytes()
	var fpi int64
	for _, t := range est.Tables {
		fpi += t.WAL.FullPageImages
	}
	line := fmt.Sprintf("WAL: %s; model ~%s", measured, bytesIEC(model))
	if reh.WALBytes >= 0 && model > 0 {
		line += fmt.Sprintf(" (measured ×%.2f of it)", float64(reh.WALBytes)/float64(model))
	}
	if !est.FullPageWrites {
		return line + "; full_page_writes is off: no full-page images"
	}
	return line + fmt.Sprintf("; %s of the model are full-page images, logged at a page's first change after a checkpoint: fewer on a copy made just before the run", bytesIEC(fpi))
}
