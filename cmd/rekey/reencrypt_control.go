package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

const controlLong = `Control a re-encryption running in another process (a ` + "`rekey rotate NAME`" + ` of
a data key, or a ` + "`rekey reencrypt`" + `) on the same project and environment:

  rekey reencrypt pause      hold it at the next batch boundary: every batch
                             read is committed with its checkpoint, nothing
                             more is read (the database connections stay open)
  rekey reencrypt resume     continue at the pace in force
  rekey reencrypt pace N     go at most N rows per second; rows_per_second of
                             rekey.yaml stays the ceiling (a higher N is capped)
  rekey reencrypt pace auto  back to the configured pace

The request is a small file beside the lock (.rekey/reencrypt-control-ENV,
mode 0600) that the run reads before every batch; the command waits up to 5 s
for the run to apply it and says where the run stands. A run killed while
paused resumes with ` + "`rekey recover`" + ` at the configured pace. Each change is
in the audit log (reencrypt.control) as the run applies it. With no
re-encryption running it exits 3.`

func (a *app) reencryptControlCommands() []*cobra.Command {
	mk := func(use, short string, args cobra.PositionalArgs, act func([]string) (rkapp.ControlAction, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Long: controlLong, Args: args,
			Example: "  rekey reencrypt pause\n  rekey reencrypt pace 2000\n  rekey reencrypt pace auto\n  rekey reencrypt resume",
			RunE: func(cmd *cobra.Command, args []string) error {
				ca, err := act(args)
				if err != nil {
					return err
				}
				out, err := a.s().ControlReencryption(cmd.Context(), ca)
				if err != nil {
					return err
				}
				fmt.Fprintln(a.out(), controlMessage(ca, out))
				return nil
			},
		}
	}
	return []*cobra.Command{
		mk("pause", "Pause the re-encryption running in another process (at a batch boundary)", cobra.NoArgs,
			func([]string) (rkapp.ControlAction, error) { return rkapp.ControlAction{Pause: true}, nil }),
		mk("resume", "Resume a paused re-encryption", cobra.NoArgs,
			func([]string) (rkapp.ControlAction, error) { return rkapp.ControlAction{Resume: true}, nil }),
		mk("pace N|auto", "Set the pace (rows per second) of the running re-encryption; auto: the configured one", cobra.ExactArgs(1), parsePace),
	}
}

func parsePace(args []string) (rkapp.ControlAction, error) {
	if args[0] == "auto" {
		return rkapp.ControlAction{}, nil
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n <= 0 || n > 1e9 {
		return rkapp.ControlAction{}, rekey.Errorf(rekey.CodeInvalid, "pace %s: not a number of rows per second", textsafe.Quote(args[0])).
			WithHint("rekey reencrypt pace 2000 (rows per second), or rekey reencrypt pace auto")
	}
	return rkapp.ControlAction{Pace: n}, nil
}

// controlMessage says what a control did, where the run stands, and the
// next command.
func controlMessage(ca rkapp.ControlAction, o *rkapp.ControlOutcome) string {
	what := "change the pace of"
	switch {
	case ca.Pause:
		what = "pause"
	case ca.Resume:
		what = "resume"
	}
	s := o.Snapshot
	if s == nil {
		return fmt.Sprintf("asked rekey (pid %d) to %s its re-encryption: it is not re-encrypting yet, and applies it when it starts", o.PID, what)
	}
	name := textsafe.Quote(s.Secret) + "'s re-encryption"
	at := fmt.Sprintf("%s/%s rows", groupDigits(s.Done), groupDigits(s.Total))
	if !o.Acked {
		return fmt.Sprintf("asked %s (pid %d) to %s; it has not applied it within 5s (last seen at %s): `rekey status` shows when it has", name, o.PID, what, at)
	}
	switch {
	case ca.Pause:
		return fmt.Sprintf("paused %s at %s (pid %d); `rekey reencrypt resume` continues", name, at, o.PID)
	case ca.Resume:
		return fmt.Sprintf("resumed %s at %s, %s; `rekey reencrypt pause` pauses it again", name, at, paceText(s))
	}
	msg := fmt.Sprintf("%s goes %s", name, paceText(s))
	if ca.Pace > 0 && s.Pace < ca.Pace {
		msg += fmt.Sprintf(" (asked %d: capped at rows_per_second)", ca.Pace)
	}
	if s.Paused {
		msg += "; it is paused: `rekey reencrypt resume` continues"
	}
	return msg
}

// paceText is the pace in force and what sets it: "at most N rows/s
// (rows_per_second)".
func paceText(s *rkapp.ReencryptSnapshot) string {
	n := s.PaceInForce()
	switch {
	case n == 0:
		return "at full speed (no rows_per_second)"
	case s.Pace > 0 && n == s.Pace && (s.Ceiling == 0 || s.Pace < s.Ceiling):
		return fmt.Sprintf("at most %s rows/s (set by `rekey reencrypt pace`)", groupDigits(int64(n)))
	case s.Adaptive > 0 && n == int(s.Adaptive):
		return fmt.Sprintf("at most %s rows/s (adaptive pace)", groupDigits(int64(n)))
	}
	return fmt.Sprintf("at most %s rows/s (rows_per_second)", groupDigits(int64(n)))
}

// reencryptStatusLine is `rekey status`'s line of a running re-encryption.
func reencryptStatusLine(s *rkapp.ReencryptSnapshot, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "re-encryption of %s (pid %d): %s/%s rows", textsafe.Quote(s.Secret), s.PID, groupDigits(s.Done), groupDigits(s.Total))
	if s.Total > 0 {
		fmt.Fprintf(&b, " (%.0f%%)", min(100, 100*float64(s.Done)/float64(s.Total)))
	}
	if s.Table != "" {
		fmt.Fprintf(&b, " in %s", textsafe.Quote(s.Table))
	}
	fmt.Fprintf(&b, ", %.0f rows/s so far, pace: %s", s.RowsPerSecond, paceText(s))
	if s.ProbeP99 > 0 {
		fmt.Fprintf(&b, ", probe p99 %s", s.ProbeP99.Round(10*time.Microsecond))
	}
	if s.ReplicaLag > 0 {
		fmt.Fprintf(&b, ", replica lag %s", s.ReplicaLag.Round(time.Millisecond))
	}
	if eta := s.ETA(); eta > 0 {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	if s.Paused {
		fmt.Fprintf(&b, "; PAUSED by %s at %s: `rekey reencrypt resume` continues", textsafe.Quote(s.By), s.At.UTC().Format("15:04:05Z"))
	}
	if age := now.Sub(s.Updated); age > 10*time.Second {
		fmt.Fprintf(&b, " (as of %s ago)", age.Round(time.Second))
	}
	return b.String()
}

// groupDigits writes n as 1,234,567.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
