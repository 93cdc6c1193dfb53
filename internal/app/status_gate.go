package app

import (
	"context"
	"fmt"
	"time"

	"github.com/rekeyhq/rekey"
)

// The reasons `rekey status --due-within` (the pre-deploy gate) refuses a
// deployment for.
const (
	GateDueWithin   = "due-within"
	GateOverdue     = "overdue"
	GateWeak        = "weak"
	GateDrift       = "drift"
	GateMissing     = "missing"
	GateIncomplete  = "reencrypt-incomplete"
	GateInterrupted = "interrupted"
	GateRunning     = "rotation-running"
	GateUnreadable  = "targets-unreadable"
	GateIncident    = "incident"
)

// GateReason is one reason not to deploy, with the command that clears it.
type GateReason struct {
	Reason  string `json:"reason"`
	Secret  string `json:"secret,omitempty"`
	Text    string `json:"text"`
	Command string `json:"command"`
}

// Gate is what `rekey status --due-within WINDOW` decides.
type Gate struct {
	*Status
	Window  time.Duration
	Reasons []GateReason
}

// StatusGate is the status of the session's environment and every reason
// not to deploy it now: a secret due within window or overdue, weak,
// missing, drifted or with its re-encryption incomplete, a rotation
// interrupted or running, the targets unreadable, or an open incident
// (gateIncidents).
func (s *Session) StatusGate(ctx context.Context, window time.Duration) (*Gate, error) {
	st, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	g := &Gate{Status: st, Window: window, Reasons: []GateReason{}}
	now := s.Now()
	for _, r := range st.Rows {
		sp, _ := cfg.Secret(r.Name)
		g.Reasons = append(g.Reasons, secretReasons(r, sp, now, window)...)
	}
	switch {
	case st.Running != "":
		g.Reasons = append(g.Reasons, GateReason{Reason: GateRunning, Text: "a rotation is in progress (" + st.Running + ")", Command: "wait for it to finish, then run the gate again"})
	default:
		for _, r := range st.Interrupted {
			g.Reasons = append(g.Reasons, GateReason{Reason: GateInterrupted, Text: fmt.Sprintf("rotation %s was interrupted (at %s)", r.ID, r.LastStep().Name), Command: "rekey recover"})
		}
	}
	if st.DriftErr != nil {
		g.Reasons = append(g.Reasons, GateReason{Reason: GateUnreadable, Text: "could not compare the targets with the store: " + st.DriftErr.Error(), Command: "rekey doctor"})
	}
	inc, err := s.gateIncidents(ctx)
	if err != nil {
		return nil, err
	}
	g.Reasons = append(g.Reasons, inc...)
	return g, nil
}

// gateIncidents is the hook for incidents (issue 15, item 1): one reason
// per open incident of the environment, whatever its deadlines (a
// deployment waits for the incident to be closed), with the command that
// shows what remains.
func (s *Session) gateIncidents(ctx context.Context) ([]GateReason, error) {
	_, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	var open []*rekey.Incident
	if err := st.View(ctx, func(tx rekey.Tx) error {
		open, err = tx.Incidents(env.Name, true)
		return err
	}); err != nil {
		return nil, err
	}
	var out []GateReason
	for _, i := range open {
		if !i.IsOpen() {
			continue
		}
		text := fmt.Sprintf("incident %s is open (since %s)", i.ID, i.OpenedAt.UTC().Format("2006-01-02 15:04Z"))
		if n := len(i.Overdue(s.Now())); n > 0 {
			text += fmt.Sprintf(", %d follow-ups past their deadline", n)
		}
		out = append(out, GateReason{Reason: GateIncident, Text: text, Command: "rekey incident status " + i.ID})
	}
	return out, nil
}

// secretReasons are the reasons one secret's row gives. A weak value is
// named even when its row says overdue (the state shows one of them).
func secretReasons(r rekey.SecretStatus, sp *rekey.Spec, now time.Time, window time.Duration) []GateReason {
	manual := r.Kind == rekey.KindManual
	rotate := "rekey rotate " + r.Name
	if manual {
		rotate = "rotate it at its provider, then rekey set " + r.Name
	}
	var out []GateReason
	add := func(reason, text, cmd string) {
		out = append(out, GateReason{Reason: reason, Secret: r.Name, Text: r.Name + " " + text, Command: cmd})
	}
	due := r.NextDue.UTC().Format("2006-01-02")
	switch {
	case r.State == rekey.StateMissing:
		add(GateMissing, "has no value", "rekey set "+r.Name)
		return out
	case r.State == rekey.StateIncomplete:
		add(GateIncomplete, "has a re-encryption that has not finished", "rekey reencrypt "+r.Name)
	case r.State == rekey.StateDrift:
		add(GateDrift, "differs in a target from the store (edited by hand?)", "rekey set "+r.Name+" --from-target, or rekey publish "+r.Name)
	}
	switch {
	case !r.NextDue.IsZero() && !now.Before(r.NextDue):
		add(GateOverdue, "is overdue (due "+due+")", rotate)
	case !r.NextDue.IsZero() && now.Add(window).After(r.NextDue):
		add(GateDueWithin, fmt.Sprintf("falls due %s, within %s", due, rekey.FormatDays(window)), rotate)
	}
	if sp != nil && !manual && r.Bits < rekey.MinBitsFor(sp) {
		add(GateWeak, fmt.Sprintf("is weak (%d bits, want %d)", r.Bits, rekey.MinBitsFor(sp)), rotate)
	}
	return out
}
