package app

// An incident's actions as resumable steps (issue 15): `incident open` saves
// each action's events in one transaction, so an action is done exactly
// when its events are in the timeline (the follow-ups: when the list is
// saved). After a crash, `rekey recover` completes the interrupted rotation
// (the engine's journal), then runs the actions of each open incident that
// are not done, after an "interrupted" and a "recover" event. Every action
// is idempotent given the saved incident: the rotation the incident started
// is found in the store, not run again; the notification is handed to the
// outbox under a key derived from the incident ID and the channel, in the
// transaction that records the notify event.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/notify"
)

// FaultIncidentOpened is the point (REKEY_TEST_FAULT, test builds) right
// after the incident is recorded, before its first action.
const FaultIncidentOpened = "incident:open:after"

// FaultIncidentAfter is the point right after action's events are saved.
func FaultIncidentAfter(action string) string { return "incident:" + action + ":after" }

// incidentStep is one action of `incident open`.
type incidentStep struct {
	action string
	run    func(r *incidentRun, ctx context.Context, cfg *config.Config, req IncidentRequest, res *IncidentResult) error
}

// incidentSteps are the actions, in order.
var incidentSteps = []incidentStep{
	{rekey.ActionStop, func(r *incidentRun, ctx context.Context, cfg *config.Config, _ IncidentRequest, _ *IncidentResult) error {
		return r.stop(ctx, cfg)
	}},
	{rekey.ActionRotate, func(r *incidentRun, ctx context.Context, cfg *config.Config, req IncidentRequest, res *IncidentResult) error {
		return r.rotate(ctx, cfg, req, res)
	}},
	{rekey.ActionProveDead, func(r *incidentRun, ctx context.Context, cfg *config.Config, _ IncidentRequest, res *IncidentResult) error {
		return r.prove(ctx, cfg, res)
	}},
	{rekey.ActionAccessReview, func(r *incidentRun, ctx context.Context, cfg *config.Config, _ IncidentRequest, res *IncidentResult) error {
		return r.accessReview(ctx, cfg, res)
	}},
	{rekey.ActionScan, func(r *incidentRun, ctx context.Context, _ *config.Config, req IncidentRequest, _ *IncidentResult) error {
		return r.scan(ctx, req)
	}},
	{rekey.ActionNotify, func(r *incidentRun, ctx context.Context, cfg *config.Config, req IncidentRequest, _ *IncidentResult) error {
		return r.notify(ctx, cfg, req)
	}},
	{ActionFollowUp, func(r *incidentRun, ctx context.Context, cfg *config.Config, _ IncidentRequest, _ *IncidentResult) error {
		r.inc.FollowUps = incidentFollowUps(cfg, r.inc)
		return r.event(ctx, ActionFollowUp, "", rekey.OutcomeOK, fmt.Sprintf("%d follow-ups due by %s", len(r.inc.FollowUps), r.inc.OpenedAt.Add(FollowUpDeadline).UTC().Format(time.RFC3339)))
	}},
}

// IncidentFaultPoints lists, in order, the points of `incident open` a
// test can crash at (besides the rotation's own, engine.FaultPoints): after
// the incident is recorded, and after each action but the last (after stop
// only when the incident stops services).
func IncidentFaultPoints(stop bool) []string {
	out := []string{FaultIncidentOpened}
	for _, st := range incidentSteps[:len(incidentSteps)-1] {
		if st.action != rekey.ActionStop || stop {
			out = append(out, FaultIncidentAfter(st.action))
		}
	}
	return out
}

// incidentDone says which actions of inc are done: those with an event in
// its timeline, and the follow-ups once listed.
func incidentDone(inc *rekey.Incident) map[string]bool {
	done := map[string]bool{ActionFollowUp: len(inc.FollowUps) > 0, rekey.ActionStop: !inc.Stop}
	for _, ev := range inc.Timeline {
		for _, st := range incidentSteps[:len(incidentSteps)-1] {
			if ev.Action == st.action {
				done[ev.Action] = true
			}
		}
	}
	return done
}

// IncidentUnfinished reports whether inc is open with actions of `incident
// open` not done (it was interrupted): `rekey recover` finishes them.
func IncidentUnfinished(inc *rekey.Incident) bool {
	return inc.IsOpen() && len(IncidentRemaining(inc)) > 0
}

// IncidentRemaining lists the actions of `incident open` not done for inc,
// in order.
func IncidentRemaining(inc *rekey.Incident) []string {
	done := incidentDone(inc)
	var out []string
	for _, st := range incidentSteps {
		if !done[st.action] {
			out = append(out, st.action)
		}
	}
	return out
}

// actions runs the actions not done yet, in order, saving each one's
// events in one transaction, then reaching its fault point.
func (r *incidentRun) actions(ctx context.Context, cfg *config.Config, req IncidentRequest, res *IncidentResult) error {
	done := incidentDone(r.inc)
	for _, st := range incidentSteps {
		if done[st.action] {
			continue
		}
		if err := st.run(r, ctx, cfg, req, res); err != nil {
			return err
		}
		if !slices.ContainsFunc(r.batch, func(ev rekey.IncidentEvent) bool { return ev.Action == st.action }) {
			r.event(ctx, st.action, "", rekey.OutcomeSkipped, "nothing to do")
		}
		if err := r.save(ctx); err != nil {
			return err
		}
		if st.action != ActionFollowUp {
			r.fault(FaultIncidentAfter(st.action))
		}
	}
	return nil
}

// fault reaches a test build's fault point (nil in a release build).
func (r *incidentRun) fault(point string) {
	if f := r.s.Opts.Fault; f != nil {
		f(point)
	}
}

// save records the incident with the events of the action just run (and
// r.inTx's writes, the outbox's) in one transaction, then narrates them.
// When r.inTx fails, its action's last event says so and the incident is
// saved without it.
func (r *incidentRun) save(ctx context.Context) error {
	put := func(inTx func(rekey.Tx) error) error {
		return r.st.Update(ctx, func(tx rekey.Tx) error {
			if inTx != nil {
				if err := inTx(tx); err != nil {
					return err
				}
			}
			return tx.PutIncident(r.inc)
		})
	}
	err := put(r.inTx)
	if err != nil && r.inTx != nil && len(r.batch) > 0 {
		last := &r.inc.Timeline[len(r.inc.Timeline)-1]
		last.Outcome, last.Detail = rekey.OutcomeFailed, err.Error()
		r.batch[len(r.batch)-1] = *last
		err = put(nil)
	}
	r.inTx = nil
	if err != nil {
		return err
	}
	for _, ev := range r.batch {
		if r.narrate != nil {
			r.narrate(ev)
		}
	}
	r.batch = nil
	return nil
}

// refuseUnfinished refuses a second incident for secrets of an incident
// whose actions were interrupted: `rekey recover` finishes that one.
func refuseUnfinished(ctx context.Context, st rekey.Store, env string, names []string) error {
	var incs []*rekey.Incident
	if err := st.View(ctx, func(tx rekey.Tx) error {
		var err error
		incs, err = tx.Incidents(env, true)
		return err
	}); err != nil {
		return err
	}
	for _, inc := range incs {
		if !IncidentUnfinished(inc) {
			continue
		}
		for _, sec := range inc.Secrets {
			if slices.Contains(names, sec.Name) {
				return rekey.Errorf(rekey.CodeConflict, "incident %s for %s was interrupted before its actions completed (not done: %s)", inc.ID, sec.Name, strings.Join(IncidentRemaining(inc), ", ")).
					WithHint("`rekey recover` finishes it; then `rekey incident status %s`", inc.ID)
			}
		}
	}
	return nil
}

// startedRotation is the rotation of names this incident started, if it
// finished (done, or failed verification with the new values kept): the
// newest emergency rotation of all of names since the incident opened. Nil
// when there is none or the newest was rolled back (no target saw it: the
// incident rotates again).
func (r *incidentRun) startedRotation(ctx context.Context, names []string) (*engine.Result, error) {
	var out *engine.Result
	err := r.st.View(ctx, func(tx rekey.Tx) error {
		rs, err := tx.Rotations(r.inc.Env, false)
		if err != nil {
			return err
		}
		for _, ro := range rs {
			if ro.Mode != rekey.ModeEmergency || ro.Started.Before(r.inc.OpenedAt) || !slices.ContainsFunc(names, func(n string) bool { _, ok := ro.Secrets[n]; return ok }) {
				continue
			}
			if ro.State != rekey.StateDone && ro.State != rekey.StateFailed {
				return nil
			}
			out = &engine.Result{Rotation: ro, Versions: map[string]rekey.Version{}}
			if ro.State == rekey.StateFailed {
				out.VerifyErr = rekey.Errorf(rekey.CodeVerifyFailed, "emergency rotation %s: %s", ro.ID, ro.Error)
			}
			for n, v := range ro.Secrets {
				vs, err := tx.Versions(r.inc.Env, n)
				if err != nil {
					return err
				}
				if i := slices.IndexFunc(vs, func(x rekey.Version) bool { return x.N == v }); i >= 0 {
					out.Versions[n] = vs[i]
				}
			}
			return nil
		}
		return nil
	})
	return out, err
}

// IncidentNotifyKey is the idempotency key of inc's incident.opened
// notification to channel: the same whenever the notify step runs again.
func IncidentNotifyKey(inc *rekey.Incident, channel string) string {
	return IdempotencyKey(inc.Env, rekey.EventIncidentOpened, inc.ID, channel)
}

// notify is the notify step: req.Notify, else the incident.opened message
// handed to the outbox (Session.Enqueue, keyed by the incident ID and the
// channel) in the transaction that saves its event; skipped when
// rekey.yaml routes it to no channel.
func (r *incidentRun) notify(ctx context.Context, cfg *config.Config, req IncidentRequest) error {
	if req.Notify != nil {
		detail, err := req.Notify.NotifyIncident(ctx, r.st, r.inc)
		return r.outcome(ctx, rekey.ActionNotify, detail, err)
	}
	chans := cfg.Notify.ChannelsFor(rekey.EventIncidentOpened)
	if len(chans) == 0 {
		return r.event(ctx, rekey.ActionNotify, "", rekey.OutcomeSkipped, "no notify: channel in "+config.FileName)
	}
	m := incidentMessage(r.inc)
	r.inTx = func(tx rekey.Tx) error { return r.s.Enqueue(tx, cfg, rekey.EventIncidentOpened, m) }
	var to []string
	for _, ch := range chans {
		to = append(to, ch+" (key "+IncidentNotifyKey(r.inc, ch)+")")
	}
	return r.event(ctx, rekey.ActionNotify, "", rekey.OutcomeOK, "incident.opened handed to the outbox for "+strings.Join(to, ", "))
}

// incidentMessage is inc's incident.opened message: names, versions and
// fingerprints, the reason (refused if it held a value), the next command.
func incidentMessage(inc *rekey.Incident) notify.Message {
	var refs []notify.SecretRef
	var what []string
	for _, s := range inc.Secrets {
		refs = append(refs, notify.SecretRef{Name: s.Name, Version: s.ExposedVersion, Fingerprint: s.ExposedFingerprint})
		w := fmt.Sprintf("%s v%d %s", s.Name, s.ExposedVersion, s.ExposedFingerprint)
		if s.Replacement > 0 {
			w += fmt.Sprintf(" → v%d %s", s.Replacement, s.ReplacementFingerprint)
		}
		what = append(what, w)
	}
	return notify.Message{Severity: notify.SeverityCritical, Environment: inc.Env, IncidentID: inc.ID, Time: inc.OpenedAt.Truncate(time.Second),
		Title:   fmt.Sprintf("Incident %s opened in %s", inc.ID, inc.Env),
		Text:    fmt.Sprintf("Exposed: %s. Reason: %s. Opened by %s.", strings.Join(what, "; "), inc.Reason, inc.OpenedBy),
		Secrets: refs, Command: "rekey incident status " + inc.ID}
}

// resumeIncidents finishes the actions of every open incident of env that
// an interruption left unfinished, oldest first, and returns their IDs.
// The caller holds the lock and has completed the interrupted rotation.
func (s *Session) resumeIncidents(ctx context.Context, cfg *config.Config, st rekey.Store, env string, narrate func(format string, args ...any)) ([]string, error) {
	var incs []*rekey.Incident
	if err := st.View(ctx, func(tx rekey.Tx) error {
		var err error
		incs, err = tx.Incidents(env, true)
		return err
	}); err != nil {
		return nil, err
	}
	var ids []string
	for _, inc := range slices.Backward(incs) {
		if !IncidentUnfinished(inc) {
			continue
		}
		if err := s.resumeIncident(ctx, cfg, st, inc, narrate); err != nil {
			return ids, rekey.Wrap(rekey.ErrorCode(err), err, "incident %s: finishing its actions", inc.ID)
		}
		ids = append(ids, inc.ID)
	}
	return ids, nil
}

// resumeIncident records the interruption (as far as known: after the last
// saved event) and the recovery, audited, then runs inc's remaining actions.
func (s *Session) resumeIncident(ctx context.Context, cfg *config.Config, st rekey.Store, inc *rekey.Incident, narrate func(format string, args ...any)) error {
	say := func(ev rekey.IncidentEvent) {
		if narrate != nil {
			narrate("incident %s: %s %s %s: %s", inc.ID, ev.Action, ev.Secret, ev.Outcome, ev.Detail)
		}
	}
	run := &incidentRun{s: s, st: st, inc: inc, narrate: say}
	remaining := strings.Join(IncidentRemaining(inc), ", ")
	last, after := inc.OpenedAt, "the incident was recorded"
	if n := len(inc.Timeline); n > 0 {
		ev := inc.Timeline[n-1]
		last, after = ev.At, strings.TrimSpace(ev.Action+" "+ev.Secret)+" was saved"
	}
	interrupted := rekey.IncidentEvent{At: last.UTC(), Action: rekey.ActionInterrupted, Outcome: rekey.OutcomeInterrupted,
		Detail: fmt.Sprintf("rekey stopped after %s at %s; not done: %s", after, last.UTC().Format(time.RFC3339), remaining)}
	inc.Timeline = append(inc.Timeline, interrupted)
	run.batch = append(run.batch, interrupted)
	run.event(ctx, rekey.ActionRecover, "", rekey.OutcomeOK, "rekey recover runs the remaining actions: "+remaining)
	run.inTx = func(tx rekey.Tx) error {
		_, err := tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "incident.recover", Env: inc.Env, Outcome: "ok",
			Detail: fmt.Sprintf("incident %s: interrupted after %s; resumed: %s", inc.ID, after, remaining)})
		return err
	}
	if err := run.save(ctx); err != nil {
		return err
	}
	var names []string
	for _, sec := range inc.Secrets {
		names = append(names, sec.Name)
	}
	req := IncidentRequest{Names: names, Reason: inc.Reason, Progress: narrate}
	return run.actions(ctx, cfg, req, &IncidentResult{Incident: inc})
}
