package sqlite

// This file holds the rotation rows of a transaction: writing, reading
// (each row authenticated) and pruning them.

import (
	"bytes"
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/rekeyhq/rekey"
)

func (t *txn) PutRotation(r *rekey.Rotation) error {
	if !t.rw {
		return errors.New("put rotation: read-only transaction")
	}
	secrets, err := json.Marshal(r.Secrets)
	if err != nil {
		return err
	}
	steps, err := json.Marshal(r.Steps)
	if err != nil {
		return err
	}
	var ended int64
	if !r.Ended.IsZero() {
		ended = r.Ended.UnixNano()
	}
	started := r.Started.UnixNano()
	m, err := t.s.rotationMAC(r.ID, r.Env, string(r.Mode), string(r.State), r.Actor, started, ended, string(secrets), string(steps), r.Error)
	if err != nil {
		return err
	}
	t.dirty = true
	_, err = t.tx.Exec(`INSERT INTO rotation(id, env, mode, state, actor, started, ended, secrets, steps, error, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET env = excluded.env, mode = excluded.mode, actor = excluded.actor, started = excluded.started, state = excluded.state, ended = excluded.ended, secrets = excluded.secrets, steps = excluded.steps, error = excluded.error, mac = excluded.mac`,
		r.ID, r.Env, string(r.Mode), string(r.State), r.Actor, started, ended, string(secrets), string(steps), r.Error, m)
	if err == nil && t.man != nil {
		t.man.rotations[r.ID] = manEntry{env: r.Env, tag: fitTag(m)}
	}
	return err
}

func (t *txn) PruneRotations(env string, keep int) (int, error) {
	if !t.rw {
		return 0, errors.New("prune rotations: read-only transaction")
	}
	// Decided on authenticated rows, never on columns as found.
	rs, err := t.rotations(env)
	if err != nil {
		return 0, err
	}
	n, kept := 0, 0
	for _, r := range rs { // newest first
		if r.State == rekey.StateRunning {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if _, err := t.tx.Exec(`DELETE FROM rotation WHERE id = ?`, r.ID); err != nil {
			return n, err
		}
		if t.man != nil {
			delete(t.man.rotations, r.ID)
		}
		t.dirty = true
		n++
	}
	return n, nil
}

const rotationCols = `id, env, mode, state, actor, started, ended, secrets, steps, error, mac`

func (t *txn) scanRotation(sc interface{ Scan(...any) error }) (*rekey.Rotation, error) {
	r := &rekey.Rotation{}
	var started, ended int64
	var mode, state, secrets, steps string
	var m []byte
	if err := sc.Scan(&r.ID, &r.Env, &mode, &state, &r.Actor, &started, &ended, &secrets, &steps, &r.Error, &m); err != nil {
		return nil, badScan(err, "a rotation row")
	}
	want, err := t.s.rotationMAC(r.ID, r.Env, mode, state, r.Actor, started, ended, secrets, steps, r.Error)
	if err != nil {
		return nil, err
	}
	e, listed := t.man.rotation(r.ID)
	switch {
	case !listed:
		return nil, tampered("rotation "+r.ID, "was inserted (it is not in the store's authenticated manifest)")
	case !hmac.Equal(want, m):
		return nil, tampered("rotation "+r.ID, "fails its authentication (its journal was edited)")
	case e.tag != nil && (e.env != r.Env || !bytes.Equal(e.tag, fitTag(m))):
		return nil, tampered("rotation "+r.ID, "was replaced by an older copy (its MAC is not the authenticated one)")
	}
	r.Mode, r.State = rekey.Mode(mode), rekey.RotationState(state)
	r.Started = time.Unix(0, started).UTC()
	if ended != 0 {
		r.Ended = time.Unix(0, ended).UTC()
	}
	if err := json.Unmarshal([]byte(secrets), &r.Secrets); err != nil {
		return nil, corrupt("rotation " + r.ID)
	}
	if err := json.Unmarshal([]byte(steps), &r.Steps); err != nil {
		return nil, corrupt("rotation " + r.ID)
	}
	return r, nil
}

func (t *txn) Rotation(id string) (*rekey.Rotation, error) {
	r, err := t.scanRotation(t.tx.QueryRow(`SELECT `+rotationCols+` FROM rotation WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		if t.man != nil && t.man.rotations[id].tag != nil {
			return nil, tampered("rotation "+id, "was deleted")
		}
		return nil, notFound("no rotation %s", id)
	}
	return r, err
}

// rotations reads and authenticates every rotation of env ("" = all), newest first.
func (t *txn) rotations(env string) ([]*rekey.Rotation, error) {
	var out []*rekey.Rotation
	seen := map[string]bool{}
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		r, err := t.scanRotation(rows)
		if err != nil {
			return err
		}
		out = append(out, r)
		seen[r.ID] = true
		return nil
	}, `SELECT `+rotationCols+` FROM rotation WHERE (? = '' OR env = ?) ORDER BY started DESC, id DESC`, env, env); err != nil {
		return nil, err
	}
	if t.man != nil {
		for id, e := range t.man.rotations {
			if (env == "" || e.env == env) && !seen[id] {
				return nil, tampered("rotation "+id, "was deleted")
			}
		}
	}
	return out, nil
}

func (t *txn) Rotations(env string, unfinished bool) ([]*rekey.Rotation, error) {
	rs, err := t.rotations(env)
	if err != nil || !unfinished {
		return rs, err
	}
	var out []*rekey.Rotation
	for _, r := range rs {
		if r.State == rekey.StateRunning {
			out = append(out, r)
		}
	}
	return out, nil
}
