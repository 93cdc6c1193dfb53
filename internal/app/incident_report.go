package app

// `rekey incident report` (issue 15, item 3): the incident report the
// runbook asks for, from the incident's record, its notifications in the
// outbox and the audit entries that name it. Writing it is audited as
// "incident.report" and marks the incident's report follow-up done.

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/report"
)

// ActionReport is the audit action of a written incident report.
const ActionReport = "incident.report"

// IncidentReport loads incident id of the session's environment and what
// its report shows, with its report follow-up marked done now (when the
// incident is open and it was not done yet), and hands it to emit, which
// renders and writes it (where names the destination, for the record:
// a path or "stdout"). Only when emit succeeds is the report recorded:
// the follow-up marked done and the "incident.report" audit entry, in one
// transaction.
func (s *Session) IncidentReport(ctx context.Context, id, format, where string, emit func(report.IncidentInput) error) (*rekey.Incident, error) {
	_, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	in, err := s.incidentReportInput(ctx, st, id)
	if err != nil {
		return nil, err
	}
	inc := in.Incident
	if inc.Env != env.Name {
		return nil, rekey.Errorf(rekey.CodeNotFound, "incident %s is of environment %s, not %s", id, inc.Env, env.Name).WithHint("add --environment %s", inc.Env)
	}
	now, actor := in.Generated, s.Actor()
	note := fmt.Sprintf("rekey incident report (%s) to %s", format, where)
	i := slices.IndexFunc(inc.FollowUps, func(f rekey.FollowUp) bool { return f.Key == rekey.FollowUpReport })
	mark := inc.IsOpen() && i >= 0 && !inc.FollowUps[i].Done
	if mark {
		f := &inc.FollowUps[i]
		f.Done, f.DoneAt, f.DoneBy, f.Note = true, now, actor, note
	}
	if err := emit(in); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("incident %s: report (%s) written to %s", id, format, where)
	if !mark {
		err = st.Update(ctx, func(tx rekey.Tx) error {
			_, err := tx.Audit(rekey.AuditEntry{Actor: actor, Action: ActionReport, Env: inc.Env, Outcome: "ok", Detail: detail})
			return err
		})
		return inc, err
	}
	return s.updateIncident(ctx, id, func(cur *rekey.Incident) (rekey.AuditEntry, error) {
		if j := slices.IndexFunc(cur.FollowUps, func(f rekey.FollowUp) bool { return f.Key == rekey.FollowUpReport }); j >= 0 && !cur.FollowUps[j].Done {
			f := &cur.FollowUps[j]
			f.Done, f.DoneAt, f.DoneBy, f.Note = true, now, actor, note
			cur.Timeline = append(cur.Timeline, rekey.IncidentEvent{At: now, Action: ActionFollowUp, Outcome: rekey.OutcomeOK, Detail: "done: report (" + note + ")"})
		}
		return rekey.AuditEntry{Action: ActionReport, Outcome: "ok", Detail: detail + "; follow-up report done"}, nil
	})
}

// incidentReportInput loads incident id, its outbox items (those whose
// idempotency key or body names it), the audit entries of its environment
// that name it or one of those items' keys (their deliveries), and its
// access review, recomputed from the verified audit log (nil when the
// chain is broken: the timeline's recorded review stands, with a warning).
func (s *Session) incidentReportInput(ctx context.Context, st rekey.Store, id string) (report.IncidentInput, error) {
	in := report.IncidentInput{Generated: s.Now().UTC()}
	err := st.View(ctx, func(tx rekey.Tx) error {
		inc, err := tx.Incident(id)
		if err != nil {
			return incidentNotFound(err, id)
		}
		in.Incident = inc
		items, err := tx.Outbox(rekey.OutboxFilter{})
		if err != nil {
			return err
		}
		var keys []string
		for _, o := range items {
			if strings.Contains(o.IdempotencyKey, id) || bytes.Contains(o.Body, []byte(id)) {
				in.Outbox = append(in.Outbox, o)
				keys = append(keys, o.IdempotencyKey)
			}
		}
		entries, err := tx.AuditLog(rekey.AuditFilter{Env: inc.Env})
		if err != nil {
			return err
		}
		for _, e := range entries {
			if strings.Contains(e.Detail, id) || slices.ContainsFunc(keys, func(k string) bool { return k != "" && strings.Contains(e.Detail, k) }) {
				in.Audit = append(in.Audit, e)
			}
		}
		return nil
	})
	if err != nil {
		return in, err
	}
	rev, err := s.accessReview(ctx, st, in.Incident, in.Incident.OpenedAt.Add(-IncidentWindow))
	if err != nil {
		s.warnf("incident %s: the access review is the one recorded at open: %v", id, err)
		return in, nil
	}
	in.Access = rev
	return in, nil
}
