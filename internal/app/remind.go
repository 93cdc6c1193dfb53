package app

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/notify"
)

// DefaultRemindWithin is how far ahead `rekey remind` looks by default.
const DefaultRemindWithin = 14 * 24 * time.Hour

// Reminder is one reminder `rekey remind` enqueued: its event, what it is
// about (a secret, a rotation), its title, the channels it goes to, and
// whether it is new today (false: already enqueued today, not again).
type Reminder struct {
	Event    string
	About    string
	Title    string
	Channels []string
	New      bool
}

// Reminded is what Remind did: the reminders and the flush that followed.
type Reminded struct {
	Env       string
	Day       string // the UTC day the reminders are keyed by
	Reminders []Reminder
	Flushed   *Flushed
	FlushErr  error
}

// Remind enqueues, for the session's environment, a reminder of each secret
// due within the window (due.soon), overdue (overdue), and each stuck item:
// an interrupted rotation (rotation.failed: run rekey recover), a data key
// whose re-encryption is incomplete (reencrypt.incomplete). Each is keyed by
// the UTC day, so running it twice the same day enqueues nothing new. It
// then flushes the outbox (a failed delivery is reported, not an error).
func (s *Session) Remind(ctx context.Context, within time.Duration) (*Reminded, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	out := &Reminded{Env: env.Name, Day: now.UTC().Format(time.DateOnly)}
	rows, err := ComputeStatus(ctx, st, cfg, env.Name, now)
	if err != nil {
		return nil, err
	}
	var msgs []notify.Message
	for _, r := range rows {
		if m, ok := reminderOf(r, now, within); ok {
			msgs = append(msgs, m)
		}
	}
	err = st.Update(ctx, func(tx rekey.Tx) error {
		stuck, err := stuckMessages(tx, env.Name)
		if err != nil {
			return err
		}
		msgs = append(msgs, stuck...)
		seen, err := outboxKeys(tx)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			about := m.IdempotencyKey
			m.IdempotencyKey = about + " " + out.Day
			m.Environment, m.Time = env.Name, now.UTC().Truncate(time.Second)
			chs := cfg.Notify.ChannelsFor(m.Event)
			rem := Reminder{Event: m.Event, About: about, Title: m.Title, Channels: chs}
			for _, ch := range chs {
				if !seen[IdempotencyKey(env.Name, m.Event, m.IdempotencyKey, ch)] {
					rem.New = true
				}
			}
			if err := s.Enqueue(tx, cfg, m.Event, m); err != nil {
				return err
			}
			out.Reminders = append(out.Reminders, rem)
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "notify.remind", Env: env.Name, Outcome: "ok",
			Detail: fmt.Sprintf("%d reminders for %s", len(out.Reminders), out.Day)})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(cfg.Notify.Channels) > 0 {
		out.Flushed, out.FlushErr = s.Flush(ctx)
	}
	return out, nil
}

// reminderOf is the reminder of a secret's status row, if it is due within
// the window or overdue. Its IdempotencyKey is the subject (the name).
func reminderOf(r rekey.SecretStatus, now time.Time, within time.Duration) (notify.Message, bool) {
	m := notify.Message{IdempotencyKey: r.Name,
		Secrets: []notify.SecretRef{{Name: r.Name, Version: r.Version, Fingerprint: r.Fingerprint}}}
	cmd := "rekey rotate " + r.Name
	if r.Kind == rekey.KindManual {
		cmd = "rekey set " + r.Name
	}
	m.Command = cmd
	switch {
	case r.NextDue.IsZero():
		return m, false
	case r.State == rekey.StateOverdue || !r.NextDue.After(now):
		m.Event, m.Severity = rekey.EventOverdue, notify.SeverityWarning
		m.Title = r.Name + " is overdue"
		m.Text = fmt.Sprintf("%s v%d (%s) was due on %s (period %s). Rotate it: `%s` (or `rekey rotate --due` for every overdue secret).",
			r.Name, r.Version, r.Fingerprint, r.NextDue.UTC().Format(time.DateOnly), r.Period, cmd)
	case r.NextDue.Sub(now) <= within:
		m.Event, m.Severity = rekey.EventDueSoon, notify.SeverityInfo
		m.Title = r.Name + " is due on " + r.NextDue.UTC().Format(time.DateOnly)
		m.Text = fmt.Sprintf("%s v%d (%s) falls due on %s, in %s (period %s). Rotate it before then: `%s`.",
			r.Name, r.Version, r.Fingerprint, r.NextDue.UTC().Format(time.DateOnly), rekey.FormatDuration(r.NextDue.Sub(now).Truncate(time.Hour)), r.Period, cmd)
	default:
		return m, false
	}
	return m, true
}

// stuckMessages are the reminders of what is stuck in env: interrupted
// rotations and incomplete re-encryptions.
func stuckMessages(tx rekey.Tx, env string) ([]notify.Message, error) {
	open, err := tx.Rotations(env, true)
	if err != nil {
		return nil, err
	}
	var out []notify.Message
	for _, r := range open {
		m, err := rotationMessage(tx, env, rekey.EventRotationFailed, r, slices.Sorted(maps.Keys(r.Secrets)))
		if err != nil {
			return nil, err
		}
		m.Severity, m.Title = notify.SeverityCritical, "Rotation "+r.ID+" was interrupted"
		m.Text = fmt.Sprintf("Rotation %s in %s (started %s) did not finish: the process stopped part way. `rekey recover` completes it or rolls it back.", r.ID, env, r.Started.UTC().Format(time.RFC3339))
		m.Command = "rekey recover"
		out = append(out, m)
	}
	cur, err := tx.AllLabeled(env, rekey.LabelCurrent)
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		v := cur[name]
		if v.Attrs[rekey.AttrReencrypt] != "incomplete" {
			continue
		}
		out = append(out, notify.Message{Event: rekey.EventReencryptIncomplete, Severity: notify.SeverityWarning, IdempotencyKey: name,
			Title:   "Re-encryption of " + name + " is incomplete",
			Text:    fmt.Sprintf("%s v%d (%s) is current, but rows are still encrypted under the previous key. Finish the re-encryption.", name, v.N, v.Fingerprint),
			Secrets: []notify.SecretRef{{Name: name, Version: v.N, Fingerprint: v.Fingerprint}}, Command: "rekey reencrypt"})
	}
	return out, nil
}

// outboxKeys are the idempotency keys already in the outbox.
func outboxKeys(tx rekey.Tx) (map[string]bool, error) {
	items, err := tx.Outbox(rekey.OutboxFilter{})
	seen := make(map[string]bool, len(items))
	for _, o := range items {
		seen[o.IdempotencyKey] = true
	}
	return seen, err
}
