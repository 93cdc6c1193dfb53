package app

// An incident after it is opened (issue 15, item 2): its status, its
// follow-ups marked done (audited), the rotation of every other secret, and
// closing it (refused while items remain, unless forced with a reason).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
)

// Incidents returns the incident id, or with id "" every open incident of
// the session's environment (newest first).
func (s *Session) Incidents(ctx context.Context, id string) ([]*rekey.Incident, error) {
	_, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	var out []*rekey.Incident
	err = st.View(ctx, func(tx rekey.Tx) error {
		if id == "" {
			out, err = tx.Incidents(env.Name, true)
			return err
		}
		i, err := tx.Incident(id)
		if err != nil {
			return incidentNotFound(err, id)
		}
		out = []*rekey.Incident{i}
		return nil
	})
	return out, err
}

func incidentNotFound(err error, id string) error {
	if errors.Is(err, rekey.ErrNotFound) {
		return rekey.Errorf(rekey.CodeNotFound, "no incident %s", id).WithHint("`rekey incident status` lists the open incidents")
	}
	return err
}

// FollowUpCommand is what to run for a follow-up item of incident id.
func FollowUpCommand(id, key string) string {
	done := "rekey incident follow-up " + id + " --done " + key
	switch {
	case key == rekey.FollowUpRotateAll:
		return "rekey incident follow-up " + id + " --rotate-all"
	case key == rekey.FollowUpScanHistory:
		return "rekey scan --history, then " + done
	case key == rekey.FollowUpDoctor:
		return "rekey doctor, then " + done
	case strings.HasPrefix(key, rekey.FollowUpProvider):
		name := strings.TrimPrefix(key, rekey.FollowUpProvider)
		return "revoke and reissue it at the provider, rekey set " + name + ", then rekey verify --dead " + name + " (a command check with stdin: " + name + " proves it and marks this done) or " + done
	case strings.HasPrefix(key, rekey.FollowUpReencrypt):
		return "rekey reencrypt " + strings.TrimPrefix(key, rekey.FollowUpReencrypt) + " --verify, then " + done
	}
	return "rekey incident report " + id + " -o incident-report.md (marks it done)"
}

// updateIncident loads incident id under the environment's lock, lets fn
// change it, and saves it with the audit entry fn returns in one
// transaction. A closed incident is refused.
func (s *Session) updateIncident(ctx context.Context, id string, fn func(*rekey.Incident) (rekey.AuditEntry, error)) (*rekey.Incident, error) {
	_, st, env, _, err := s.Mutate(ctx)
	if err != nil {
		return nil, err
	}
	var inc *rekey.Incident
	err = st.Update(ctx, func(tx rekey.Tx) error {
		if inc, err = tx.Incident(id); err != nil {
			return incidentNotFound(err, id)
		}
		if inc.Env != env.Name {
			return rekey.Errorf(rekey.CodeNotFound, "incident %s is of environment %s, not %s", id, inc.Env, env.Name).WithHint("add --environment %s", inc.Env)
		}
		if !inc.IsOpen() {
			return rekey.Errorf(rekey.CodeConflict, "incident %s is closed (%s)", id, inc.ClosedAt.UTC().Format("2006-01-02 15:04Z")).WithHint("rekey incident status %s", id)
		}
		a, err := fn(inc)
		if err != nil {
			return err
		}
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
		a.Actor, a.Env = s.Actor(), inc.Env
		_, err = tx.Audit(a)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inc, nil
}

// FollowUpDone marks the follow-up key of incident id done, with a note
// (never a value), audited as "incident.follow-up".
func (s *Session) FollowUpDone(ctx context.Context, id, key, note string) (*rekey.Incident, error) {
	_, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	if err := refuseValueIn(ctx, st, "--note", note); err != nil {
		return nil, err
	}
	return s.updateIncident(ctx, id, func(inc *rekey.Incident) (rekey.AuditEntry, error) {
		i := slices.IndexFunc(inc.FollowUps, func(f rekey.FollowUp) bool { return f.Key == key })
		if i < 0 {
			var keys []string
			for _, f := range inc.FollowUps {
				keys = append(keys, f.Key)
			}
			return rekey.AuditEntry{}, rekey.Errorf(rekey.CodeNotFound, "--done %s: incident %s has no such follow-up", key, id).WithHint("its follow-ups: %s", strings.Join(keys, ", "))
		}
		f := &inc.FollowUps[i]
		if f.Done {
			return rekey.AuditEntry{}, rekey.Errorf(rekey.CodeConflict, "--done %s: already done (%s by %s)", key, f.DoneAt.UTC().Format("2006-01-02 15:04Z"), f.DoneBy).WithHint("rekey incident status %s", id)
		}
		return s.markFollowUp(inc, f, note), nil
	})
}

// markFollowUp marks f, a follow-up of inc, done by the session's actor
// now, with a timeline event, and returns its audit entry.
func (s *Session) markFollowUp(inc *rekey.Incident, f *rekey.FollowUp, note string) rekey.AuditEntry {
	now := s.Now().UTC()
	f.Done, f.DoneAt, f.DoneBy, f.Note = true, now, s.Actor(), strings.TrimSpace(note)
	detail := "done: " + f.Key
	if f.Note != "" {
		detail += " (" + f.Note + ")"
	}
	inc.Timeline = append(inc.Timeline, rekey.IncidentEvent{At: now, Action: ActionFollowUp, Outcome: rekey.OutcomeOK, Detail: detail})
	return rekey.AuditEntry{Actor: s.Actor(), Env: inc.Env, Action: "incident.follow-up", Outcome: "ok", Detail: fmt.Sprintf("incident %s: %s", inc.ID, detail)}
}

// completeFollowUp marks the follow-up key done, with note, in every open
// incident of env that lists it not done (audited, one transaction), and
// returns their IDs: the command that did the work records it (`rekey
// reencrypt` completing a data key's re-encryption).
func (s *Session) completeFollowUp(ctx context.Context, st rekey.Store, env, key, note string) ([]string, error) {
	var ids []string
	err := st.Update(ctx, func(tx rekey.Tx) error {
		incs, err := tx.Incidents(env, true)
		if err != nil {
			return err
		}
		for _, inc := range incs {
			i := slices.IndexFunc(inc.FollowUps, func(f rekey.FollowUp) bool { return f.Key == key && !f.Done })
			if !inc.IsOpen() || i < 0 {
				continue
			}
			a := s.markFollowUp(inc, &inc.FollowUps[i], note)
			if err := tx.PutIncident(inc); err != nil {
				return err
			}
			if _, err := tx.Audit(a); err != nil {
				return err
			}
			ids = append(ids, inc.ID)
		}
		return nil
	})
	return ids, err
}

// IncidentRotateAll plans the rotation of every secret of incident id's
// environment that rekey can rotate, except its exposed ones (rotated at
// open): a normal (manual) rotation. Nil when there is none.
func (s *Session) IncidentRotateAll(ctx context.Context, id string) (*PlannedRotation, error) {
	incs, err := s.Incidents(ctx, id)
	if err != nil {
		return nil, err
	}
	inc := incs[0]
	if !inc.IsOpen() {
		return nil, rekey.Errorf(rekey.CodeConflict, "incident %s is closed", id).WithHint("rekey incident status %s", id)
	}
	_, _, env, e, err := s.Mutate(ctx)
	if err != nil {
		return nil, err
	}
	if inc.Env != env.Name {
		return nil, rekey.Errorf(rekey.CodeNotFound, "incident %s is of environment %s, not %s", id, inc.Env, env.Name).WithHint("add --environment %s", inc.Env)
	}
	all, err := s.rotatable(ctx, e, rekey.ModeManual, false)
	if err != nil {
		return nil, err
	}
	var rest []string
	for _, n := range all {
		if !slices.ContainsFunc(inc.Secrets, func(x rekey.IncidentSecret) bool { return x.Name == n }) {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	return s.PlanRotation(ctx, RotateRequest{Names: rest})
}

// CloseIncident closes incident id. While follow-ups remain it refuses
// (CodeConflict, naming each with its command) unless force, which needs a
// reason and is recorded (Forced, CloseReason). Audited "incident.close".
func (s *Session) CloseIncident(ctx context.Context, id string, force bool, reason string) (*rekey.Incident, error) {
	reason = strings.TrimSpace(reason)
	if force && reason == "" {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--force needs --reason: say why the incident closes with items remaining").WithHint("rekey incident close %s --force --reason \"...\"", id)
	}
	_, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	if err := refuseValueIn(ctx, st, "--reason", reason); err != nil {
		return nil, err
	}
	return s.updateIncident(ctx, id, func(inc *rekey.Incident) (rekey.AuditEntry, error) {
		rem := inc.Remaining()
		if len(rem) > 0 && !force {
			var items []string
			for _, f := range rem {
				items = append(items, fmt.Sprintf("%s (%s)", f.Key, FollowUpCommand(id, f.Key)))
			}
			return rekey.AuditEntry{}, rekey.Errorf(rekey.CodeConflict, "incident %s has %d follow-ups remaining: %s", id, len(rem), strings.Join(items, "; ")).
				WithHint("finish them, or close it anyway: rekey incident close %s --force --reason \"...\"", id)
		}
		now := s.Now().UTC()
		inc.State, inc.ClosedAt, inc.ClosedBy, inc.CloseReason, inc.Forced = rekey.IncidentClosed, now, s.Actor(), reason, len(rem) > 0
		detail := "closed"
		if inc.Forced {
			var keys []string
			for _, f := range rem {
				keys = append(keys, f.Key)
			}
			detail = fmt.Sprintf("closed by force with %s remaining: %s", strings.Join(keys, ","), reason)
		} else if reason != "" {
			detail += ": " + reason
		}
		inc.Timeline = append(inc.Timeline, rekey.IncidentEvent{At: now, Action: ActionClose, Outcome: rekey.OutcomeOK, Detail: detail})
		return rekey.AuditEntry{Action: "incident.close", Outcome: "ok", Detail: fmt.Sprintf("incident %s: %s", id, detail)}, nil
	})
}
