package app

// This file is `rekey incident open` (issue 15, item 1): the runbook's
// emergency as one command. It records an incident, then runs its actions
// in order, saving the incident after each one with a timeline event:
// rotate the exposed secrets in emergency mode, prove the old values dead,
// review who read them, scan for them, notify; then lists the follow-ups of
// the next 24 hours. No value is ever recorded: versions by number and
// fingerprint.

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
)

// The timeline actions this file adds to rekey's (the rotation's verify
// step, a follow-up's change, the incident closed).
const (
	ActionVerify   = "verify"
	ActionFollowUp = "follow-up"
	ActionClose    = "close"
	// IncidentWindow is how far back the access review looks.
	IncidentWindow = 90 * 24 * time.Hour
	// FollowUpDeadline is the runbook's "within 24 hours".
	FollowUpDeadline = 24 * time.Hour
)

// IncidentNotifier is the notify step's hook: it hands the incident's
// notifications to the outbox (rekey.Tx.Enqueue, one item per channel, with
// an idempotency key derived from the incident ID, so a re-run never
// notifies twice) and returns a one-line detail (channels, no value).
type IncidentNotifier interface {
	NotifyIncident(ctx context.Context, st rekey.Store, inc *rekey.Incident) (detail string, err error)
}

// IncidentScanner is the repository scan's hook: it looks for the exposed
// versions in the project folder and its git history and returns a
// one-line detail (where they were found, never a value). Nil: the
// session's own scan (ScanExposed).
type IncidentScanner interface {
	ScanIncident(ctx context.Context, inc *rekey.Incident) (detail string, err error)
}

// IncidentRequest is what `rekey incident open` asks for.
type IncidentRequest struct {
	Names  []string
	Reason string
	// Stop stops the consumers of the exposed secrets before the rotation
	// (also when rekey.yaml says incident: {stop: true}); the rotation's
	// restart step starts them again on the new values.
	Stop bool
	// Notify replaces the notify step; nil: the incident.opened message is
	// handed to the outbox (incidentRun.notify), or recorded as skipped when
	// rekey.yaml routes it to no channel.
	Notify IncidentNotifier
	// Scan replaces the session's scan of the project (ScanExposed).
	Scan IncidentScanner
	// Narrate hears each timeline event as it is recorded (may be nil).
	Narrate func(rekey.IncidentEvent)
	// Progress hears the rotation's steps (may be nil).
	Progress func(format string, args ...any)
}

// IncidentResult is what opening an incident did.
type IncidentResult struct {
	Incident *rekey.Incident
	Proofs   []Proof
	Access   *AccessReview
	// RotationID is the emergency rotation's (empty if none was created).
	RotationID string
	// RotateErr is why the rotation failed or verified badly (nil: ok).
	RotateErr error
	// UserManaged are exposed keys rekey cannot rotate (rotate them at the provider).
	UserManaged []string
	// Deferred are the exposed data keys whose rows move after the
	// immediate actions (FinishReencryption; follow-up reencrypt:NAME).
	Deferred []string
}

// OK says whether the exposed values were replaced and every proof found
// them dead (or left them to a person: manual).
func (r *IncidentResult) OK() bool {
	return r.RotateErr == nil && len(r.Proofs) > 0 && Dead(r.Proofs)
}

// incidentRun is an incident while its actions run.
type incidentRun struct {
	s       *Session
	st      rekey.Store
	inc     *rekey.Incident
	narrate func(rekey.IncidentEvent)
	// batch is the events of the action being run, not saved yet; inTx,
	// when set, runs in the transaction that saves them (the outbox).
	batch []rekey.IncidentEvent
	inTx  func(tx rekey.Tx) error
}

// event appends one timeline event to the action being run; save records
// them (incident_resume.go).
func (r *incidentRun) event(_ context.Context, action, secret, outcome, detail string) error {
	ev := rekey.IncidentEvent{At: r.s.Now().UTC(), Action: action, Secret: secret, Outcome: outcome, Detail: detail}
	r.inc.Timeline = append(r.inc.Timeline, ev)
	r.batch = append(r.batch, ev)
	return nil
}

// OpenIncident records an incident for the exposed secrets of the session's
// environment and runs its immediate actions (see the file's comment). A
// failed action is recorded and the next ones still run; the error returned
// is only one that stops recording (the store). res.OK says whether the
// exposed values are proved replaced and dead.
func (s *Session) OpenIncident(ctx context.Context, req IncidentRequest) (*IncidentResult, error) {
	if len(req.Names) == 0 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--secret: name at least one exposed secret").WithHint("rekey incident open --secret JWT_SECRET --reason \"pushed to a public repository\"")
	}
	if strings.TrimSpace(req.Reason) == "" {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--reason: say what happened (it is recorded in the incident and the audit log)").WithHint("--reason \"JWT_SECRET pasted in a public issue\"")
	}
	cfg, st, env, _, err := s.Mutate(ctx)
	if err != nil {
		return nil, err
	}
	if err := refuseValueIn(ctx, st, "--reason", req.Reason); err != nil {
		return nil, err
	}
	if err := refuseUnfinished(ctx, st, env.Name, req.Names); err != nil {
		return nil, err
	}
	inc, err := s.newIncident(ctx, cfg, st, env.Name, req)
	if err != nil {
		return nil, err
	}
	run := &incidentRun{s: s, st: st, inc: inc, narrate: req.Narrate}
	run.fault(FaultIncidentOpened)
	res := &IncidentResult{Incident: inc}
	return res, run.actions(ctx, cfg, req, res)
}

// newIncident records the incident (its exposed secrets: their current
// versions and fingerprints) with its "incident.open" audit entry, in one
// transaction.
func (s *Session) newIncident(ctx context.Context, cfg *config.Config, st rekey.Store, env string, req IncidentRequest) (*rekey.Incident, error) {
	now := s.Now().UTC()
	id, err := rekey.NewIncidentID(now, rand.Reader)
	if err != nil {
		return nil, err
	}
	inc := &rekey.Incident{ID: id, Env: env, OpenedAt: now, OpenedBy: s.Actor(), Reason: strings.TrimSpace(req.Reason), State: rekey.IncidentOpen,
		Stop: req.Stop || cfg.Incident.Stop, Timeline: []rekey.IncidentEvent{}, FollowUps: []rekey.FollowUp{}}
	var names []string
	for _, n := range req.Names {
		if slices.Contains(names, n) {
			continue
		}
		if _, ok := cfg.Secret(n); !ok {
			return nil, rekey.Errorf(rekey.CodeNotFound, "--secret %s: no such secret in %s", n, config.FileName).WithHint("`rekey status` lists the secrets of the environment")
		}
		names = append(names, n)
	}
	err = st.Update(ctx, func(tx rekey.Tx) error {
		for _, n := range names {
			v, err := tx.Labeled(env, n, rekey.LabelCurrent)
			if err != nil {
				return rekey.Wrap(rekey.ErrorCode(err), err, "--secret %s: its current version", n).WithHint("`rekey history %s` lists its versions", n)
			}
			inc.Secrets = append(inc.Secrets, rekey.IncidentSecret{Name: n, ExposedVersion: v.N, ExposedFingerprint: v.Fingerprint})
		}
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
		_, err := tx.Audit(rekey.AuditEntry{Actor: inc.OpenedBy, Action: "incident.open", Env: env, Outcome: "ok",
			Detail: fmt.Sprintf("incident %s: secrets %s; reason: %s", id, strings.Join(names, ","), inc.Reason)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return inc, nil
}

// stop stops the services that consume the exposed secrets (those rekey
// rotates and the user-managed ones alike), in reverse restart order; the
// rotation's restart step starts them on the new values. Skipped when none
// is declared.
func (r *incidentRun) stop(ctx context.Context, cfg *config.Config) error {
	env, err := r.s.Environment(cfg)
	if err != nil {
		return err
	}
	var names []string
	for _, sec := range r.inc.Secrets {
		names = append(names, sec.Name)
	}
	svcs := r.s.Engine(cfg, r.st, env).Services
	if svcs == nil {
		return r.event(ctx, rekey.ActionStop, "", rekey.OutcomeSkipped, "no services: in "+config.FileName+" for environment "+env.Name)
	}
	if err := svcs.Stop(ctx, names); err != nil {
		return r.event(ctx, rekey.ActionStop, "", rekey.OutcomeFailed, err.Error()+"; the rotation goes on")
	}
	return r.event(ctx, rekey.ActionStop, "", rekey.OutcomeOK, "stopped the consumers of "+strings.Join(names, ", ")+": the rotation's restart starts them on the new values")
}

// rotate rotates the exposed secrets rekey can rotate as one emergency
// rotation, records their replacements, and the rotation's restart,
// sessions (hooks) and verify steps as events.
func (r *incidentRun) rotate(ctx context.Context, cfg *config.Config, req IncidentRequest, res *IncidentResult) error {
	var names []string
	for _, sec := range r.inc.Secrets {
		names = append(names, sec.Name)
	}
	rest, manual := splitUserManaged(cfg, names, false)
	res.UserManaged = manual
	for _, n := range manual {
		if err := r.event(ctx, rekey.ActionRotate, n, rekey.OutcomeSkipped, "user-managed: revoke and reissue it at its provider, then record it with `rekey set "+n+"`"); err != nil {
			return err
		}
	}
	if len(rest) == 0 {
		return nil
	}
	// Resumed after a crash: the rotation this incident started, if one
	// finished (rekey recover completed it first), is recorded, not redone.
	if prev, err := r.startedRotation(ctx, rest); err != nil || prev != nil {
		if err != nil {
			return err
		}
		res.RotationID, res.RotateErr = prev.Rotation.ID, prev.VerifyErr
		return r.recordRotation(ctx, prev, prev.VerifyErr)
	}
	p, err := r.s.PlanRotation(ctx, RotateRequest{Names: rest, Emergency: true, DeferReencrypt: true})
	if err != nil {
		res.RotateErr = err
		return r.event(ctx, rekey.ActionRotate, "", rekey.OutcomeFailed, "planning the emergency rotation: "+err.Error())
	}
	for _, ps := range p.Plan.Secrets {
		for _, w := range ps.Warnings {
			r.s.warnf("%s", w)
		}
	}
	out, err := p.Run(ctx, req.Progress)
	res.RotateErr = err
	if out == nil || out.Rotation == nil {
		return r.event(ctx, rekey.ActionRotate, "", rekey.OutcomeFailed, fmt.Sprintf("emergency rotation of %s: %v", strings.Join(rest, ","), err))
	}
	res.RotationID, res.Deferred = out.Rotation.ID, out.Deferred
	return r.recordRotation(ctx, out, err)
}

// recordRotation records a rotation's result: one event per secret
// rotated, then its steps that the runbook names (restart, sessions,
// verify).
func (r *incidentRun) recordRotation(ctx context.Context, out *engine.Result, runErr error) error {
	for i := range r.inc.Secrets {
		sec := &r.inc.Secrets[i]
		v, ok := out.Versions[sec.Name]
		if !ok {
			continue
		}
		sec.Replacement, sec.ReplacementFingerprint = v.N, v.Fingerprint
		outcome, detail := rekey.OutcomeOK, fmt.Sprintf("emergency rotation %s: v%d %s → v%d %s (no grace; v%d marked exposed)", out.Rotation.ID, sec.ExposedVersion, sec.ExposedFingerprint, v.N, v.Fingerprint, sec.ExposedVersion)
		if slices.Contains(out.Deferred, sec.Name) {
			detail += fmt.Sprintf("; its rows move to v%d after the immediate actions, online (follow-up %s%s)", v.N, rekey.FollowUpReencrypt, sec.Name)
		}
		if runErr != nil {
			outcome, detail = rekey.OutcomeFailed, detail+"; "+runErr.Error()
		}
		if err := r.event(ctx, rekey.ActionRotate, sec.Name, outcome, detail); err != nil {
			return err
		}
	}
	for _, step := range out.Rotation.Steps {
		action := ""
		switch step.Name {
		case "restart":
			action = rekey.ActionRestart
		case "hooks":
			action = rekey.ActionSessions
		case "verify":
			action = ActionVerify
		default:
			continue
		}
		outcome := rekey.OutcomeOK
		switch step.Outcome {
		case "skipped":
			outcome = rekey.OutcomeSkipped
		case "error":
			outcome = rekey.OutcomeFailed
		}
		detail := "rotation " + out.Rotation.ID
		if step.Detail != "" {
			detail += ": " + step.Detail
		}
		if err := r.event(ctx, action, "", outcome, detail); err != nil {
			return err
		}
	}
	if len(out.Versions) == 0 && runErr != nil {
		return r.event(ctx, rekey.ActionRotate, "", rekey.OutcomeFailed, fmt.Sprintf("emergency rotation %s: %v", out.Rotation.ID, runErr))
	}
	return nil
}

// prove tests each exposed version against every consumer rekey can reach
// (ProveDead); one event per proof.
func (r *incidentRun) prove(ctx context.Context, cfg *config.Config, res *IncidentResult) error {
	for _, sec := range r.inc.Secrets {
		var ps []Proof
		sp, _ := cfg.Secret(sec.Name)
		switch {
		case sp != nil && sp.Kind == rekey.KindManual:
			p := Proof{Secret: sec.Name, Version: sec.ExposedVersion, Method: "none", Verdict: ProofManual,
				Detail: "user-managed: rotate it at the provider, then test the old key there", Hint: "rekey set " + sec.Name}
			for _, c := range cfg.ChecksFor(r.inc.Env) {
				if c.Command != nil && presents(c, sec.Name) {
					p.Detail = fmt.Sprintf("user-managed: revoke and reissue it at the provider and `rekey set %s`; then `rekey verify --dead %s --version %d` tests v%d there with check %s", sec.Name, sec.Name, sec.ExposedVersion, sec.ExposedVersion, c.Name)
					break
				}
			}
			ps = []Proof{p}
		case sec.Replacement == 0:
			ps = []Proof{{Secret: sec.Name, Version: sec.ExposedVersion, Method: "none", Verdict: ProofInconclusive,
				Detail: fmt.Sprintf("v%d was not replaced: the rotation failed", sec.ExposedVersion), Hint: "rekey rotate " + sec.Name + " --emergency"}}
		default:
			var err error
			if ps, err = r.s.ProveDead(ctx, []string{sec.Name}, sec.ExposedVersion); err != nil {
				ps = append(ps, Proof{Secret: sec.Name, Version: sec.ExposedVersion, Current: sec.Replacement, Method: "none", Verdict: ProofInconclusive, Detail: err.Error(), Hint: "rekey verify --dead " + sec.Name})
			}
		}
		for _, p := range ps {
			res.Proofs = append(res.Proofs, p)
			outcome := rekey.OutcomeOK
			switch p.Verdict {
			case ProofManual:
				outcome = rekey.OutcomeSkipped
			case ProofAlive, ProofInconclusive:
				outcome = rekey.OutcomeFailed
			}
			if err := r.event(ctx, rekey.ActionProveDead, p.Secret, outcome, fmt.Sprintf("%s (v%d, %s): %s", p.Verdict, p.Version, p.Method, p.Detail)); err != nil {
				return err
			}
		}
	}
	return nil
}

// scan looks for the exposed versions in the project (req.Scan, else the
// session's ScanExposed).
func (r *incidentRun) scan(ctx context.Context, req IncidentRequest) error {
	var detail string
	var err error
	if req.Scan != nil {
		detail, err = req.Scan.ScanIncident(ctx, r.inc)
	} else {
		detail, err = r.s.ScanExposed(ctx, r.inc)
	}
	return r.outcome(ctx, rekey.ActionScan, detail, err)
}

// outcome records a step's result: ok with its detail, or failed with the
// error.
func (r *incidentRun) outcome(ctx context.Context, action, detail string, err error) error {
	if err != nil {
		return r.event(ctx, action, "", rekey.OutcomeFailed, err.Error())
	}
	return r.event(ctx, action, "", rekey.OutcomeOK, detail)
}

// incidentFollowUps is the runbook's 24-hour list for inc.
func incidentFollowUps(cfg *config.Config, inc *rekey.Incident) []rekey.FollowUp {
	due := inc.OpenedAt.Add(FollowUpDeadline)
	out := []rekey.FollowUp{
		{Key: rekey.FollowUpRotateAll, Title: "rotate every other secret of the environment", Due: due},
		{Key: rekey.FollowUpScanHistory, Title: "scan the git history: clean, or each finding acknowledged", Due: due},
		{Key: rekey.FollowUpDoctor, Title: "rekey doctor clean", Due: due},
	}
	for _, sp := range cfg.Secrets {
		if sp.Kind == rekey.KindManual {
			out = append(out, rekey.FollowUp{Key: rekey.FollowUpProvider + sp.Name, Title: "rotate " + sp.Name + " at its provider and record it with `rekey set " + sp.Name + "`", Due: due})
		}
	}
	for _, sp := range cfg.Secrets {
		if sp.Kind == rekey.KindDataKey && sp.Reencrypt != nil {
			out = append(out, rekey.FollowUp{Key: rekey.FollowUpReencrypt + sp.Name, Title: "re-encryption of " + sp.Name + " complete", Due: due})
		}
	}
	return append(out, rekey.FollowUp{Key: rekey.FollowUpReport, Title: "write the incident report", Due: due})
}
