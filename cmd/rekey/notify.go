package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

func (a *app) notifyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "notify",
		Short: "Notifications: test a channel, deliver the outbox, list what waits",
		Long: `notify works with the channels listed under notify: in rekey.yaml: a
signed webhook, a Slack-compatible incoming webhook, PagerDuty (Events API
v2), email over SMTP (STARTTLS required by default) and a command that reads
the message as JSON on its stdin. A message names secrets, versions,
fingerprints and the next command to run; it never holds a value.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.notifyTestCommand(), a.notifyFlushCommand(), a.notifyStatusCommand())
	return c
}

func (a *app) notifyFlushCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "flush",
		Example: "  rekey notify flush",
		Short:   "Deliver the notifications waiting in the outbox that are due now",
		Long: `flush delivers the pending notifications of the store's outbox whose next
attempt is due, oldest first. rotate, recover, rollback and remind flush at
their end too (best effort: a failed delivery never changes their exit
status); flush retries what they could not deliver.

Each message is checked against every stored value first (one holding a
value is refused and never sent) and delivered with the item's idempotency
key (webhook: X-Rekey-Idempotency-Key; PagerDuty: dedup_key; email:
Message-ID), so a receiver recognises a redelivery. A failed item is tried
again after 1m, 5m, 30m, 2h, 6h, then every 24h, and given up 7 days after
it was recorded. Every attempt is audited (notify.deliver).

It prints one line per attempt and the counts, and exits 7 when a delivery
failed this time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.s().Flush(cmd.Context())
			if f != nil {
				a.printFlushed(f, true)
			}
			if err != nil {
				return err
			}
			if f.Failed > 0 {
				return rekey.Errorf(rekey.CodeVerifyFailed, "%d notification(s) not delivered", f.Failed).
					WithHint("they stay in the outbox (`rekey notify status`); fix the channel or the endpoint, then run `rekey notify flush` again")
			}
			return nil
		},
	}
}

// printFlushed prints a flush: a line per attempt and, with counts, the
// totals.
func (a *app) printFlushed(f *rkapp.Flushed, counts bool) {
	for _, fi := range f.Items {
		o := fi.Item
		if fi.Err == "" {
			fmt.Fprintf(a.out(), "delivered %s to %s (%s: %s)\n", o.Event, textsafe.Quote(o.Channel), fi.Where, textsafe.Quote(fi.Status))
			continue
		}
		fmt.Fprintf(a.out(), "failed %s to %s (attempt %d): %s\n", o.Event, textsafe.Quote(o.Channel), o.Attempts, textsafe.Lines(fi.Err))
	}
	if counts {
		fmt.Fprintf(a.out(), "%d delivered, %d failed, %d pending", f.Delivered, f.Failed, f.Pending)
		if f.GivenUp > 0 {
			fmt.Fprintf(a.out(), ", %d given up", f.GivenUp)
		}
		fmt.Fprintln(a.out())
	}
}

// flushAfter delivers what the command enqueued (rotate, recover,
// rollback, remind): best effort, never its exit status; failures are
// warnings.
func (a *app) flushAfter(ctx context.Context) {
	if a.ses == nil {
		return
	}
	f := a.ses.FlushAfter(ctx)
	if f == nil {
		return
	}
	for _, fi := range f.Items {
		o := fi.Item
		if fi.Err != "" {
			a.warnf("notification %s to %s not delivered (attempt %d): %s; it stays in the outbox: `rekey notify flush` retries", o.Event, o.Channel, o.Attempts, fi.Err)
		} else if !a.quiet {
			fmt.Fprintf(a.errw(), "notified %s of %s (%s)\n", textsafe.Quote(o.Channel), o.Event, fi.Where)
		}
	}
}

// outboxItemJSON is one item of `rekey notify status --json`.
type outboxItemJSON struct {
	ID             int64      `json:"id"`
	Created        time.Time  `json:"created"`
	Environment    string     `json:"environment"`
	Event          string     `json:"event"`
	Channel        string     `json:"channel"`
	IdempotencyKey string     `json:"idempotency_key"`
	State          string     `json:"state"` // pending, failed, given-up, delivered
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"last_error,omitempty"`
	NextAttempt    *time.Time `json:"next_attempt,omitempty"`
	Delivered      *time.Time `json:"delivered,omitempty"`
}

func outboxState(o rekey.OutboxItem) string {
	switch {
	case !o.Pending():
		return "delivered"
	case rkapp.GivenUp(o):
		return "given-up"
	case o.Attempts > 0:
		return "failed"
	}
	return "pending"
}

func (a *app) notifyStatusCommand() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:     "status",
		Example: "  rekey notify status\n  rekey notify status --all --json",
		Short:   "List the notifications waiting in the outbox (pending, failed, given up)",
		Long: `status lists the outbox's notifications not delivered yet: event,
channel, state (pending, failed, given-up), attempts, the last error (with
every stored value redacted, bounded) and the next attempt. --all lists the
delivered ones too. Nothing is sent.

--json prints [{id, created, environment, event, channel, idempotency_key,
state, attempts, last_error, next_attempt, delivered}].`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			items, err := a.s().OutboxItems(cmd.Context(), all)
			if err != nil {
				return err
			}
			return a.printOutbox(items)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "also list the delivered notifications")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) printOutbox(items []rekey.OutboxItem) error {
	if a.jsonOut {
		out := make([]outboxItemJSON, 0, len(items))
		for _, o := range items {
			j := outboxItemJSON{ID: o.ID, Created: o.Created.UTC(), Environment: o.Env, Event: o.Event, Channel: o.Channel,
				IdempotencyKey: o.IdempotencyKey, State: outboxState(o), Attempts: o.Attempts, LastError: o.LastError}
			if o.Pending() && !rkapp.GivenUp(o) {
				t := o.NextAttempt.UTC()
				j.NextAttempt = &t
			}
			if !o.Pending() {
				t := o.Delivered.UTC()
				j.Delivered = &t
			}
			out = append(out, j)
		}
		return a.printJSON(out)
	}
	if len(items) == 0 {
		fmt.Fprintln(a.out(), "no notification waiting")
		return nil
	}
	for _, o := range items {
		line := fmt.Sprintf("#%d %s to %s: %s, %d attempt(s)", o.ID, o.Event, textsafe.Quote(o.Channel), outboxState(o), o.Attempts)
		switch {
		case !o.Pending():
			line += ", delivered " + o.Delivered.UTC().Format(time.RFC3339)
		case !rkapp.GivenUp(o):
			line += ", next attempt " + o.NextAttempt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintln(a.out(), line)
		if o.LastError != "" {
			fmt.Fprintf(a.out(), "    last error: %s\n", textsafe.Lines(o.LastError))
		}
	}
	return nil
}

func (a *app) notifyTestCommand() *cobra.Command {
	return &cobra.Command{
		Use: "test CHANNEL",
		Example: `  rekey notify test ops-hook
  rekey notify test mail -e staging`,
		Short: "Send a test message to a channel of rekey.yaml now, and say how it answered",
		Long: `test sends one message of event "test" to CHANNEL directly (not through
the outbox), with the values of the secrets the channel names (a signing
secret, a Slack URL, a PagerDuty routing key, an SMTP password) read from
the store. The read and the outcome are audited (action notify.test).

On success it prints the destination without anything secret and its answer:

  sent a test message to ops-hook (webhook https://ops.example.com/…: 200)

A failed delivery exits 7 with the reason (the HTTP status, the SMTP reply,
the first line of the command's stderr: made safe for a terminal, with every
stored value redacted) and a hint. rekey.yaml must be approved on this
machine (rekey config trust): it says where the message and those secrets go.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sent, err := a.s().NotifyTest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out(), "sent a test message to %s (%s: %s)\n", textsafe.Quote(sent.Channel), sent.Where, sent.Status)
			return nil
		},
	}
}
