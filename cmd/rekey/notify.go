package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey/internal/textsafe"
)

func (a *app) notifyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "notify",
		Short: "Notification channels: send a test message",
		Long: `notify works with the channels listed under notify: in rekey.yaml: a
signed webhook, a Slack-compatible incoming webhook, PagerDuty (Events API
v2), email over SMTP (STARTTLS required by default) and a command that reads
the message as JSON on its stdin. A message names secrets, versions,
fingerprints and the next command to run; it never holds a value.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.notifyTestCommand())
	return c
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
