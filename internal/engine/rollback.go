package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
)

// fail handles a failed step whose undo is a rollback: roll back scheduled
// and manual rotations; keep the new values of an emergency that published,
// and of a rotation whose data all moved to the new key already.
func (e *Engine) fail(ctx context.Context, x *run, cause error) error {
	r := x.r
	if x.res != nil {
		x.res.VerifyErr = cause
	}
	if x.published && (r.Mode == rekey.ModeEmergency || len(e.keptOnRollback(r)) == len(r.Secrets)) {
		return e.keepAfterFailure(ctx, x, cause)
	}
	if err := e.rollback(ctx, x, cause.Error()); err != nil {
		return fmt.Errorf("%w; then rollback failed: %v", cause, err)
	}
	if x.res != nil {
		x.res.RolledBack = true
	}
	after := e.afterRollback(ctx, x)
	hint := "the previous values are in place again; nothing was lost"
	if kept := e.keptOnRollback(r); len(kept) > 0 {
		hint = "the previous values are in place again, except " + strings.Join(kept, ", ") + ": the data had already moved to its new value, which stays current; nothing was lost"
	}
	if h := rekey.ErrorHint(cause); h != "" {
		hint = h + " (" + hint + ")"
	}
	return &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: "rotation rolled back" + after, Err: cause, Hint: hint}
}

// keepAfterFailure finishes a failed rotation with its new values: the old
// ones may be exposed (emergency), or the data is on the new key already.
func (e *Engine) keepAfterFailure(ctx context.Context, x *run, cause error) error {
	r := x.r
	msg, hint := "emergency rotation kept the new values but verification failed",
		"the old values may be exposed, so rekey did not go back to them: fix what is broken, then run `rekey verify`"
	if r.Mode == rekey.ModeEmergency {
		e.say("EMERGENCY: keeping the new values although %v", cause)
	} else {
		msg, hint = "verification failed after the data moved to the new key: the new values are kept",
			"going back to the old key would make the re-encrypted rows unreadable: fix what is broken, then run `rekey verify`"
		e.say("keeping the new values although %v: the data is already on the new key", cause)
	}
	if h := rekey.ErrorHint(cause); h != "" {
		hint = h + "\n" + hint
	}
	if err := e.finish(ctx, x, rekey.StateFailed, cause.Error()); err != nil {
		return err
	}
	// A data key whose rows did not move yet: the old key stays published
	// (NAME_PREVIOUS) and the version is marked, so `rekey reencrypt`
	// moves them and no later rotation strands them.
	if err := e.markUnmigrated(ctx, r); err != nil {
		return err
	}
	if r.Mode == rekey.ModeEmergency {
		if _, err := e.ExpireGrace(ctx); err != nil {
			e.say("ending the grace of the exposed values failed: %v", err)
		}
	}
	return &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: msg, Err: cause, Hint: hint}
}

// afterRollback restarts the consumers that saw the new values on the old
// ones and checks again, so the report says whether the rollback healed
// them. It returns what to add to the report.
func (e *Engine) afterRollback(ctx context.Context, x *run) string {
	if !x.published || (e.Services == nil && e.Checks == nil) {
		return ""
	}
	after := ""
	if err := e.services().Restart(ctx, append(e.consumedKeys(x.names, false), e.previousKeys(x.names)...)); err != nil {
		after = "; restarting the services on the previous values failed: " + err.Error()
	} else if e.Checks != nil {
		if err := e.Checks.Run(ctx); err != nil {
			after = "; checks still fail on the previous values: " + err.Error()
		} else {
			after = "; checks pass again on the previous values"
		}
	}
	e.say("after rollback%s", strings.TrimPrefix(after, ";"))
	return after
}

// rollback puts the current values back on the targets and backing systems
// (the rollback step) and abandons the pending versions: they stay in
// history, unlabeled.
func (e *Engine) rollback(ctx context.Context, x *run, why string) error {
	if err := e.step(ctx, x, &rollbackStep); err != nil {
		return err
	}
	r, kept := x.r, e.keptOnRollback(x.r)
	return e.Store.Update(ctx, func(tx rekey.Tx) error {
		for _, name := range x.names {
			if err := e.abandon(tx, x, name, slices.Contains(kept, name), why); err != nil {
				return err
			}
		}
		if len(kept) > 0 {
			why += " (kept " + strings.Join(kept, ", ") + ": its data already moved to the new value)"
		}
		r.State, r.Ended, r.Error = rekey.StateRolledBack, e.now(), truncate(why, 500)
		if err := tx.PutRotation(r); err != nil {
			return err
		}
		if err := e.notify(tx, rekey.EventRotationRolledBack, r, x.names); err != nil {
			return err
		}
		_, err := tx.PruneRotations(e.Env, KeepRotations)
		return err
	})
}

// restore is the rollback step: the previous values on the targets (but
// those of kept data keys), and the backing systems reverted.
func (e *Engine) restore(ctx context.Context, x *run) error {
	kept := e.keptOnRollback(x.r)
	var names []string
	set := map[string]rekey.Value{}
	for _, n := range x.names {
		if slices.Contains(kept, n) {
			continue
		}
		names = append(names, n)
		if v, ok := x.current[n]; ok {
			set[n] = v
			for k, a := range x.cv[n].Attrs {
				set[n+"."+k] = rekey.NewValueString(a)
			}
		}
	}
	rev := slices.Clone(e.targetOrder())
	slices.Reverse(rev)
	if err := e.writeValuesIn(ctx, rev, "restored the previous values on", names, set, nil, e.previousKeys(names)); err != nil {
		return err
	}
	for _, name := range names {
		s, a := e.applier(name)
		if _, ok := x.current[name]; a == nil || !ok {
			continue
		}
		p, c := x.pair(name)
		if err := a.Revert(ctx, e.Env, s, p, c); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "revert %s", name)
		}
	}
	return nil
}

// abandon ends the rollback of one secret in the store: its pending version
// loses its label; a kept data key's becomes current instead.
func (e *Engine) abandon(tx rekey.Tx, x *run, name string, kept bool, why string) error {
	n := x.r.Secrets[name]
	if !kept {
		if err := clearPending(tx, e.Env, name, n); err != nil {
			return err
		}
		_, err := tx.Audit(e.audit("rotate.rollback", name, n, "", "rolled-back", truncate(why, 200)))
		return err
	}
	// Its data is on the new value already: it becomes current.
	if cur, err := tx.Labeled(e.Env, name, rekey.LabelCurrent); err == nil && cur.N != n {
		if err := tx.SetLabel(e.Env, name, cur.N, rekey.LabelPrevious); err != nil {
			return err
		}
	}
	if err := tx.SetLabel(e.Env, name, n, rekey.LabelCurrent); err != nil {
		return err
	}
	if err := tx.SetLabel(e.Env, name, 0, rekey.LabelPending); err != nil {
		return err
	}
	_, err := tx.Audit(e.audit("rotate.finish", name, n, x.pv[name].Fingerprint, "kept", "rotation "+x.r.ID+": its data already moved to this version, so it was not rolled back with the others"))
	return err
}

// keepIncomplete ends a rotation whose data migration failed part way: rows
// may already be on the new key, so going back is not safe. The new value is
// current and published, the old one stays published as NAME_PREVIOUS (online)
// and sealed as previous; `rekey reencrypt` finishes the move later.
func (e *Engine) keepIncomplete(ctx context.Context, x *run, cause error, names []string) error {
	r := x.r
	if x.res != nil {
		x.res.VerifyErr = cause
	}
	prev := e.previousWrites(r, x.current)
	if err := e.writeValues(ctx, "published to", x.names, x.pending, prev, nil); err != nil {
		return fmt.Errorf("%w; then publishing failed: %v", cause, err)
	}
	if err := e.services().Start(ctx, e.consumedKeys(names, true)); err != nil {
		e.say("starting the services failed: %v", err)
	}
	if err := e.finish(ctx, x, rekey.StateFailed, cause.Error()); err != nil {
		return err
	}
	if err := e.markIncomplete(ctx, r, names); err != nil {
		return err
	}
	return &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: "re-encryption did not finish", Err: cause,
		Hint: "the new key is current and the old one is kept (sealed, and published as _PREVIOUS where the app reads it): fix what the error names, then run `rekey reencrypt` to finish"}
}

// keptOnRollback lists the data keys of r that a rollback must not undo:
// their rows already moved to the new value (the migrate step finished), so
// the old key alone would not read them.
func (e *Engine) keptOnRollback(r *rekey.Rotation) []string {
	if !migrated(r) {
		return nil
	}
	return e.dataKeys(slices.Sorted(maps.Keys(r.Secrets)))
}
