package app

import (
	"context"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/flock"
)

// Status is what `rekey status` reports of the session's environment.
type Status struct {
	// Rows are one per secret, in rekey.yaml order.
	Rows []rekey.SecretStatus
	// Interrupted are the rotations a crash left open (`rekey recover`);
	// when Running is set, they are the running rotation's, not a crash's.
	Interrupted []*rekey.Rotation
	// Running names the process working on the environment now ("pid N
	// since T"), or is "".
	Running string
	// Reencrypt is the snapshot of the re-encryption Running is doing
	// (nil: none): pace, progress, paused.
	Reencrypt *ReencryptSnapshot
	// Drift lists the target keys whose value is not the store's current
	// one (their rows have the state drift).
	Drift []engine.DriftItem
	// DriftErr says why the targets could not be compared with the store.
	DriftErr error
	// Incidents are the environment's open incidents (newest first); one
	// with a follow-up past its deadline needs attention.
	Incidents []*rekey.Incident
}

// NeedsAttention: something is overdue, weak or missing, a rotation was
// interrupted and waits for `rekey recover`, or an open incident has a
// follow-up past its deadline (status exits 8); now is the session's clock.
func (s *Status) NeedsAttention(now time.Time) bool {
	if len(s.Interrupted) > 0 && s.Running == "" || s.DriftErr != nil {
		return true
	}
	for _, i := range s.Incidents {
		if len(i.Overdue(now)) > 0 {
			return true
		}
	}
	for _, r := range s.Rows {
		if r.NeedsAttention() {
			return true
		}
	}
	return false
}

// Status reads the state of every secret of the session's environment.
func (s *Session) Status(ctx context.Context) (*Status, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	out := &Status{}
	if out.Rows, err = ComputeStatus(ctx, st, cfg, env.Name, s.Now()); err != nil {
		return nil, err
	}
	err = st.View(ctx, func(tx rekey.Tx) error {
		if out.Interrupted, err = tx.Rotations(env.Name, true); err != nil {
			return err
		}
		out.Incidents, err = tx.Incidents(env.Name, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	if holder, held, err := flock.Held(s.lockPath(cfg, env.Name)); err == nil && held {
		out.Running = holder
		out.Reencrypt = s.runningReencryption(cfg, env.Name, holder)
	}
	if out.Running == "" { // a running rotation is publishing: not drift
		// A target that cannot be read (a .env deleted, unparsable) does
		// not hide the rest of the status: it is reported beside it.
		out.Drift, out.DriftErr = s.Engine(cfg, st, env).Drift(ctx, nil)
		markDrift(out.Rows, out.Drift)
	}
	return out, nil
}

// markDrift gives the rows of drifting secrets the state drift (a target
// lacking the key altogether is drift too: publish restores it).
func markDrift(rows []rekey.SecretStatus, drift []engine.DriftItem) {
	for _, d := range drift {
		for i := range rows {
			if rows[i].Name == d.Key && rows[i].State != rekey.StateMissing {
				rows[i].State = rekey.StateDrift
			}
		}
	}
}

// ComputeStatus computes the status rows of env's secrets at now; it
// unseals each current value only to estimate its strength (status,
// rotate --due, report, doctor).
func ComputeStatus(ctx context.Context, st rekey.Store, cfg *config.Config, env string, now time.Time) ([]rekey.SecretStatus, error) {
	var current map[string]rekey.Version
	bits := map[string]int{}
	err := st.View(ctx, func(tx rekey.Tx) error {
		var err error
		current, err = eachLive(tx, cfg, env, Current, func(s *rekey.Spec, _ rekey.Version, val rekey.Value) {
			bits[s.Name] = rekey.EstimateBits(val, s.Generator.Encoding)
			val.Wipe()
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return rekey.ComputeStatus(env, cfg.Secrets, current, bits, now), nil
}
