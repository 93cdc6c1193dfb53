package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/rekeyhq/rekey"
)

// dataKeys lists those of names whose data moves with them: a reencrypt
// section and a Migrator for their kind.
func (e *Engine) dataKeys(names []string) []string {
	var out []string
	for _, n := range names {
		if s, m := e.migrator(n); s != nil && s.Reencrypt != nil && m != nil {
			out = append(out, n)
		}
	}
	return out
}

// migratingIn lists the data keys of r re-encrypted in the given mode.
func (e *Engine) migratingIn(r *rekey.Rotation, mode string) []string {
	var out []string
	for _, name := range e.dataKeys(slices.Sorted(maps.Keys(r.Secrets))) {
		s, _ := e.Spec(name)
		m := s.Reencrypt.Mode
		if m == "" {
			m = rekey.ReencryptOnline
		}
		if m == mode {
			out = append(out, name)
		}
	}
	return out
}

// migrated reports whether r's data migration step ran to the end.
func migrated(r *rekey.Rotation) bool {
	i := lastIndex(r, rekey.StepMigrate)
	return i >= 0 && r.Steps[i].Outcome == "ok"
}

// migrateMaintenance is the migrate step of maintenance-mode data keys:
// their consumers are stopped, nobody sees the new key yet.
func (e *Engine) migrateMaintenance(ctx context.Context, x *run) error {
	return e.migrate(ctx, x, x.maint)
}

// migrateOnline is the migrate step of online data keys: the app reads both
// keys meanwhile (the old one as NAME_PREVIOUS).
func (e *Engine) migrateOnline(ctx context.Context, x *run) error {
	return e.migrate(ctx, x, x.online)
}

// migrate moves the data of names to their pending values.
func (e *Engine) migrate(ctx context.Context, x *run, names []string) error {
	for _, name := range names {
		s, m := e.migrator(name)
		if _, ok := x.current[name]; !ok {
			continue // a first version: no data under an older key
		}
		e.say("re-encrypting the data of %s (v%d → v%d)", name, x.cv[name].N, x.pv[name].N)
		p, c := x.pair(name)
		if err := m.Migrate(ctx, e.Env, s, p, c, x.r.ID); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "re-encrypt %s", name)
		}
	}
	return nil
}

// markUnmigrated marks the new version of every data key of r whose rows
// have not moved (the rotation ended before its migrate step finished).
func (e *Engine) markUnmigrated(ctx context.Context, r *rekey.Rotation) error {
	if migrated(r) {
		return nil
	}
	return e.markIncomplete(ctx, r, e.dataKeys(slices.Sorted(maps.Keys(r.Secrets))))
}

// markIncomplete marks the version r made current of each of names as
// having rows still under the previous key.
func (e *Engine) markIncomplete(ctx context.Context, r *rekey.Rotation, names []string) error {
	if len(names) == 0 {
		return nil
	}
	return e.Store.Update(ctx, func(tx rekey.Tx) error {
		marked, err := e.markIncompleteTx(tx, r, names)
		if err != nil {
			return err
		}
		return e.notify(tx, rekey.EventReencryptIncomplete, r, marked)
	})
}

// markIncompleteTx marks, in tx, the current version of each of names
// that r made current and that replaced an older one, and returns them.
func (e *Engine) markIncompleteTx(tx rekey.Tx, r *rekey.Rotation, names []string) ([]string, error) {
	var marked []string
	for _, name := range names {
		v, err := tx.Labeled(e.Env, name, rekey.LabelCurrent)
		if err != nil {
			return nil, err
		}
		if v.N != r.Secrets[name] {
			continue
		}
		if _, err := tx.Labeled(e.Env, name, rekey.LabelPrevious); err != nil {
			continue // a first version: no rows under an older key
		}
		if err := tx.SetAttrs(e.Env, name, v.N, rekey.WithAttr(v.Attrs, rekey.AttrReencrypt, "incomplete")); err != nil {
			return nil, err
		}
		marked = append(marked, name)
	}
	return marked, nil
}

// FinishMigration resumes the re-encryption of a data key whose rotation
// ended with rows still on the previous key (AttrReencrypt "incomplete"):
// the Migrator moves them from previous to current; when it succeeds the
// mark is cleared, NAME_PREVIOUS leaves the targets and its consumers restart.
// It reports false when there was nothing to finish.
func (e *Engine) FinishMigration(ctx context.Context, name string) (bool, error) {
	s, m := e.migrator(name)
	if s == nil {
		return false, rekey.UnknownSecret(name, e.Specs)
	}
	if m == nil || s.Reencrypt == nil {
		return false, rekey.Errorf(rekey.CodeInvalid, "%s is not a data key with a reencrypt section", name)
	}
	var cur, prev rekey.VersionValue
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		var err error
		if cur.Version, err = tx.Labeled(e.Env, name, rekey.LabelCurrent); err != nil || cur.Attrs[rekey.AttrReencrypt] != "incomplete" {
			return err
		}
		if cur.Value, err = tx.Value(e.Env, name, cur.N); err != nil {
			return err
		}
		prev, err = labeledValue(tx, e.Env, name, rekey.LabelPrevious)
		return err
	})
	if err != nil || cur.Attrs[rekey.AttrReencrypt] != "incomplete" {
		return false, err
	}
	e.say("resuming the re-encryption of %s (v%d → v%d)", name, prev.N, cur.N)
	if err := m.Migrate(ctx, e.Env, s, cur, prev, cur.RotationID); err != nil {
		if aerr := e.auditOne(ctx, e.audit("reencrypt", name, cur.N, cur.Fingerprint, "incomplete", truncate(err.Error(), 200))); aerr != nil {
			return true, aerr
		}
		return true, err
	}
	err = e.Store.Update(ctx, func(tx rekey.Tx) error {
		if err := tx.SetAttrs(e.Env, name, cur.N, rekey.WithAttr(cur.Attrs, rekey.AttrReencrypt, "")); err != nil {
			return err
		}
		_, err := tx.Audit(e.audit("reencrypt", name, cur.N, cur.Fingerprint, "ok", fmt.Sprintf("every row moved from v%d", prev.N)))
		return err
	})
	if err != nil {
		return true, err
	}
	return true, e.retirePrevious(ctx, s)
}

// retirePrevious removes s's previous key from its targets and restarts the
// consumers of that key.
func (e *Engine) retirePrevious(ctx context.Context, s *rekey.Spec) error {
	k := s.PreviousKey()
	if k == "" {
		return nil
	}
	if err := e.deleteKeys(ctx, []string{s.Name}, []string{k}); err != nil {
		return err
	}
	return e.services().Restart(ctx, []string{k})
}

// labeledValue reads the version of name holding l, with its value.
func labeledValue(tx rekey.Tx, env, name string, l rekey.Label) (rekey.VersionValue, error) {
	var vv rekey.VersionValue
	var err error
	if vv.Version, err = tx.Labeled(env, name, l); err != nil {
		return vv, err
	}
	vv.Value, err = tx.Value(env, name, vv.N)
	return vv, err
}

// auditOne appends one audit record in its own transaction.
func (e *Engine) auditOne(ctx context.Context, a rekey.AuditEntry) error {
	return e.Store.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Audit(a)
		return err
	})
}
