package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

func (a *app) remindCommand() *cobra.Command {
	within := "14d"
	c := &cobra.Command{
		Use: "remind",
		Example: `  rekey remind
  rekey remind --within 30d -e staging
  rekey remind --quiet     # from cron: 0 8 * * *  cd /srv/app && rekey remind --quiet`,
		Short: "Send reminders of what is due soon, overdue or stuck (once per item per day)",
		Long: `remind is the reminder without a server: run it from cron or a systemd
timer. For the environment it enqueues in the notification outbox

  due.soon              each secret that falls due within --within (default 14d)
  overdue               each secret past its due date
  rotation.failed       each interrupted rotation (run rekey recover)
  reencrypt.incomplete  each data key with rows still under its previous key

to the channels rekey.yaml's notify: section routes each event to, then
delivers the outbox (rekey notify flush). A reminder's idempotency key holds
the UTC date, so running remind again the same day sends nothing new; the
next day it reminds again. It prints each reminder (new, or already sent
today) and each delivery; a failed delivery is a warning and stays in the
outbox for the next run (its exit status is 0 unless rekey itself failed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := rekey.ParseDuration(within)
			if err != nil || d <= 0 {
				return rekey.Errorf(rekey.CodeInvalid, "--within %q is not a duration", within).WithHint("e.g. --within 14d, 72h")
			}
			r, err := a.s().Remind(cmd.Context(), d)
			if err != nil {
				return err
			}
			a.printReminded(r)
			return nil
		},
	}
	c.Flags().StringVar(&within, "within", within, "remind of secrets due within this window (14d, 72h)")
	return c
}

func (a *app) printReminded(r *rkapp.Reminded) {
	if len(r.Reminders) == 0 {
		fmt.Fprintf(a.out(), "nothing due within the window, overdue or stuck in %s\n", r.Env)
	}
	for _, m := range r.Reminders {
		state := "already sent today"
		if m.New {
			state = "new"
		}
		to := "no channel (rekey.yaml has no notify: section)"
		if len(m.Channels) > 0 {
			to = "to " + strings.Join(m.Channels, ", ")
		}
		fmt.Fprintf(a.out(), "%s %s: %s %s (%s)\n", m.Event, textsafe.Quote(m.About), textsafe.Lines(m.Title), to, state)
	}
	if r.FlushErr != nil {
		a.warnf("delivering notifications: %v (they stay in the outbox: `rekey notify flush` retries)", r.FlushErr)
	}
	if r.Flushed != nil {
		for _, fi := range r.Flushed.Items {
			if fi.Err != "" {
				a.warnf("notification %s to %s not delivered (attempt %d): %s; it stays in the outbox", fi.Item.Event, fi.Item.Channel, fi.Item.Attempts, fi.Err)
			}
		}
		a.printFlushed(&rkapp.Flushed{Items: okItems(r.Flushed.Items), Delivered: r.Flushed.Delivered, Failed: r.Flushed.Failed, Pending: r.Flushed.Pending, GivenUp: r.Flushed.GivenUp}, true)
	}
}

// okItems are the delivered items (failures are warnings).
func okItems(items []rkapp.FlushedItem) []rkapp.FlushedItem {
	var out []rkapp.FlushedItem
	for _, fi := range items {
		if fi.Err == "" {
			out = append(out, fi)
		}
	}
	return out
}
