package engine

import (
	"context"
	"errors"
	"time"

	"github.com/rekeyhq/rekey"
)

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
		prev, until, due, err := e.graceDue(ctx, s, now)
		if err != nil {
			return out, err
		}
		if !due {
			continue
		}
		if err := e.endGraceOf(ctx, s, prev, until, now); err != nil {
			return out, err
		}
		e.say("the grace of %s v%d ended: it no longer works", s.Name, prev.N)
		out = append(out, GraceEnd{s.Name, prev.N})
	}
	return out, nil
}

// graceDue reads the previous version of s and reports whether its grace
// has passed and not yet been ended.
func (e *Engine) graceDue(ctx context.Context, s *rekey.Spec, now time.Time) (prev rekey.VersionValue, until time.Time, due bool, err error) {
	err = e.Store.View(ctx, func(tx rekey.Tx) error {
		v, err := tx.Labeled(e.Env, s.Name, rekey.LabelPrevious)
		if err != nil {
			return err
		}
		prev.Version = v
		if v.Attrs[rekey.AttrExpired] != "" {
			return nil
		}
		prev.Value, err = tx.Value(e.Env, s.Name, v.N)
		return err
	})
	if errors.Is(err, rekey.ErrNotFound) {
		return prev, until, false, nil
	}
	if err != nil {
		return prev, until, false, err
	}
	until, perr := time.Parse(time.RFC3339, prev.Attrs[rekey.AttrGraceUntil])
	return prev, until, prev.Attrs[rekey.AttrExpired] == "" && perr == nil && !now.Before(until), nil
}

// endGraceOf ends the grace of prev, the previous version of s: its key
// leaves the targets, its backing system stops accepting it, and the
// version is marked expired (audited).
func (e *Engine) endGraceOf(ctx context.Context, s *rekey.Spec, prev rekey.VersionValue, until, now time.Time) error {
	if err := e.retirePrevious(ctx, s); err != nil {
		return err
	}
	if x, ok := e.Appliers[s.Kind].(rekey.Expirer); ok {
		if err := x.Expire(ctx, e.Env, s, prev); err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "end the grace of %s v%d", s.Name, prev.N)
		}
	}
	return e.Store.Update(ctx, func(tx rekey.Tx) error {
		if err := tx.SetAttrs(e.Env, s.Name, prev.N, rekey.WithAttr(prev.Attrs, rekey.AttrExpired, now.UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		_, err := tx.Audit(e.audit("grace.expire", s.Name, prev.N, prev.Fingerprint, "ok", "grace ended "+until.UTC().Format(time.RFC3339)))
		return err
	})
}
