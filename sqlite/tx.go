package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
)

type txn struct {
	s         *DB
	tx        *sql.Tx
	rw        bool
	valueStmt *sql.Stmt
}

func notFound(format string, args ...any) error {
	return &rekey.Error{Code: rekey.CodeNotFound, Msg: fmt.Sprintf(format, args...), Err: rekey.ErrNotFound}
}

// valueRow runs Value's query with a statement prepared once per transaction
// (the transaction closes it).
func (t *txn) valueRow(env, name string, n int) *sql.Row {
	if t.valueStmt == nil {
		st, err := t.tx.Prepare(`SELECT v.sealed FROM version v JOIN secret s ON s.id = v.secret_id WHERE s.env = ? AND s.name = ? AND v.n = ?`)
		if err != nil {
			return t.tx.QueryRow(`SELECT v.sealed FROM version v JOIN secret s ON s.id = v.secret_id WHERE s.env = ? AND s.name = ? AND v.n = ?`, env, name, n)
		}
		t.valueStmt = st
	}
	return t.valueStmt.QueryRow(env, name, n)
}

func (t *txn) secretID(env, name string, create bool) (int64, error) {
	var id int64
	err := t.tx.QueryRow(`SELECT id FROM secret WHERE env = ? AND name = ?`, env, name).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if !create {
		return 0, notFound("no secret %s in environment %s", name, env)
	}
	res, err := t.tx.Exec(`INSERT INTO secret(env, name) VALUES (?, ?)`, env, name)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t *txn) Environments() ([]string, error) {
	return t.strings(`SELECT DISTINCT env FROM secret ORDER BY env`)
}

func (t *txn) Names(env string) ([]string, error) {
	return t.strings(`SELECT name FROM secret s WHERE env = ? AND EXISTS (SELECT 1 FROM version v WHERE v.secret_id = s.id) ORDER BY name`, env)
}

func (t *txn) strings(q string, args ...any) ([]string, error) {
	rows, err := t.tx.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const versionCols = `v.n, v.label, v.created_at, v.fingerprint, v.source, v.rotation_id, v.note, v.attrs`

func scanVersion(sc interface{ Scan(...any) error }, env, name string) (rekey.Version, error) {
	var v rekey.Version
	var label sql.NullString
	var created int64
	var attrs string
	if err := sc.Scan(&v.N, &label, &created, fpCol{&v.Fingerprint}, sourceCol{&v.Source}, rotIDCol{&v.RotationID}, &v.Note, &attrs); err != nil {
		return v, err
	}
	v.Env, v.Name, v.Label, v.CreatedAt = env, name, rekey.Label(label.String), time.Unix(0, created).UTC()
	return v, decodeAttrs(attrs, &v)
}

func decodeAttrs(s string, v *rekey.Version) error {
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), &v.Attrs); err != nil {
		return corrupt(fmt.Sprintf("%s/%s v%d attributes", v.Env, v.Name, v.N))
	}
	return nil
}

func (t *txn) Versions(env, name string) ([]rekey.Version, error) {
	id, err := t.secretID(env, name, false)
	if err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(`SELECT `+versionCols+` FROM version v WHERE v.secret_id = ? ORDER BY v.n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rekey.Version
	for rows.Next() {
		v, err := scanVersion(rows, env, name)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (t *txn) Labeled(env, name string, l rekey.Label) (rekey.Version, error) {
	id, err := t.secretID(env, name, false)
	if err != nil {
		return rekey.Version{}, err
	}
	v, err := scanVersion(t.tx.QueryRow(`SELECT `+versionCols+` FROM version v WHERE v.secret_id = ? AND v.label = ?`, id, string(l)), env, name)
	if errors.Is(err, sql.ErrNoRows) {
		return v, notFound("%s/%s has no %s version", env, name, l)
	}
	return v, err
}

func (t *txn) AllLabeled(env string, l rekey.Label) (map[string]rekey.Version, error) {
	rows, err := t.tx.Query(`SELECT s.name, `+versionCols+` FROM version v JOIN secret s ON s.id = v.secret_id WHERE s.env = ? AND v.label = ?`, env, string(l))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]rekey.Version{}
	for rows.Next() {
		var name string
		var v rekey.Version
		var label sql.NullString
		var created int64
		var attrs string
		if err := rows.Scan(&name, &v.N, &label, &created, fpCol{&v.Fingerprint}, sourceCol{&v.Source}, rotIDCol{&v.RotationID}, &v.Note, &attrs); err != nil {
			return nil, err
		}
		v.Env, v.Name, v.Label, v.CreatedAt = env, name, rekey.Label(label.String), time.Unix(0, created).UTC()
		if err := decodeAttrs(attrs, &v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}

func (t *txn) Value(env, name string, n int) (rekey.Value, error) {
	// One prepared statement (status and recovery call this per secret).
	var sealed []byte
	err := t.valueRow(env, name, n).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := t.secretID(env, name, false); err != nil {
			return rekey.Value{}, err
		}
		return rekey.Value{}, notFound("%s/%s has no version %d", env, name, n)
	}
	if err != nil {
		return rekey.Value{}, err
	}
	p, err := t.s.sealer.Open(sealed, valueAD(env, name, n))
	if err != nil {
		return rekey.Value{}, corrupt(fmt.Sprintf("%s/%s v%d does not open", env, name, n))
	}
	raw, err := unpackValue(p)
	seal.Wipe(p)
	if err != nil {
		return rekey.Value{}, corrupt(fmt.Sprintf("%s/%s v%d: %v", env, name, n, err))
	}
	v := rekey.NewValue(raw)
	seal.Wipe(raw)
	return v, nil
}

func (t *txn) AddVersion(env, name string, nv rekey.NewVersion) (rekey.Version, error) {
	if !t.rw {
		return rekey.Version{}, errors.New("add version: read-only transaction")
	}
	id, err := t.secretID(env, name, true)
	if err != nil {
		return rekey.Version{}, err
	}
	var last int
	if err := t.tx.QueryRow(`SELECT MAX(last_n, COALESCE((SELECT MAX(n) FROM version WHERE secret_id = ?), 0)) FROM secret WHERE id = ?`, id, id).Scan(&last); err != nil {
		return rekey.Version{}, err
	}
	n := last + 1
	if _, err := t.tx.Exec(`UPDATE secret SET last_n = ? WHERE id = ?`, n, id); err != nil {
		return rekey.Version{}, err
	}
	created := nv.CreatedAt
	if created.IsZero() {
		created = t.s.Now()
	}
	v := rekey.Version{Env: env, Name: name, N: n, CreatedAt: created.UTC(), Fingerprint: t.s.Fingerprint(nv.Value), Source: nv.Source, RotationID: nv.RotationID, Note: nv.Note, Attrs: maps.Clone(nv.Attrs)}
	attrs := ""
	if len(nv.Attrs) > 0 {
		b, err := json.Marshal(nv.Attrs)
		if err != nil {
			return v, err
		}
		attrs = string(b)
	}
	if nv.Label != rekey.LabelNone {
		if _, err := t.tx.Exec(`UPDATE version SET label = NULL WHERE secret_id = ? AND label = ?`, id, string(nv.Label)); err != nil {
			return v, err
		}
		v.Label = nv.Label
	}
	var label any
	if v.Label != rekey.LabelNone {
		label = string(v.Label)
	}
	packed := packValue(nv.Value.Reveal())
	sealed := t.s.sealer.Seal(packed, valueAD(env, name, n))
	seal.Wipe(packed)
	_, err = t.tx.Exec(`INSERT INTO version(secret_id, n, label, created_at, fingerprint, source, rotation_id, note, attrs, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, n, label, v.CreatedAt.UnixNano(), packFP(v.Fingerprint), packSource(v.Source), packRotationID(v.RotationID), v.Note, attrs, sealed)
	return v, err
}

func (t *txn) SetLabel(env, name string, n int, l rekey.Label) error {
	if !t.rw {
		return errors.New("set label: read-only transaction")
	}
	if l == rekey.LabelNone {
		return errors.New("set label: empty label")
	}
	id, err := t.secretID(env, name, false)
	if err != nil {
		return err
	}
	if n != 0 {
		var one int
		if err := t.tx.QueryRow(`SELECT 1 FROM version WHERE secret_id = ? AND n = ?`, id, n).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("%s/%s has no version %d", env, name, n)
			}
			return err
		}
	}
	if _, err := t.tx.Exec(`UPDATE version SET label = NULL WHERE secret_id = ? AND label = ?`, id, string(l)); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	_, err = t.tx.Exec(`UPDATE version SET label = ? WHERE secret_id = ? AND n = ?`, string(l), id, n)
	return err
}

func (t *txn) SetAttrs(env, name string, n int, attrs map[string]string) error {
	if !t.rw {
		return errors.New("set attributes: read-only transaction")
	}
	id, err := t.secretID(env, name, false)
	if err != nil {
		return err
	}
	enc := ""
	if len(attrs) > 0 {
		b, err := json.Marshal(attrs)
		if err != nil {
			return err
		}
		enc = string(b)
	}
	res, err := t.tx.Exec(`UPDATE version SET attrs = ? WHERE secret_id = ? AND n = ?`, enc, id, n)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return notFound("%s/%s has no version %d", env, name, n)
	}
	return nil
}

func (t *txn) Prune(env, name string, keep int) (int, error) {
	if !t.rw {
		return 0, errors.New("prune: read-only transaction")
	}
	id, err := t.secretID(env, name, false)
	if err != nil {
		return 0, err
	}
	res, err := t.tx.Exec(`DELETE FROM version WHERE secret_id = ? AND label IS NULL AND n NOT IN (
		SELECT n FROM version WHERE secret_id = ? AND label IS NULL ORDER BY n DESC LIMIT ?)`, id, id, keep)
	if err != nil {
		return 0, err
	}
	k, err := res.RowsAffected()
	return int(k), err
}

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
	_, err = t.tx.Exec(`INSERT INTO rotation(id, env, mode, state, actor, started, ended, secrets, steps, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET env = excluded.env, mode = excluded.mode, actor = excluded.actor, started = excluded.started, state = excluded.state, ended = excluded.ended, secrets = excluded.secrets, steps = excluded.steps, error = excluded.error`,
		r.ID, r.Env, string(r.Mode), string(r.State), r.Actor, r.Started.UnixNano(), ended, string(secrets), string(steps), r.Error)
	return err
}

func (t *txn) PruneRotations(env string, keep int) (int, error) {
	if !t.rw {
		return 0, errors.New("prune rotations: read-only transaction")
	}
	res, err := t.tx.Exec(`DELETE FROM rotation WHERE env = ? AND state != 'running' AND id NOT IN (
		SELECT id FROM rotation WHERE env = ? AND state != 'running' ORDER BY started DESC, id DESC LIMIT ?)`, env, env, keep)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

const rotationCols = `id, env, mode, state, actor, started, ended, secrets, steps, error`

func scanRotation(sc interface{ Scan(...any) error }) (*rekey.Rotation, error) {
	r := &rekey.Rotation{}
	var started, ended int64
	var secrets, steps string
	if err := sc.Scan(&r.ID, &r.Env, &r.Mode, &r.State, &r.Actor, &started, &ended, &secrets, &steps, &r.Error); err != nil {
		return nil, err
	}
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
	r, err := scanRotation(t.tx.QueryRow(`SELECT `+rotationCols+` FROM rotation WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("no rotation %s", id)
	}
	return r, err
}

func (t *txn) Rotations(env string, unfinished bool) ([]*rekey.Rotation, error) {
	q := `SELECT ` + rotationCols + ` FROM rotation WHERE (? = '' OR env = ?)`
	if unfinished {
		q += ` AND state = 'running'`
	}
	rows, err := t.tx.Query(q+` ORDER BY started DESC, id DESC`, env, env)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*rekey.Rotation
	for rows.Next() {
		r, err := scanRotation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
