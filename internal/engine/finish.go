package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// finish ends the rotation in state (why it ended so) through the finish
// step of the table.
func (e *Engine) finish(ctx context.Context, x *run, state rekey.RotationState, why string) error {
	x.state, x.why = state, why
	for i := range steps {
		if steps[i].name == rekey.StepFinish {
			return e.step(ctx, x, &steps[i])
		}
	}
	return rekey.Errorf(rekey.CodeInternal, "no finish step")
}

// commitFinish moves the labels (pending → current → previous) in one
// transaction, which also ends the journal: the finish step.
func (e *Engine) commitFinish(ctx context.Context, x *run) error {
	r, state := x.r, x.state
	if state == "" {
		state = rekey.StateDone
	}
	var deferred []string
	err := e.Store.Update(ctx, func(tx rekey.Tx) error {
		var err error
		for _, name := range x.names {
			if err := e.finishSecret(tx, x, name, state); err != nil {
				return err
			}
		}
		if deferred, err = e.markIncompleteTx(tx, r, x.deferred); err != nil {
			return err
		}
		endStep(&r.Steps[len(r.Steps)-1], e.now(), nil)
		r.State, r.Ended, r.Error = state, e.now(), truncate(x.why, 500)
		if err := tx.PutRotation(r); err != nil {
			return err
		}
		if err := e.notify(tx, endEvent(r), r, x.names); err != nil {
			return err
		}
		_, err = tx.PruneRotations(e.Env, KeepRotations)
		return err
	})
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "finish rotation")
	}
	if x.res != nil {
		x.res.Deferred = deferred
	}
	return nil
}

// finishSecret makes the rotation's version of name current, the one it
// replaces previous (with its grace), prunes, and audits.
func (e *Engine) finishSecret(tx rekey.Tx, x *run, name string, state rekey.RotationState) error {
	n := x.r.Secrets[name]
	sp, known := e.Spec(name)
	cur, err := tx.Labeled(e.Env, name, rekey.LabelCurrent)
	if err != nil && !errors.Is(err, rekey.ErrNotFound) {
		return err
	}
	if err == nil && cur.N != n {
		if err := tx.SetLabel(e.Env, name, cur.N, rekey.LabelPrevious); err != nil {
			return err
		}
		if known && sp.Grace() > 0 {
			until := e.now().Add(sp.Grace())
			if x.r.Mode == rekey.ModeEmergency {
				until = e.now() // the old value may be exposed: no grace
			}
			if err := tx.SetAttrs(e.Env, name, cur.N, rekey.WithAttr(cur.Attrs, rekey.AttrGraceUntil, until.UTC().Format(time.RFC3339))); err != nil {
				return err
			}
		}
	}
	if err := tx.SetLabel(e.Env, name, n, rekey.LabelCurrent); err != nil {
		return err
	}
	if err := clearPending(tx, e.Env, name, n); err != nil {
		return err
	}
	// A data key's old versions are never pruned here: rows written under
	// one may still exist (an app instance that wrote with an old key, a
	// restored backup); `rekey reencrypt --verify` counts them.
	if e.KeepVersions > 0 && !(known && sp.Kind == rekey.KindDataKey) {
		if _, err := tx.Prune(e.Env, name, e.KeepVersions); err != nil {
			return err
		}
	}
	v, err := tx.Labeled(e.Env, name, rekey.LabelCurrent)
	if err != nil {
		return err
	}
	outcome := "ok"
	if state == rekey.StateFailed {
		outcome = "kept-unverified"
	}
	// One record for publish and finish: they commit together.
	detail := "rotation " + x.r.ID + "; published to " + strings.Join(e.targetNamesFor(name), ", ")
	_, err = tx.Audit(e.audit("rotate.finish", name, n, v.Fingerprint, outcome, detail))
	return err
}

// endEvent is the event a finished rotation tells of: its failure, or a
// scheduled rotation done ("" for a manual or emergency rotation done).
func endEvent(r *rekey.Rotation) string {
	switch {
	case r.State == rekey.StateFailed:
		return rekey.EventRotationFailed
	case r.Mode == rekey.ModeScheduled:
		return rekey.EventRotationScheduled
	}
	return ""
}

// clearPending removes the pending label from version n of name, if it holds it.
func clearPending(tx rekey.Tx, env, name string, n int) error {
	if p, err := tx.Labeled(env, name, rekey.LabelPending); err == nil && p.N == n {
		return tx.SetLabel(env, name, 0, rekey.LabelPending)
	}
	return nil
}

// sayCurrent narrates the end of a finish.
func (e *Engine) sayCurrent(x *run) {
	for _, name := range x.names {
		e.say("%s v%d is current", name, x.r.Secrets[name])
	}
	for _, name := range x.deferred {
		e.say("%s: its rows are re-encrypted after the rotation (rekey reencrypt %s)", name, name)
	}
}
