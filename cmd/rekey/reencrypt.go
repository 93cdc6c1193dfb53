package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// dataKeyApplier re-encrypts the columns a data key encrypts, as the migrate
// step of its rotation. Apply and Revert have nothing to do: the database
// holds no key, only data under it.
type dataKeyApplier struct{ w *wiring }

func (d *dataKeyApplier) Apply(context.Context, string, *rekey.Spec, rekey.VersionValue, rekey.VersionValue) error {
	return nil
}

func (d *dataKeyApplier) Revert(context.Context, string, *rekey.Spec, rekey.VersionValue, rekey.VersionValue) error {
	return nil
}

// Migrate implements rekey.Migrator.
func (d *dataKeyApplier) Migrate(ctx context.Context, env string, spec *rekey.Spec, pending, current rekey.VersionValue, rotationID string) error {
	res, err := d.w.reencrypt(ctx, spec, current.Value, pending.Value, rotationID)
	if res == nil {
		return err
	}
	// The figures of the run, in the audit log (fail closed: a run whose
	// record cannot be written reports an error, and recovery runs it again).
	outcome := "ok"
	if err != nil {
		outcome = "incomplete"
	}
	detail := fmt.Sprintf("rotation %s: %d values re-encrypted from v%d, %d already on v%d, %d empty, %d open with neither key, %d revisited after concurrent writes",
		rotationID, res.Reencrypted, current.N, res.AlreadyNew, pending.N, res.Empty, res.Failed, res.Revisited)
	if aerr := d.w.e.Store.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Audit(rekey.AuditEntry{Actor: d.w.e.Actor, Action: "rotate.reencrypt", Env: env, Secret: spec.Name, Version: pending.N, Fingerprint: pending.Fingerprint, Outcome: outcome, Detail: detail})
		return err
	}); aerr != nil && err == nil {
		return aerr
	}
	return err
}

// reencryptConfig maps a secret's reencrypt section onto the engine's.
func reencryptConfig(r *rekey.ReencryptSpec) reencrypt.Config {
	return reencrypt.Config{Codec: r.Codec, Encoding: r.Encoding, Columns: r.Columns, Command: r.Command,
		KeyID: r.KeyID, BatchSize: r.BatchSize, RowsPerSecond: r.RowsPerSecond}
}

// reencrypt moves spec's columns from old to new, resuming job id's
// checkpoint, with progress on stderr. Undecryptable values are listed and
// make the error wrap rekey.ErrIncomplete.
func (w *wiring) reencrypt(ctx context.Context, spec *rekey.Spec, old, new rekey.Value, id string) (*reencrypt.Result, error) {
	rs := spec.Reencrypt
	if rs == nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s has no reencrypt section", spec.Name)
	}
	cfg := reencryptConfig(rs)
	if err := cfg.Validate(); err != nil {
		return nil, rekey.Wrap(rekey.CodeInvalid, err, "reencrypt of %s (rekey.yaml line %d)", spec.Name, spec.Line)
	}
	vals, err := w.liveValues(ctx)
	if err != nil {
		return nil, err
	}
	defer vals.wipe()
	dsn, err := vals.resolve(rs.Database)
	if err != nil {
		return nil, err
	}
	stderr := w.a.redactedStderr(ctx, w.e.Store, old, new) // a command codec's stderr
	defer stderr.Close()
	job := reencrypt.Job{DSN: dsn.RevealString(), Config: cfg, Old: old, New: new, JobID: id,
		Progress: w.a.progressPrinter("re-encrypting " + spec.Name), Stderr: stderr}
	res, err := reencrypt.Run(ctx, job)
	w.a.progressDone()
	if res != nil {
		w.say("re-encrypted %d values of %s in %s (%d already on the new key, %d empty, %d revisited after concurrent writes)",
			res.Reencrypted, spec.Name, res.Duration.Round(time.Millisecond), res.AlreadyNew, res.Empty, res.Revisited)
		for _, f := range res.Failures {
			w.a.warnf("opens with neither key, left as it is: %s", f)
		}
	}
	if errors.Is(err, reencrypt.ErrUndecryptable) {
		return res, &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: fmt.Sprintf("%d values of %s open with neither the old nor the new key", res.Failed, spec.Name),
			Hint: "they are listed above and were not touched; the old key is kept until they are fixed", Err: errors.Join(rekey.ErrIncomplete, err)}
	}
	if err != nil {
		return res, rekey.Wrap(rekey.ErrorCode(err), err, "re-encrypt %s", spec.Name)
	}
	return res, nil
}

// progressPrinter renders re-encryption progress on stderr: a line redrawn
// in place on a terminal, a log line every 10 seconds otherwise.
func (a *app) progressPrinter(what string) func(reencrypt.Progress) {
	w := a.errw()
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	return rowProgress(w, tty, what, time.Now, 10*time.Second, func() { a.progressOpen = true })
}

// rowProgress formats progress lines: "what: [####....] done/total rows
// (pct%), N rows/s, ETA d". On a terminal every call redraws the line
// (opened is called); otherwise a line is printed at most once per every.
func rowProgress(w io.Writer, tty bool, what string, now func() time.Time, every time.Duration, opened func()) func(reencrypt.Progress) {
	var last time.Time
	return func(p reencrypt.Progress) {
		if !tty && !last.IsZero() && now().Sub(last) < every {
			return
		}
		last = now()
		line := fmt.Sprintf("  %s: %d rows", what, p.Done)
		if p.Total > 0 {
			pct := min(100, 100*float64(p.Done)/float64(p.Total))
			line = fmt.Sprintf("  %s: %s %d/%d rows (%.0f%%)", what, bar(pct, 20), p.Done, p.Total, pct)
		}
		if p.RowsPerSecond > 0 {
			line += fmt.Sprintf(", %.0f rows/s", p.RowsPerSecond)
			if p.Total > p.Done {
				line += ", ETA " + (time.Duration(float64(p.Total-p.Done)/p.RowsPerSecond) * time.Second).Round(time.Second).String()
			}
		}
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			opened()
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// progressDone ends a progress line redrawn in place.
func (a *app) progressDone() {
	if a.progressOpen {
		fmt.Fprintln(a.errw())
		a.progressOpen = false
	}
}

func bar(pct float64, width int) string {
	n := int(pct / 100 * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// rehearse runs the re-encryption of spec on a copy of its database, from
// the current key to a fresh throwaway one (never stored), and reports.
func (w *wiring) rehearse(ctx context.Context, spec *rekey.Spec, cur, dsn rekey.Value) error {
	gen := spec.Generator
	if gen.Bytes == 0 {
		gen = rekey.DataKeyGenerator
	}
	throwaway, err := gen.Generate(nil)
	if err != nil {
		return err
	}
	defer throwaway.Wipe()
	stderr := w.a.redactedStderr(ctx, w.e.Store, cur, throwaway, dsn)
	defer stderr.Close()
	job := reencrypt.Job{DSN: dsn.RevealString(), Config: reencryptConfig(spec.Reencrypt), Old: cur, New: throwaway,
		JobID: time.Now().UTC().Format("20060102T150405Z"), Progress: w.a.progressPrinter("rehearsing " + spec.Name), Stderr: stderr}
	reh, err := reencrypt.Rehearse(ctx, job)
	w.a.progressDone()
	out := w.a.out()
	if reh != nil {
		fmt.Fprintf(out, "%s: rehearsal on a copy of the database (%s, made in %s, dropped)\n", spec.Name, reh.Method, reh.CopyTime.Round(time.Millisecond))
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
		}
		for _, g := range reh.Tables {
			pct := 0.0
			if g.Before > 0 {
				pct = 100 * float64(g.After-g.Before) / float64(g.Before)
			}
			fmt.Fprintf(out, "  %s: %s before, %s after (%+.0f%%, dead row versions until VACUUM)\n", g.Table, bytesIEC(g.Before), bytesIEC(g.After), pct)
		}
	}
	if errors.Is(err, reencrypt.ErrUndecryptable) {
		w.a.exit = int(rekey.CodeVerifyFailed)
		return nil
	}
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "rehearse the re-encryption of %s", spec.Name)
	}
	return nil
}

func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
