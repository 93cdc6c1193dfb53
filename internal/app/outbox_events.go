package app

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/notify"
)

// rotationNotifier is the engine's Notify hook (engine.Engine.Notify): it
// enqueues the message of a rotation's event in the transaction that
// records it (the rotation's end, or its data keys marked incomplete). An
// outbox row that fails its authentication does not stop the rotation from
// finishing: the notification is lost, with a warning saying so.
func (s *Session) rotationNotifier(cfg *config.Config, env string) func(tx rekey.Tx, event string, r *rekey.Rotation, names []string) error {
	if len(cfg.Notify.Channels) == 0 {
		return nil
	}
	return func(tx rekey.Tx, event string, r *rekey.Rotation, names []string) error {
		m, err := rotationMessage(tx, env, event, r, names)
		if err == nil {
			m.Time = s.Now().UTC().Truncate(time.Second)
			err = s.Enqueue(tx, cfg, event, m)
		}
		if errors.Is(err, rekey.ErrCorrupt) {
			s.warnf("the %s notification of rotation %s was not recorded: %v", event, r.ID, err)
			return nil
		}
		return err
	}
}

// rotationMessage is the message of event about rotation r: the secrets'
// names, versions and fingerprints, what happened and the next command.
func rotationMessage(tx rekey.Tx, env, event string, r *rekey.Rotation, names []string) (notify.Message, error) {
	names = slices.Sorted(slices.Values(names))
	m := notify.Message{Environment: env, IdempotencyKey: "rotation " + r.ID}
	var parts []string
	for _, n := range names {
		ref := notify.SecretRef{Name: n, Version: r.Secrets[n]}
		vs, err := tx.Versions(env, n)
		if err != nil && !errors.Is(err, rekey.ErrNotFound) {
			return m, err
		}
		for _, v := range vs {
			if v.N == ref.Version {
				ref.Fingerprint = v.Fingerprint
			}
		}
		m.Secrets = append(m.Secrets, ref)
		parts = append(parts, fmt.Sprintf("%s v%d (%s)", n, ref.Version, ref.Fingerprint))
	}
	list, why := strings.Join(parts, ", "), reason(r.Error)
	switch event {
	case rekey.EventRotationScheduled:
		m.Severity, m.Title = notify.SeverityInfo, "Scheduled rotation done: "+strings.Join(names, ", ")
		m.Text = fmt.Sprintf("rekey rotate --due rotated %s in %s (rotation %s). Nothing needs doing.", list, env, r.ID)
		m.Command = "rekey status"
	case rekey.EventRotationRolledBack:
		m.Severity, m.Title = notify.SeverityWarning, "Rotation rolled back: "+strings.Join(names, ", ")
		m.Text = fmt.Sprintf("Rotation %s of %s in %s was rolled back%s: the previous values are current again; the new versions (%s) were abandoned. Fix the cause, then rotate again.", r.ID, strings.Join(names, ", "), env, why, list)
		m.Command = "rekey rotate " + strings.Join(names, " ")
	case rekey.EventRotationFailed:
		m.Severity, m.Title = notify.SeverityCritical, "Rotation failed verification, new values kept: "+strings.Join(names, ", ")
		m.Text = fmt.Sprintf("Rotation %s in %s kept the new values %s although verification failed%s (the old values may be exposed, or the data already moved). Fix what is broken, then check.", r.ID, env, list, why)
		m.Command = "rekey verify"
	case rekey.EventReencryptIncomplete:
		m.Severity, m.Title = notify.SeverityWarning, "Re-encryption incomplete: "+strings.Join(names, ", ")
		m.Text = fmt.Sprintf("Rotation %s in %s made %s current, but rows are still encrypted under the previous key (kept sealed and published as _PREVIOUS)%s. Finish the re-encryption.", r.ID, env, list, why)
		m.Command = "rekey reencrypt"
	default:
		return m, rekey.Errorf(rekey.CodeInternal, "notify: no message for rotation event %q", event)
	}
	return m, nil
}

// reason is ": WHY" for a rotation's error (made one line and bounded), or "".
func reason(e string) string {
	if e == "" {
		return ""
	}
	e = strings.Join(strings.Fields(e), " ")
	if len(e) > 300 {
		e = strings.ToValidUTF8(e[:300], "") + "…"
	}
	return ": " + e
}
