package rekey

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Services restarts the services that consume changed keys (rekey.yaml's
// services:, wired by the command). Keys are secret names, derived value
// names and previous-value keys; a service is affected when it consumes one.
type Services interface {
	Restart(ctx context.Context, keys []string) error
	Stop(ctx context.Context, keys []string) error
	Start(ctx context.Context, keys []string) error
}

// Checks verifies the application after a rotation (rekey.yaml's checks:).
// The error says which checks failed; it never holds a value.
type Checks interface {
	Run(ctx context.Context) error
}

// Hooks runs a secret's on_rotate hooks (session stores).
type Hooks interface {
	OnRotate(ctx context.Context, env string, spec *Spec) error
}

// Migrator is an Applier whose data must move from the current value to the
// pending one after publish (re-encryption of a data key). Migrate must be
// resumable: after a crash it is called again and continues.
type Migrator interface {
	Migrate(ctx context.Context, env string, spec *Spec, pending, current VersionValue, rotationID string) error
}

// ErrIncomplete marks a migration that ended with data still on the old key
// (rows that open with neither key): the old key stays published and sealed.
var ErrIncomplete = errors.New("re-encryption incomplete")

// Version attributes the engine keeps.
const (
	AttrGraceUntil = "grace_until" // RFC 3339: the superseded value works until then
	AttrExpired    = "expired"     // RFC 3339: when the grace ended
	AttrReencrypt  = "reencrypt"   // "incomplete" while rows are still on the previous key
)

// extraKey is a key published next to a secret on its targets (NAME_PREVIOUS).
type extraKey struct {
	Key   string
	Value Value
}

type noServices struct{}

func (noServices) Restart(context.Context, []string) error { return nil }
func (noServices) Stop(context.Context, []string) error    { return nil }
func (noServices) Start(context.Context, []string) error   { return nil }

func (e *Engine) services() Services {
	if e.Services == nil {
		return noServices{}
	}
	return e.Services
}

// migrating lists the secrets of r whose data moves in the given mode.
func (e *Engine) migrating(r *Rotation, mode string) []string {
	var out []string
	for _, name := range sortedKeys(r.Secrets) {
		s, ok := e.Spec(name)
		if !ok || s.Reencrypt == nil {
			continue
		}
		if _, ok := e.Appliers[s.Kind].(Migrator); !ok {
			continue
		}
		m := s.Reencrypt.Mode
		if m == "" {
			m = ReencryptOnline
		}
		if m == mode {
			out = append(out, name)
		}
	}
	return out
}

// consumedKeys lists the keys a change of names touches: the names, the
// derived values built from them, and (withPrevious) their previous keys.
func (e *Engine) consumedKeys(names []string, withPrevious bool) []string {
	touched := map[string]bool{}
	for _, n := range names {
		touched[n] = true
	}
	out := append([]string(nil), names...)
	for _, d := range e.Derived {
		for _, ref := range d.Template.Refs() {
			if base, _ := SplitRef(ref); touched[base] {
				out = append(out, d.Name)
				break
			}
		}
	}
	if withPrevious {
		for _, n := range names {
			if s, ok := e.Spec(n); ok && s.PreviousKey() != "" {
				out = append(out, s.PreviousKey())
			}
		}
	}
	return uniq(out)
}

// previousWrites is what a rotation publishes next to the new values: the
// current value under NAME_PREVIOUS for graceful sessions and online
// re-encryption.
func (e *Engine) previousWrites(r *Rotation, current map[string]Value) map[string]extraKey {
	out := map[string]extraKey{}
	for name := range r.Secrets {
		s, ok := e.Spec(name)
		if !ok || s.PreviousKey() == "" {
			continue
		}
		if r.Mode == ModeEmergency && s.Kind != KindDataKey {
			continue // an exposed signing secret must stop working at once
		}
		if cv, ok := current[name]; ok {
			out[name] = extraKey{s.PreviousKey(), cv}
		}
	}
	return out
}

// previousKeys lists the previous-value keys of names.
func (e *Engine) previousKeys(names []string) []string {
	var out []string
	for _, n := range names {
		if s, ok := e.Spec(n); ok && s.PreviousKey() != "" {
			out = append(out, s.PreviousKey())
		}
	}
	return out
}

// deleteKeys removes keys from the targets of names.
func (e *Engine) deleteKeys(ctx context.Context, names, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	tns := map[string]bool{}
	for _, n := range names {
		for _, tn := range e.targetNamesFor(n) {
			tns[tn] = true
		}
	}
	for _, tn := range e.targetOrder() {
		if !tns[tn] {
			continue
		}
		t := e.Targets[tn]
		if t == nil {
			continue
		}
		if err := t.Write(ctx, nil, keys); err != nil {
			return Wrap(ErrorCode(err), err, "write %s", t.Name())
		}
		e.say("removed %s from %s", strings.Join(keys, ", "), t.Name())
	}
	return nil
}

// restart restarts the consumers of what a rotation changed.
func (e *Engine) restart(ctx context.Context, r *Rotation, names []string, prev map[string]extraKey) error {
	if e.Services == nil {
		return nil
	}
	e.fault("restart:before")
	keys := e.consumedKeys(names, false)
	for _, x := range prev {
		keys = append(keys, x.Key)
	}
	if err := e.Services.Restart(ctx, uniq(keys)); err != nil {
		return Wrap(ErrorCode(err), err, "restart")
	}
	e.fault("restart:after")
	return nil
}

// migrate moves the data of names to their pending values.
func (e *Engine) migrate(ctx context.Context, r *Rotation, names []string, pending, current map[string]Value, pv, cv map[string]Version) error {
	for _, name := range names {
		s, _ := e.Spec(name)
		m := e.Appliers[s.Kind].(Migrator)
		if _, ok := current[name]; !ok {
			continue // a first version: no data under an older key
		}
		e.say("re-encrypting the data of %s (v%d → v%d)", name, cv[name].N, pv[name].N)
		if err := m.Migrate(ctx, e.Env, s, VersionValue{pv[name], pending[name]}, VersionValue{cv[name], current[name]}, r.ID); err != nil {
			return Wrap(ErrorCode(err), err, "re-encrypt %s", name)
		}
	}
	return nil
}

// runHooks runs the on_rotate hooks of names.
func (e *Engine) runHooks(ctx context.Context, names []string) error {
	for _, name := range names {
		s, ok := e.Spec(name)
		if !ok || s.Sessions == nil || len(s.Sessions.OnRotate) == 0 {
			continue
		}
		if e.Hooks == nil {
			return Errorf(CodeInternal, "%s has on_rotate hooks but nothing runs them", name)
		}
		if err := e.Hooks.OnRotate(ctx, e.Env, s); err != nil {
			return Wrap(ErrorCode(err), err, "on_rotate of %s", name)
		}
		e.say("ran the on_rotate hooks of %s", name)
	}
	return nil
}

// keepIncomplete ends a rotation whose data migration failed part way: rows
// may already be on the new key, so going back is not safe. The new value is
// current and published, the old one stays published as NAME_PREVIOUS (online)
// and sealed as previous; `rekey reencrypt` finishes the move later.
func (e *Engine) keepIncomplete(ctx context.Context, r *Rotation, res *Result, cause error, pending, current map[string]Value, names []string) error {
	if res != nil {
		res.VerifyErr = cause
	}
	prev := e.previousWrites(r, current)
	if err := e.writeValues(ctx, "published to", sortedKeys(r.Secrets), pending, prev, nil); err != nil {
		return fmt.Errorf("%w; then publishing failed: %v", cause, err)
	}
	if err := e.services().Start(ctx, e.consumedKeys(names, true)); err != nil {
		e.say("starting the services failed: %v", err)
	}
	if err := e.finish(ctx, r, StateFailed, cause.Error(), pending); err != nil {
		return err
	}
	if err := e.markIncomplete(ctx, r, names); err != nil {
		return err
	}
	return &Error{Code: CodeVerifyFailed, Msg: "re-encryption did not finish", Err: cause,
		Hint: "the new key is current and the old one is kept (sealed, and published as _PREVIOUS where the app reads it): fix what the error names, then run `rekey reencrypt` to finish"}
}

// GraceEnd is a superseded version whose grace ended.
type GraceEnd struct {
	Name    string
	Version int
}

// ExpireGrace ends the grace of every superseded version whose grace period
// has passed: NAME_PREVIOUS leaves the targets (graceful sessions) and the
// backing system stops accepting it (the idle role of an alternating pair
// gets a random password). `rekey rotate --due` and recovery call it.
func (e *Engine) ExpireGrace(ctx context.Context) ([]GraceEnd, error) {
	var out []GraceEnd
	now := e.now()
	for i := range e.Specs {
		s := &e.Specs[i]
		if s.Grace() <= 0 {
			continue
		}
		var prev VersionValue
		err := e.Store.View(ctx, func(tx Tx) error {
			v, err := tx.Labeled(e.Env, s.Name, LabelPrevious)
			if err != nil {
				return err
			}
			prev.Version = v
			if v.Attrs[AttrExpired] != "" {
				return nil
			}
			prev.Value, err = tx.Value(e.Env, s.Name, v.N)
			return err
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		until, err := time.Parse(time.RFC3339, prev.Attrs[AttrGraceUntil])
		if prev.Attrs[AttrExpired] != "" || err != nil || now.Before(until) {
			continue
		}
		if k := s.PreviousKey(); k != "" {
			if err := e.deleteKeys(ctx, []string{s.Name}, []string{k}); err != nil {
				return out, err
			}
			if err := e.services().Restart(ctx, []string{k}); err != nil {
				return out, err
			}
		}
		if x, ok := e.Appliers[s.Kind].(Expirer); ok {
			if err := x.Expire(ctx, e.Env, s, prev); err != nil {
				return out, Wrap(ErrorCode(err), err, "end the grace of %s v%d", s.Name, prev.N)
			}
		}
		err = e.Store.Update(ctx, func(tx Tx) error {
			if err := tx.SetAttrs(e.Env, s.Name, prev.N, withAttr(prev.Attrs, AttrExpired, now.UTC().Format(time.RFC3339))); err != nil {
				return err
			}
			_, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "grace.expire", Env: e.Env, Secret: s.Name, Version: prev.N, Fingerprint: prev.Fingerprint, Outcome: "ok", Detail: "grace ended " + until.UTC().Format(time.RFC3339)})
			return err
		})
		if err != nil {
			return out, err
		}
		e.say("the grace of %s v%d ended: it no longer works", s.Name, prev.N)
		out = append(out, GraceEnd{s.Name, prev.N})
	}
	return out, nil
}

// FinishMigration resumes the re-encryption of a data key whose rotation
// ended with rows still on the previous key (AttrReencrypt "incomplete"):
// the Migrator moves them from previous to current; when it succeeds the
// mark is cleared, NAME_PREVIOUS leaves the targets and its consumers restart.
// It reports false when there was nothing to finish.
func (e *Engine) FinishMigration(ctx context.Context, name string) (bool, error) {
	s, ok := e.Spec(name)
	if !ok {
		return false, Errorf(CodeNotFound, "no secret %s in rekey.yaml", name)
	}
	m, ok := e.Appliers[s.Kind].(Migrator)
	if !ok || s.Reencrypt == nil {
		return false, Errorf(CodeInvalid, "%s is not a data key with a reencrypt section", name)
	}
	var cur, prev VersionValue
	err := e.Store.View(ctx, func(tx Tx) error {
		var err error
		if cur.Version, err = tx.Labeled(e.Env, name, LabelCurrent); err != nil {
			return err
		}
		if cur.Attrs[AttrReencrypt] != "incomplete" {
			return nil
		}
		if cur.Value, err = tx.Value(e.Env, name, cur.N); err != nil {
			return err
		}
		if prev.Version, err = tx.Labeled(e.Env, name, LabelPrevious); err != nil {
			return err
		}
		prev.Value, err = tx.Value(e.Env, name, prev.N)
		return err
	})
	if err != nil || cur.Attrs[AttrReencrypt] != "incomplete" {
		return false, err
	}
	e.say("resuming the re-encryption of %s (v%d → v%d)", name, prev.N, cur.N)
	if err := m.Migrate(ctx, e.Env, s, cur, prev, cur.RotationID); err != nil {
		if aerr := e.Store.Update(ctx, func(tx Tx) error {
			_, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "reencrypt", Env: e.Env, Secret: name, Version: cur.N, Fingerprint: cur.Fingerprint, Outcome: "incomplete", Detail: truncate(err.Error(), 200)})
			return err
		}); aerr != nil {
			return true, aerr
		}
		return true, err
	}
	err = e.Store.Update(ctx, func(tx Tx) error {
		if err := tx.SetAttrs(e.Env, name, cur.N, withAttr(cur.Attrs, AttrReencrypt, "")); err != nil {
			return err
		}
		_, err := tx.Audit(AuditEntry{Actor: e.Actor, Action: "reencrypt", Env: e.Env, Secret: name, Version: cur.N, Fingerprint: cur.Fingerprint, Outcome: "ok", Detail: fmt.Sprintf("every row moved from v%d", prev.N)})
		return err
	})
	if err != nil {
		return true, err
	}
	if k := s.PreviousKey(); k != "" {
		if err := e.deleteKeys(ctx, []string{name}, []string{k}); err != nil {
			return true, err
		}
		if err := e.services().Restart(ctx, []string{k}); err != nil {
			return true, err
		}
	}
	return true, nil
}

// migrated reports whether r's data migration step ran to the end.
func (e *Engine) migrated(r *Rotation) bool {
	i := lastIndex(r, StepMigrate)
	return i >= 0 && r.Steps[i].Outcome == "ok"
}

// markUnmigrated marks the new version of every data key of r whose rows
// have not moved (the rotation ended before its migrate step finished).
func (e *Engine) markUnmigrated(ctx context.Context, r *Rotation) error {
	if e.migrated(r) {
		return nil
	}
	var names []string
	for _, n := range sortedKeys(r.Secrets) {
		if s, ok := e.Spec(n); ok && s.Reencrypt != nil {
			if _, ok := e.Appliers[s.Kind].(Migrator); ok {
				names = append(names, n)
			}
		}
	}
	return e.markIncomplete(ctx, r, names)
}

// markIncomplete marks the version r made current of each of names as
// having rows still under the previous key.
func (e *Engine) markIncomplete(ctx context.Context, r *Rotation, names []string) error {
	if len(names) == 0 {
		return nil
	}
	return e.Store.Update(ctx, func(tx Tx) error {
		for _, name := range names {
			v, err := tx.Labeled(e.Env, name, LabelCurrent)
			if err != nil {
				return err
			}
			if v.N != r.Secrets[name] {
				continue
			}
			if _, err := tx.Labeled(e.Env, name, LabelPrevious); err != nil {
				continue // a first version: no rows under an older key
			}
			if err := tx.SetAttrs(e.Env, name, v.N, withAttr(v.Attrs, AttrReencrypt, "incomplete")); err != nil {
				return err
			}
		}
		return nil
	})
}

// withAttr returns a copy of attrs with k set to v (removed when v is "").
func withAttr(attrs map[string]string, k, v string) map[string]string {
	a := maps.Clone(attrs)
	if a == nil {
		a = map[string]string{}
	}
	if v == "" {
		delete(a, k)
	} else {
		a[k] = v
	}
	return a
}

// keptOnRollback lists the data keys of r that a rollback must not undo:
// their rows already moved to the new value (the migrate step finished), so
// the old key alone would not read them.
func (e *Engine) keptOnRollback(r *Rotation) []string {
	if !e.migrated(r) {
		return nil
	}
	var out []string
	for _, n := range sortedKeys(r.Secrets) {
		if s, ok := e.Spec(n); ok && s.Reencrypt != nil {
			if _, ok := e.Appliers[s.Kind].(Migrator); ok {
				out = append(out, n)
			}
		}
	}
	return out
}
