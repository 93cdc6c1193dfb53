package sqlite

import (
	"bytes"
	"crypto/hmac"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rekeyhq/rekey"
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
		if err := eachRow(t.tx, func(rows *sql.Rows) error {
			_, err := t.scanHead(rows)
			return err
		}, `SELECT `+headCols+` FROM secret WHERE env = ?`, env); err != nil {
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
	var out []string
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}, `SELECT DISTINCT env FROM secret ORDER BY env`); err != nil {
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
