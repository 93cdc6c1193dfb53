package sqlite

import (
	"bytes"
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
)

// txn is one transaction. Every row it reads is authenticated (auth.go)
// before it is returned; heads are verified once per transaction and cached.
type txn struct {
	s     *DB
	tx    *sql.Tx
	rw    bool
	heads map[string]*head // env "\x00" name → verified head (nil: no such secret)
	// envHeads: every head of the environment is in heads.
	envHeads map[string]bool
	stmts    map[string]*sql.Stmt
	dirty    bool
	// man is the authenticated manifest (checkState), kept up to date as
	// this transaction writes rows.
	man *manifest
	// sealed holds the sealed values of the versions this transaction has
	// read and authenticated, so Value need not read them again.
	sealed map[verKey][]byte
}

type verKey struct {
	id int64
	n  int
}

// badScan turns a column that does not scan (a NULL, a number where text
// belongs, an unknown source code) into the refusal of a tampered row;
// sql.ErrNoRows and I/O errors pass through.
func badScan(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) || !strings.Contains(err.Error(), "sql: Scan error") {
		return err
	}
	return tampered(what, "holds a value of the wrong type (edited outside rekey)")
}

func notFound(format string, args ...any) error {
	return &rekey.Error{Code: rekey.CodeNotFound, Msg: fmt.Sprintf(format, args...), Err: rekey.ErrNotFound}
}

// stmt prepares q once per transaction (the transaction closes it).
func (t *txn) stmt(q string) (*sql.Stmt, error) {
	if st, ok := t.stmts[q]; ok {
		return st, nil
	}
	st, err := t.tx.Prepare(q)
	if err != nil {
		return nil, err
	}
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[q] = st
	return st, nil
}

const headCols = `id, env, name, last_n, cur, pend, prev, vset, attrs, mac`

// scanHead reads and authenticates a secret row.
func (t *txn) scanHead(sc interface{ Scan(...any) error }) (*head, error) {
	h := &head{}
	var vset, attrs string
	if err := sc.Scan(&h.id, &h.env, &h.name, &h.lastN, &h.labels[0], &h.labels[1], &h.labels[2], &vset, &attrs, &h.mac); err != nil {
		return nil, badScan(err, "a secret row")
	}
	return t.checkHead(h, vset, attrs)
}

// checkHead authenticates a head read with its version list and attributes
// as stored, and caches it.
func (t *txn) checkHead(h *head, vset, attrs string) (*head, error) {
	want, err := t.s.headMAC(h, vset, attrs)
	if err != nil {
		return nil, err
	}
	e, listed := t.man.secret(h.env, h.name)
	switch {
	case !listed:
		return nil, tampered(h.what(), "was inserted (it is not in the store's authenticated manifest)")
	case !hmac.Equal(want, h.mac):
		return nil, tampered(h.what(), "fails its authentication (its labels, version list or attributes were edited)")
	case e.tag != nil && (e.id != h.id || !bytes.Equal(e.tag, fitTag(h.mac))):
		return nil, tampered(h.what(), "was replaced by an older copy or another row (its MAC is not the authenticated one)")
	}
	if h.vset, err = decodeVset(vset); err != nil {
		return nil, tampered(h.what(), "has a malformed version list")
	}
	if h.attrs, err = decodeAttrs(attrs); err != nil {
		return nil, tampered(h.what(), "has malformed attributes")
	}
	for _, n := range h.labels {
		if n != 0 && !h.has(n) {
			return nil, tampered(h.what(), fmt.Sprintf("labels version %d, which it does not list", n))
		}
	}
	t.cacheHead(h)
	return h, nil
}

func headKey(env, name string) string { return env + "\x00" + name }

func (t *txn) cacheHead(h *head) {
	if t.heads == nil {
		t.heads = map[string]*head{}
	}
	t.heads[headKey(h.env, h.name)] = h
}

// head returns the verified head of a secret, or nil when there is none.
func (t *txn) head(env, name string) (*head, error) {
	if h, ok := t.heads[headKey(env, name)]; ok {
		return h, nil
	}
	st, err := t.stmt(`SELECT ` + headCols + ` FROM secret WHERE env = ? AND name = ?`)
	if err != nil {
		return nil, err
	}
	h, err := t.scanHead(st.QueryRow(env, name))
	if errors.Is(err, sql.ErrNoRows) {
		if t.man != nil && t.man.secrets[headKey(env, name)].tag != nil {
			return nil, tampered(fmt.Sprintf("secret %s/%s", env, name), "was deleted")
		}
		if t.heads == nil {
			t.heads = map[string]*head{}
		}
		t.heads[headKey(env, name)] = nil
		return nil, nil
	}
	return h, err
}

func (t *txn) mustHead(env, name string) (*head, error) {
	h, err := t.head(env, name)
	if err == nil && h == nil {
		err = notFound("no secret %s in environment %s", name, env)
	}
	return h, err
}

// envHeadList returns every verified head of env, by name.
func (t *txn) envHeadList(env string) ([]*head, error) {
	if !t.envHeads[env] {
		rows, err := t.tx.Query(`SELECT `+headCols+` FROM secret WHERE env = ?`, env)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			if _, err := t.scanHead(rows); err != nil {
				rows.Close()
				return nil, err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if err := t.envRead(env); err != nil {
			return nil, err
		}
	}
	var out []*head
	for _, h := range t.heads {
		if h != nil && h.env == env {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// verifyRows authenticates every secret head and every rotation row: what
// Open checks, so that a command refuses a tampered store even when it
// would not have read the changed row.
func (t *txn) verifyRows() error {
	// Journals first: a planted journal is what would act.
	if _, err := t.rotations(""); err != nil {
		return err
	}
	envs, err := t.Environments()
	if err != nil {
		return err
	}
	for _, env := range envs {
		if _, err := t.envHeadList(env); err != nil {
			return err
		}
	}
	return nil
}

// envRead notes that every head of env is cached, after checking that none
// the manifest lists is missing.
func (t *txn) envRead(env string) error {
	if err := t.checkEnvComplete(env); err != nil {
		return err
	}
	if t.envHeads == nil {
		t.envHeads = map[string]bool{}
	}
	t.envHeads[env] = true
	return nil
}

// checkEnvComplete refuses when the manifest lists a secret of env that was
// not read (its row was deleted). Callers have read every row of env.
func (t *txn) checkEnvComplete(env string) error {
	if t.man == nil {
		return nil
	}
	for k := range t.man.secrets {
		e, name, _ := strings.Cut(k, "\x00")
		if e != env {
			continue
		}
		if h, ok := t.heads[k]; !ok || h == nil {
			return tampered(fmt.Sprintf("secret %s/%s", env, name), "was deleted")
		}
	}
	return nil
}

// saveHead writes a head with its new MAC (inserting it when new).
func (t *txn) saveHead(h *head) error {
	t.dirty = true
	if h.id == 0 {
		res, err := t.tx.Exec(`INSERT INTO secret(env, name, mac) VALUES (?, ?, x'')`, h.env, h.name)
		if err != nil {
			return err
		}
		if h.id, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	vset, attrs := encodeVset(h.vset), encodeAttrs(h.attrs)
	m, err := t.s.headMAC(h, vset, attrs)
	if err != nil {
		return err
	}
	h.mac = m
	_, err = t.tx.Exec(`UPDATE secret SET last_n = ?, cur = ?, pend = ?, prev = ?, vset = ?, attrs = ?, mac = ? WHERE id = ?`,
		h.lastN, h.labels[0], h.labels[1], h.labels[2], vset, attrs, m, h.id)
	if err == nil {
		t.cacheHead(h)
		if t.man != nil {
			t.man.secrets[headKey(h.env, h.name)] = manEntry{id: h.id, tag: fitTag(m)}
		}
	}
	return err
}

func (t *txn) Environments() ([]string, error) {
	// The environment and name of every secret row are in the manifest
	// checked when the transaction began.
	rows, err := t.tx.Query(`SELECT DISTINCT env FROM secret ORDER BY env`)
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
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if t.man != nil {
		listed := map[string]bool{}
		for k := range t.man.secrets {
			e, _, _ := strings.Cut(k, "\x00")
			listed[e] = true
		}
		for _, e := range out {
			if !listed[e] {
				return nil, tampered("the secrets of environment "+e, "were inserted (not in the store's authenticated manifest)")
			}
			delete(listed, e)
		}
		for e := range listed {
			return nil, tampered("the secrets of environment "+e, "were deleted")
		}
	}
	return out, nil
}

func (t *txn) Names(env string) ([]string, error) {
	hs, err := t.envHeadList(env)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hs {
		if len(h.vset) > 0 { // it has versions
			out = append(out, h.name)
		}
	}
	return out, nil
}

const versionCols = `n, created_at, fingerprint, source, rotation_id, note, sealed, mac`

// scanVersion reads a version row of h and authenticates it, with its sealed value.
func (t *txn) scanVersion(sc interface{ Scan(...any) error }, h *head) (rekey.Version, []byte, error) {
	var v rekey.Version
	var created int64
	var sealed, m []byte
	if err := sc.Scan(&v.N, &created, fpCol{&v.Fingerprint}, sourceCol{&v.Source}, rotIDCol{&v.RotationID}, &v.Note, &sealed, &m); err != nil {
		return v, nil, badScan(err, "a version row of "+h.env+"/"+h.name)
	}
	v.CreatedAt = time.Unix(0, created).UTC()
	return t.checkVersion(h, v, sealed, m)
}

// checkVersion authenticates a version row read for h and completes it
// with what h holds (label, attributes).
func (t *txn) checkVersion(h *head, v rekey.Version, sealed, m []byte) (rekey.Version, []byte, error) {
	v.Env, v.Name = h.env, h.name
	want, err := t.s.versionMAC(v)
	if err != nil {
		return v, nil, err
	}
	what := fmt.Sprintf("version %s/%s v%d", h.env, h.name, v.N)
	if !hmac.Equal(want, m) {
		return v, nil, tampered(what, "fails its authentication (edited, or moved from another secret or environment)")
	}
	if !h.has(v.N) {
		return v, nil, tampered(what, "was inserted (its secret does not list it)")
	}
	v.Label = h.label(v.N)
	if a := h.attrs[v.N]; len(a) > 0 {
		v.Attrs = maps.Clone(a)
	}
	if t.sealed == nil {
		t.sealed = map[verKey][]byte{}
	}
	t.sealed[verKey{h.id, v.N}] = sealed
	return v, sealed, nil
}

// version reads version n of h (which must list it).
func (t *txn) version(h *head, n int) (rekey.Version, []byte, error) {
	if !h.has(n) {
		return rekey.Version{}, nil, notFound("%s/%s has no version %d", h.env, h.name, n)
	}
	st, err := t.stmt(`SELECT ` + versionCols + ` FROM version WHERE secret_id = ? AND n = ?`)
	if err != nil {
		return rekey.Version{}, nil, err
	}
	v, sealed, err := t.scanVersion(st.QueryRow(h.id, n), h)
	if errors.Is(err, sql.ErrNoRows) {
		return v, nil, tampered(fmt.Sprintf("version %s/%s v%d", h.env, h.name, n), "was deleted (its secret lists it)")
	}
	return v, sealed, err
}

func (t *txn) Versions(env, name string) ([]rekey.Version, error) {
	h, err := t.mustHead(env, name)
	if err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(`SELECT `+versionCols+` FROM version WHERE secret_id = ? ORDER BY n`, h.id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rekey.Version
	for rows.Next() {
		v, _, err := t.scanVersion(rows, h)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if all := h.list(); len(out) != len(all) {
		for i, n := range all {
			if i >= len(out) || out[i].N != n {
				return nil, tampered(fmt.Sprintf("version %s/%s v%d", env, name, n), "was deleted (its secret lists it)")
			}
		}
	}
	return out, nil
}

func (t *txn) Labeled(env, name string, l rekey.Label) (rekey.Version, error) {
	h, err := t.mustHead(env, name)
	if err != nil {
		return rekey.Version{}, err
	}
	i, ok := labelIndex[l]
	if !ok || h.labels[i] == 0 {
		return rekey.Version{}, notFound("%s/%s has no %s version", env, name, l)
	}
	v, _, err := t.version(h, h.labels[i])
	return v, err
}

func (t *txn) AllLabeled(env string, l rekey.Label) (map[string]rekey.Version, error) {
	i, ok := labelIndex[l]
	if !ok {
		return map[string]rekey.Version{}, nil
	}
	// One query: every head of the environment with its labeled version
	// (status reads this for a thousand secrets); each head and version is
	// authenticated as it comes.
	rows, err := t.tx.Query(`SELECT s.id, s.env, s.name, s.last_n, s.cur, s.pend, s.prev, s.vset, s.attrs, s.mac,
		v.n, v.created_at, v.fingerprint, v.source, v.rotation_id, v.note, v.sealed, v.mac
		FROM secret s LEFT JOIN version v ON v.secret_id = s.id AND v.n = s.`+labelCols[i]+` WHERE s.env = ?`, env)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]rekey.Version{}
	for rows.Next() {
		h := &head{}
		var vset, attrs string
		var n, created sql.NullInt64
		var fp, source, rotID any
		var note sql.NullString
		var sealed, m []byte
		if err := rows.Scan(&h.id, &h.env, &h.name, &h.lastN, &h.labels[0], &h.labels[1], &h.labels[2], &vset, &attrs, &h.mac,
			&n, &created, &fp, &source, &rotID, &note, &sealed, &m); err != nil {
			return nil, badScan(err, "a secret row of "+env)
		}
		h, err := t.checkHead(h, vset, attrs)
		if err != nil {
			return nil, err
		}
		if h.labels[i] == 0 {
			continue
		}
		what := fmt.Sprintf("version %s/%s v%d", h.env, h.name, h.labels[i])
		if !n.Valid {
			return nil, tampered(what, "was deleted (its secret labels it "+string(l)+")")
		}
		v := rekey.Version{N: int(n.Int64), CreatedAt: time.Unix(0, created.Int64).UTC(), Note: note.String}
		if err := errors.Join(fpCol{&v.Fingerprint}.Scan(fp), sourceCol{&v.Source}.Scan(source), rotIDCol{&v.RotationID}.Scan(rotID)); err != nil || !created.Valid || !note.Valid {
			return nil, tampered(what, "holds a value of the wrong type (edited outside rekey)")
		}
		if v, _, err = t.checkVersion(h, v, sealed, m); err != nil {
			return nil, err
		}
		out[h.name] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, t.envRead(env)
}

func (t *txn) Value(env, name string, n int) (rekey.Value, error) {
	h, err := t.mustHead(env, name)
	if err != nil {
		return rekey.Value{}, err
	}
	sealed, ok := t.sealed[verKey{h.id, n}]
	if !ok || !h.has(n) {
		if _, sealed, err = t.version(h, n); err != nil {
			return rekey.Value{}, err
		}
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
	h, err := t.head(env, name)
	if err != nil {
		return rekey.Version{}, err
	}
	if h == nil {
		h = &head{env: env, name: name, attrs: map[int]map[string]string{}}
	}
	n := h.lastN + 1
	created := nv.CreatedAt
	if created.IsZero() {
		created = t.s.Now()
	}
	v := rekey.Version{Env: env, Name: name, N: n, CreatedAt: time.Unix(0, created.UnixNano()).UTC(), Fingerprint: t.s.Fingerprint(nv.Value), Source: nv.Source, RotationID: nv.RotationID, Note: nv.Note, Attrs: maps.Clone(nv.Attrs)}
	if len(v.Attrs) == 0 {
		v.Attrs = nil
	}
	packed := packValue(nv.Value.Reveal())
	sealed := t.s.sealer.Seal(packed, valueAD(env, name, n))
	seal.Wipe(packed)
	m, err := t.s.versionMAC(v)
	if err != nil {
		return v, err
	}
	// Every version number above lastN is unused: a row there was planted.
	if h.id != 0 {
		var planted int
		if err := t.tx.QueryRow(`SELECT COUNT(*) FROM version WHERE secret_id = ? AND n > ?`, h.id, h.lastN).Scan(&planted); err != nil {
			return v, err
		}
		if planted > 0 {
			return v, tampered(h.what(), "has version rows above its highest authenticated version number (inserted)")
		}
	}
	nh := *h
	nh.lastN = n
	nh.vset = rangesOf(append(h.list(), n))
	nh.attrs = maps.Clone(h.attrs)
	if len(nv.Attrs) > 0 {
		nh.attrs[n] = maps.Clone(nv.Attrs)
	}
	if nv.Label != rekey.LabelNone {
		i, ok := labelIndex[nv.Label]
		if !ok {
			return v, fmt.Errorf("add version: unknown label %q", nv.Label)
		}
		nh.labels[i] = n
		v.Label = nv.Label
	}
	if err := t.saveHead(&nh); err != nil {
		return v, err
	}
	_, err = t.tx.Exec(`INSERT INTO version(secret_id, n, created_at, fingerprint, source, rotation_id, note, sealed, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		nh.id, n, v.CreatedAt.UnixNano(), packFP(v.Fingerprint), packSource(v.Source), packRotationID(v.RotationID), v.Note, sealed, m)
	return v, err
}

func (t *txn) SetLabel(env, name string, n int, l rekey.Label) error {
	if !t.rw {
		return errors.New("set label: read-only transaction")
	}
	i, ok := labelIndex[l]
	if !ok {
		return fmt.Errorf("set label: unknown label %q", l)
	}
	h, err := t.mustHead(env, name)
	if err != nil {
		return err
	}
	if n != 0 && !h.has(n) {
		return notFound("%s/%s has no version %d", env, name, n)
	}
	nh := *h
	for j, x := range nh.labels {
		if x == n && n != 0 {
			nh.labels[j] = 0 // a version holds one label at a time
		}
	}
	nh.labels[i] = n
	return t.saveHead(&nh)
}

func (t *txn) SetAttrs(env, name string, n int, attrs map[string]string) error {
	if !t.rw {
		return errors.New("set attributes: read-only transaction")
	}
	h, err := t.mustHead(env, name)
	if err != nil {
		return err
	}
	if !h.has(n) {
		return notFound("%s/%s has no version %d", env, name, n)
	}
	nh := *h
	nh.attrs = maps.Clone(h.attrs)
	if len(attrs) == 0 {
		delete(nh.attrs, n)
	} else {
		nh.attrs[n] = maps.Clone(attrs)
	}
	return t.saveHead(&nh)
}

func (t *txn) Prune(env, name string, keep int) (int, error) {
	if !t.rw {
		return 0, errors.New("prune: read-only transaction")
	}
	h, err := t.mustHead(env, name)
	if err != nil {
		return 0, err
	}
	// Labeled versions stay, and so do exposed ones: their fingerprints are
	// how a leaked value is recognised if someone tries to publish it again.
	var unlabeled []int
	for _, n := range h.list() {
		if h.label(n) == rekey.LabelNone && h.attrs[n][rekey.AttrExposed] == "" {
			unlabeled = append(unlabeled, n)
		}
	}
	if keep < 0 {
		keep = 0
	}
	if len(unlabeled) <= keep {
		return 0, nil
	}
	drop := unlabeled[:len(unlabeled)-keep]
	nh := *h
	nh.attrs = maps.Clone(h.attrs)
	var kept []int
	for _, n := range h.list() {
		if _, gone := slices.BinarySearch(drop, n); !gone {
			kept = append(kept, n)
		}
	}
	nh.vset = rangesOf(kept)
	for _, n := range drop {
		delete(nh.attrs, n)
		if _, err := t.tx.Exec(`DELETE FROM version WHERE secret_id = ? AND n = ?`, h.id, n); err != nil {
			return 0, err
		}
	}
	return len(drop), t.saveHead(&nh)
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
	rows, err := t.tx.Query(`SELECT `+rotationCols+` FROM rotation WHERE (? = '' OR env = ?) ORDER BY started DESC, id DESC`, env, env)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*rekey.Rotation
	seen := map[string]bool{}
	for rows.Next() {
		r, err := t.scanRotation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		seen[r.ID] = true
	}
	if err := rows.Err(); err != nil {
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
