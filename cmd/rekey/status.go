package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	var within string
	c := &cobra.Command{
		Use: "status [--json] [--due-within 14d]",
		Example: `  rekey status
  rekey status --json
  rekey status || notify-oncall   # exits 8 when something needs attention
  rekey status --due-within 14d   # the pre-deploy gate: exits 9 with the reasons`,
		Short: "Show every secret's version, last rotation, next due date and state",
		Long: `status prints one line per secret of the environment: kind, version, last
rotated, next due, and a state: ok, due-soon (within 14 days or a sixth of the
period), overdue, manual (user-managed), weak (below 256 bits for signing and
data keys, 128 for passwords), missing (no value), reencrypt-incomplete or
drift (a .env holds a value the store does not know: a hand edit; the
warning says how to record it or restore the stored one).

A rotation running now is named ("rotation in progress (pid N since T)"),
with its re-encryption's progress, pace, ETA and whether it is paused (see
` + "`rekey reencrypt pause`" + `);
one a crash or Ctrl-C left open is named with the step it reached and the
next command (` + "`rekey recover`" + `). Each open incident is named with the
follow-ups past their deadline (` + "`rekey incident status ID`" + `).

It exits 0 when everything is in order and 8 when anything is overdue, weak,
missing or drifting, a re-encryption is incomplete, a rotation was
interrupted, or an open incident has a follow-up past its deadline. --json prints an array of objects with name, environment, kind,
version, last_rotated, next_due, period, state, bits and fingerprint.

--due-within WINDOW is the pre-deploy gate (run it in CI before a
deployment): it prints, after the table, one line per reason not to deploy
with the command that clears it, and exits 9 when there is any: a secret
that falls due within WINDOW (14d, 2w) or is overdue, weak, missing or
drifted, a re-encryption incomplete, a rotation interrupted or running, the
targets unreadable, or an open incident. It exits 0 when there is none.
With --json it prints one object: {"due_within", "secrets": [the array
above], "reasons": [{reason, secret, text, command}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("due-within") {
				return a.runStatusGate(cmd.Context(), within, asJSON)
			}
			return a.runStatus(cmd.Context(), asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&within, "due-within", "", "pre-deploy gate: exit 9 when anything falls due within this window (14d) or needs attention")
	return c
}

// computeStatus is rkapp.ComputeStatus at the session's clock (doctor,
// report).
func (a *app) computeStatus(ctx context.Context, cfg *config.Config, st rekey.Store, env string) ([]rekey.SecretStatus, error) {
	return rkapp.ComputeStatus(ctx, st, cfg, env, a.s().Now())
}

func (a *app) runStatus(ctx context.Context, asJSON bool) error {
	s, err := a.s().Status(ctx)
	if err != nil {
		return err
	}
	if s.NeedsAttention(a.now()) {
		a.exit = 8
	}
	if asJSON {
		return a.printJSON(append([]rekey.SecretStatus{}, s.Rows...)) // [] when none, never null
	}
	a.printStatus(s)
	return nil
}

// printStatus prints the table of status and its warnings.
func (a *app) printStatus(s *rkapp.Status) {
	w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "SECRET\tENVIRONMENT\tKIND\tVERSION\tLAST ROTATED\tNEXT DUE\tSTATE\n")
	q := textsafe.Quote
	for _, r := range s.Rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", q(r.Name), q(r.Environment), q(string(r.Kind)), ver(r.Version), day(r), due(r), a.paint(q(string(r.State))))
	}
	w.Flush()
	if s.DriftErr != nil {
		a.warnf("could not compare the targets with the store: %v", s.DriftErr)
	}
	for _, d := range s.Drift {
		what := "holds a value rekey does not know (edited by hand?)"
		if d.Missing {
			what = "has no value for it"
		}
		a.warnf("drift: %s in %s %s: `rekey set %s --from-target` records the file's value, `rekey publish %s` writes the store's", d.Key, textsafe.Quote(d.Target), what, d.Key, d.Key)
	}
	switch {
	case s.Running != "":
		a.warnf("rotation in progress (%s): wait for it to finish; this status is from before its end", s.Running)
		if s.Reencrypt != nil {
			fmt.Fprintln(a.out(), reencryptStatusLine(s.Reencrypt, time.Now()))
		}
	default:
		for _, r := range s.Interrupted {
			a.warnf("rotation %s was interrupted (at %s): run `rekey recover` to complete it or roll it back", textsafe.Quote(r.ID), r.LastStep().Name)
		}
	}
	for _, i := range s.Incidents {
		late := ""
		if n := len(i.Overdue(a.now())); n > 0 {
			late = fmt.Sprintf(", %d follow-up(s) past their deadline", n)
		}
		a.warnf("incident %s is open (since %s)%s: `rekey incident status %s`", i.ID, i.OpenedAt.UTC().Format("2006-01-02 15:04Z"), late, i.ID)
	}
}

// exitGate is the exit status of `rekey status --due-within` when there is
// a reason not to deploy (exitCodesHelp).
const exitGate = 9

// runStatusGate is `rekey status --due-within WINDOW`: the table, then one
// line per reason not to deploy with its command; exit 9 when any.
func (a *app) runStatusGate(ctx context.Context, within string, asJSON bool) error {
	d, err := rekey.ParseDuration(within)
	if err != nil || d < 0 {
		return rekey.Errorf(rekey.CodeInvalid, "--due-within: not a duration").WithHint("use 14d, 2w or 36h")
	}
	g, err := a.s().StatusGate(ctx, d)
	if err != nil {
		return err
	}
	if len(g.Reasons) > 0 {
		a.exit = exitGate
	}
	if asJSON {
		return a.printJSON(struct {
			DueWithin string               `json:"due_within"`
			Secrets   []rekey.SecretStatus `json:"secrets"`
			Reasons   []rkapp.GateReason   `json:"reasons"`
		}{rekey.FormatDays(d), append([]rekey.SecretStatus{}, g.Rows...), g.Reasons})
	}
	a.printStatus(g.Status)
	if len(g.Reasons) == 0 {
		fmt.Fprintf(a.out(), "gate: ok: nothing falls due within %s, nothing needs attention\n", rekey.FormatDays(d))
		return nil
	}
	fmt.Fprintf(a.out(), "gate: %d reasons not to deploy (window %s):\n", len(g.Reasons), rekey.FormatDays(d))
	for _, r := range g.Reasons {
		fmt.Fprintf(a.out(), "  %s: %s → %s\n", r.Reason, textsafe.Quote(r.Text), r.Command)
	}
	return nil
}

// printJSON prints v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
