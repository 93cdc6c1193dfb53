package sqlite

// This file holds the versions of a transaction: reading them (each row
// authenticated against its head), adding, labeling and pruning them.

import (
	"crypto/hmac"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
)

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
	var out []rekey.Version
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		v, _, err := t.scanVersion(rows, h)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, `SELECT `+versionCols+` FROM version WHERE secret_id = ? ORDER BY n`, h.id); err != nil {
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
