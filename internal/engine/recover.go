package engine

import (
	"context"

	"github.com/rekeyhq/rekey"
)

// RecoverReport says what Recover did.
type RecoverReport struct {
	RolledForward []string // rotation IDs completed
	RolledBack    []string // rotation IDs abandoned
	Drift         []DriftItem
}

// Recover completes or rolls back every unfinished rotation of the
// environment so that the store's current values and the targets agree.
// What a stored journal means (rotations written by every rekey so far):
//   - one that reached the rollback step finishes rolling back;
//   - one whose create commit journaled the publish intent (every rotation
//     now), or that journaled apply (older rekeys), is completed: the steps
//     of the table run again from apply, each idempotent;
//   - one journaled without either (none are written so) is abandoned.
//
// Callers hold the environment lock.
func (e *Engine) Recover(ctx context.Context) (*RecoverReport, error) {
	rep := &RecoverReport{}
	var open []*rekey.Rotation
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		var err error
		open, err = tx.Rotations(e.Env, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	// oldest first
	for i := len(open) - 1; i >= 0; i-- {
		r := open[i]
		x, err := e.load(ctx, r, nil)
		if err != nil {
			return rep, err
		}
		switch {
		case r.Reached(rekey.StepRollback):
			e.say("recover: finishing the rollback of rotation %s", r.ID)
			if err := e.rollback(ctx, x, "recovered: "+r.Error); err != nil {
				return rep, err
			}
			rep.RolledBack = append(rep.RolledBack, r.ID)
		case r.Reached(rekey.StepPublish) || r.Reached(rekey.StepApply):
			e.say("recover: completing rotation %s", r.ID)
			if err := e.drive(ctx, x); err != nil {
				return rep, rekey.Wrap(rekey.ErrorCode(err), err, "complete rotation %s", r.ID)
			}
			rep.RolledForward = append(rep.RolledForward, r.ID)
		default:
			e.say("recover: abandoning rotation %s (no target saw its values)", r.ID)
			if err := e.rollback(ctx, x, "interrupted before publish"); err != nil {
				return rep, err
			}
			rep.RolledBack = append(rep.RolledBack, r.ID)
		}
		if err := e.auditOne(ctx, e.audit("recover", "", 0, "", string(r.State), "rotation "+r.ID)); err != nil {
			return rep, err
		}
	}
	drift, err := e.Drift(ctx, nil)
	if err != nil {
		return rep, err
	}
	rep.Drift = drift
	return rep, nil
}
