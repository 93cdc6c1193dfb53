package sqlite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/rekeyhq/rekey"
)

// Every row that steers what rekey does is authenticated, not only the
// sealed values (format 3):
//
//   - a secret row (the secret's "head") holds everything about the secret
//     that changes: the highest version number given, which version holds
//     each label, the set of version numbers that exist, and the versions'
//     attributes (alternating role, grace deadline, re-encryption marks). Its
//     MAC binds its id, environment and name.
//   - a version row never changes once written; its MAC binds environment,
//     secret and number to its metadata (the sealed value's AEAD binds the
//     same three). A
//     version row that exists but is not in its head's set, or the reverse,
//     was inserted or deleted outside rekey.
//   - a rotation row (the journal) has a MAC over every column.
//   - an incident row and an outbox row have a MAC over their id and every
//     column (tx_incidents.go, tx_outbox.go); they are not in the manifest,
//     so their deletion or replay is not detected (SECURITY.md).
//   - the manifest (a meta row) lists every secret row and rotation row with
//     the first manifestTag bytes of its MAC, and the audit log's head (last
//     sequence number and hash). The state MAC (another meta row) covers the
//     manifest and every other meta row.
//
// Every transaction first recomputes the manifest from the rows and checks
// it, and the state MAC, before fn sees anything; a write transaction
// writes both anew before it commits. Inserting, editing, deleting,
// swapping between secrets or environments, or replaying an older copy of
// any row is refused with rekey.CodeAuth and the row named, before anything
// acts on it. Rolling the whole file back to an older copy is consistent
// inside the file: the anchor outside it (anchor.go) catches that.
//
// The MAC key is derived from the audit key, which is sealed under the
// master key (so it survives `rekey master rotate`).

const manifestTag = 16

// deriveKey derives a key for one purpose from the audit key.
func deriveKey(auditKey []byte, label string) []byte {
	m := hmac.New(sha256.New, auditKey)
	m.Write([]byte("rekey-store-" + label + "-key-v1"))
	return m.Sum(nil)
}

// newMAC starts an HMAC-SHA256 over length-prefixed fields, under the row key.
func (s *DB) newMAC(kind string) (*macWriter, error) {
	if s.rowKey == nil {
		return nil, errors.New("store not open")
	}
	// Keyed HMAC states are reused: a status of a thousand secrets
	// authenticates thousands of rows.
	m, ok := s.macs.Get().(hash.Hash)
	if !ok {
		m = hmac.New(sha256.New, s.rowKey)
	}
	m.Reset()
	w := &macWriter{m: m, pool: &s.macs}
	w.str("rekey-row-v1")
	w.str(kind)
	return w, nil
}

type macWriter struct {
	m    hash.Hash
	pool *sync.Pool // where m goes back after rowSum (nil: not pooled)
	buf  [binary.MaxVarintLen64]byte
}

func (w *macWriter) bytes(p []byte) *macWriter {
	n := binary.PutUvarint(w.buf[:], uint64(len(p)))
	w.m.Write(w.buf[:n])
	w.m.Write(p)
	return w
}

func (w *macWriter) str(p string) *macWriter { return w.bytes([]byte(p)) }

func (w *macWriter) int(i int64) *macWriter { return w.str(strconv.FormatInt(i, 10)) }

func (w *macWriter) sum() []byte { return w.m.Sum(nil) }

// rowMACSize is the length of a row's MAC: HMAC-SHA256 truncated to 128
// bits (as AES-GCM's tag), which keeps 100,000 version rows 1.6 MB smaller.
const rowMACSize = 16

func (w *macWriter) rowSum() []byte {
	sum := w.m.Sum(nil)[:rowMACSize]
	if w.pool != nil {
		w.pool.Put(w.m)
		w.pool, w.m = nil, nil
	}
	return sum
}

// head is a secret row: the mutable state of one secret.
type head struct {
	id     int64
	env    string
	name   string
	lastN  int
	labels [3]int   // current, pending, previous; 0 = none
	vset   []vrange // existing version numbers, as ascending ranges
	attrs  map[int]map[string]string
	mac    []byte
}

var labelIndex = map[rekey.Label]int{rekey.LabelCurrent: 0, rekey.LabelPending: 1, rekey.LabelPrevious: 2}
var labelCols = [3]string{"cur", "pend", "prev"}
var labelOf = [3]rekey.Label{rekey.LabelCurrent, rekey.LabelPending, rekey.LabelPrevious}

// label is the label version n holds (LabelNone if none).
func (h *head) label(n int) rekey.Label {
	for i, x := range h.labels {
		if x == n && n != 0 {
			return labelOf[i]
		}
	}
	return rekey.LabelNone
}

// vrange is the versions lo to hi, inclusive.
type vrange struct{ lo, hi int }

func (h *head) has(n int) bool {
	i := sort.Search(len(h.vset), func(i int) bool { return h.vset[i].hi >= n })
	return i < len(h.vset) && h.vset[i].lo <= n
}

// list is every existing version number, ascending.
func (h *head) list() []int {
	var out []int
	for _, r := range h.vset {
		for n := r.lo; n <= r.hi; n++ {
			out = append(out, n)
		}
	}
	return out
}

// rangesOf turns ascending version numbers into ranges.
func rangesOf(ns []int) []vrange {
	var out []vrange
	for _, n := range ns {
		if k := len(out); k > 0 && out[k-1].hi+1 == n {
			out[k-1].hi = n
			continue
		}
		out = append(out, vrange{n, n})
	}
	return out
}

func (h *head) what() string { return fmt.Sprintf("secret %s/%s", h.env, h.name) }

// encodeVset writes version ranges: "1-3,5".
func encodeVset(rs []vrange) string {
	var b strings.Builder
	for _, r := range rs {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(r.lo))
		if r.hi > r.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(r.hi))
		}
	}
	return b.String()
}

var errVset = errors.New("malformed version set")

// decodeVset reverses encodeVset, accepting only its canonical output:
// decimal numbers without leading zeros, ascending ranges that do not touch.
func decodeVset(s string) ([]vrange, error) {
	if s == "" {
		return nil, nil
	}
	var out []vrange
	num := func(p string) (int, bool) {
		if p == "" || p[0] == '0' || len(p) > 9 {
			return 0, false
		}
		n := 0
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return 0, false
			}
			n = n*10 + int(p[i]-'0')
		}
		return n, true
	}
	for part := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, ok := num(a)
		if !ok {
			return nil, errVset
		}
		hi := lo
		if isRange {
			if hi, ok = num(b); !ok || hi <= lo {
				return nil, errVset
			}
		}
		if len(out) > 0 && lo <= out[len(out)-1].hi+1 {
			return nil, errVset // overlapping, out of order, or mergeable
		}
		out = append(out, vrange{lo, hi})
	}
	return out, nil
}

// encodeAttrs writes the attributes of every version that has any, in a
// canonical length-prefixed form (any byte may stand in a key or value):
// per version, ascending: uvarint n, uvarint count, then each key and value
// as uvarint length and bytes, keys ascending.
func encodeAttrs(a map[int]map[string]string) string {
	ns := make([]int, 0, len(a))
	for n, m := range a {
		if len(m) > 0 {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	var b []byte
	for _, n := range ns {
		keys := make([]string, 0, len(a[n]))
		for k := range a[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = binary.AppendUvarint(b, uint64(n))
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendString(appendString(b, k), a[n][k])
		}
	}
	return string(b)
}

var errAttrs = errors.New("malformed attributes")

// decodeAttrs reverses encodeAttrs, accepting only its canonical output.
func decodeAttrs(s string) (map[int]map[string]string, error) {
	out := map[int]map[string]string{}
	rd := strings.NewReader(s)
	prevN := 0
	for rd.Len() > 0 {
		n, err := binary.ReadUvarint(rd)
		if err != nil || n <= uint64(prevN) || n > 1<<31 {
			return nil, errAttrs
		}
		count, err := binary.ReadUvarint(rd)
		if err != nil || count == 0 || count > uint64(rd.Len()) {
			return nil, errAttrs
		}
		m := make(map[string]string, count)
		prevK := ""
		for i := range count {
			k, ok1 := readString(rd)
			v, ok2 := readString(rd)
			if !ok1 || !ok2 || (i > 0 && k <= prevK) {
				return nil, errAttrs
			}
			m[k], prevK = v, k
		}
		out[int(n)] = m
		prevN = int(n)
	}
	if encodeAttrs(out) != s { // varints in their shortest form only
		return nil, errAttrs
	}
	return out, nil
}

func (s *DB) headMAC(h *head, vset, attrs string) ([]byte, error) {
	w, err := s.newMAC("secret")
	if err != nil {
		return nil, err
	}
	w.int(h.id).str(h.env).str(h.name).int(int64(h.lastN))
	for _, x := range h.labels {
		w.int(int64(x))
	}
	return w.str(vset).str(attrs).rowSum(), nil
}

// versionMAC binds a version row's metadata to its environment, secret and
// number. The sealed value is not in it: its AEAD's associated data binds it
// to the same three, and `rekey master rotate` re-seals it.
func (s *DB) versionMAC(v rekey.Version) ([]byte, error) {
	w, err := s.newMAC("version")
	if err != nil {
		return nil, err
	}
	return w.str(v.Env).str(v.Name).int(int64(v.N)).int(v.CreatedAt.UnixNano()).str(v.Fingerprint).
		str(string(v.Source)).str(v.RotationID).str(v.Note).rowSum(), nil
}

// rotationMAC covers every column of a rotation row as stored.
func (s *DB) rotationMAC(id, env, mode, state, actor string, started, ended int64, secrets, steps, errText string) ([]byte, error) {
	w, err := s.newMAC("rotation")
	if err != nil {
		return nil, err
	}
	return w.str(id).str(env).str(mode).str(state).str(actor).int(started).int(ended).str(secrets).str(steps).str(errText).rowSum(), nil
}

// tampered is the error for a row that fails its authentication.
func tampered(what, how string) error {
	return &rekey.Error{Code: rekey.CodeAuth,
		Msg:  fmt.Sprintf("store was changed outside rekey: %s %s", what, how),
		Hint: "restore .rekey/rekey.db from a backup you trust (then `rekey audit verify`); nothing was acted on",
		Err:  rekey.ErrCorrupt}
}

// manifest is what the state MAC covers besides the meta rows: every secret
// row and rotation row with a tag of its MAC, and the audit head. A
// transaction checks it once (checkState), then checks each row it reads
// against it (a row not listed was inserted, a listed row that is missing
// was deleted, a tag that differs means an edit or an older copy), and a
// write transaction updates it as it writes rows (writeManifest).
type manifest struct {
	secrets   map[string]manEntry // env "\x00" name → the row's id and tag
	rotations map[string]manEntry // rotation id → its environment and tag
	auditSeq  int64
	auditHash []byte
}

type manEntry struct {
	id  int64  // secrets
	env string // rotations
	tag []byte
}

// secret is the entry of a secret (listed is true without a manifest: the
// transactions of Create and the upgrade, which write it).
func (m *manifest) secret(env, name string) (manEntry, bool) {
	if m == nil {
		return manEntry{}, true
	}
	e, ok := m.secrets[headKey(env, name)]
	return e, ok
}

// rotation is the entry of a rotation (as secret).
func (m *manifest) rotation(id string) (manEntry, bool) {
	if m == nil {
		return manEntry{}, true
	}
	e, ok := m.rotations[id]
	return e, ok
}

func newManifest() *manifest {
	return &manifest{secrets: map[string]manEntry{}, rotations: map[string]manEntry{}}
}

func (m *manifest) encode() []byte {
	b := []byte("rekey-manifest-v2")
	keys := make([]string, 0, len(m.secrets))
	for k := range m.secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		e := m.secrets[k]
		b = binary.AppendUvarint(b, uint64(e.id))
		b = appendString(b, k)
		b = append(b, fitTag(e.tag)...)
	}
	keys = keys[:0]
	for k := range m.rotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(appendString(b, k), m.rotations[k].env)
		b = append(b, fitTag(m.rotations[k].tag)...)
	}
	b = binary.AppendUvarint(b, uint64(m.auditSeq))
	b = binary.AppendUvarint(b, uint64(len(m.auditHash)))
	return append(b, m.auditHash...)
}

func decodeManifest(p []byte) (*manifest, error) {
	bad := errors.New("malformed manifest")
	r, ok := bytes.CutPrefix(p, []byte("rekey-manifest-v2"))
	if !ok {
		return nil, bad
	}
	rd := bytes.NewReader(r)
	tag := func() ([]byte, bool) {
		if rd.Len() < manifestTag {
			return nil, false
		}
		t := make([]byte, manifestTag)
		rd.Read(t)
		return t, true
	}
	m := newManifest()
	n, err := binary.ReadUvarint(rd)
	if err != nil || n > uint64(rd.Len()) {
		return nil, bad
	}
	for range n {
		id, err := binary.ReadUvarint(rd)
		k, ok1 := readString(rd)
		t, ok2 := tag()
		if err != nil || !ok1 || !ok2 {
			return nil, bad
		}
		m.secrets[k] = manEntry{id: int64(id), tag: t}
	}
	if n, err = binary.ReadUvarint(rd); err != nil || n > uint64(rd.Len()) {
		return nil, bad
	}
	for range n {
		id, ok1 := readString(rd)
		env, ok2 := readString(rd)
		t, ok3 := tag()
		if !ok1 || !ok2 || !ok3 {
			return nil, bad
		}
		m.rotations[id] = manEntry{env: env, tag: t}
	}
	seq, err := binary.ReadUvarint(rd)
	if err != nil {
		return nil, bad
	}
	l, err := binary.ReadUvarint(rd)
	if err != nil || l != uint64(rd.Len()) {
		return nil, bad
	}
	m.auditSeq = int64(seq)
	m.auditHash = make([]byte, l)
	rd.Read(m.auditHash)
	return m, nil
}

// stateMAC covers the meta rows (other than manifest and state) and the manifest.
func (s *DB) stateMAC(meta map[string][]byte, man []byte) []byte {
	w := &macWriter{m: hmac.New(sha256.New, s.rowKey)}
	w.str("rekey-state-v1")
	keys := make([]string, 0, len(meta))
	for k := range meta {
		if k != "manifest" && k != "state" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	w.int(int64(len(keys)))
	for _, k := range keys {
		w.str(k).bytes(meta[k])
	}
	return w.bytes(man).sum()
}

// queryer is what both *sql.Tx and *sql.DB offer.
type queryer interface {
	Query(string, ...any) (*sql.Rows, error)
	QueryRow(string, ...any) *sql.Row
}

// eachRow runs query and calls fn with each row, in order. It closes the
// rows, and returns the first error of the query, of fn or of the
// iteration. fn only reads: nothing else runs on the connection meanwhile.
func eachRow(q queryer, fn func(*sql.Rows) error, query string, args ...any) error {
	rows, err := q.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func readMeta(q queryer) (map[string][]byte, error) {
	meta := map[string][]byte{}
	err := eachRow(q, func(rows *sql.Rows) error {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		meta[k] = v
		return nil
	}, `SELECT k, v FROM meta`)
	if err != nil {
		return nil, err
	}
	return meta, nil
}

// auditHead is the last audit entry's sequence number and hash (0, nil when empty).
func auditHead(q queryer) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		err = q.QueryRow(`SELECT last, hash FROM audit_block ORDER BY first DESC LIMIT 1`).Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil, nil
		}
	}
	return seq, hash, err
}

// rebuildManifest builds the manifest from the rows as they are (a new
// store, an upgrade): it trusts them.
func rebuildManifest(q queryer) (*manifest, error) {
	m := newManifest()
	err := eachRow(q, func(rows *sql.Rows) error {
		var e manEntry
		var env, name string
		if err := rows.Scan(&e.id, &env, &name, &e.tag); err != nil {
			return err
		}
		m.secrets[headKey(env, name)] = e
		return nil
	}, `SELECT id, env, name, mac FROM secret`)
	if err != nil {
		return nil, err
	}
	err = eachRow(q, func(rows *sql.Rows) error {
		var id string
		var e manEntry
		if err := rows.Scan(&id, &e.env, &e.tag); err != nil {
			return err
		}
		m.rotations[id] = e
		return nil
	}, `SELECT id, env, mac FROM rotation`)
	if err != nil {
		return nil, err
	}
	m.auditSeq, m.auditHash, err = auditHead(q)
	return m, err
}

// fitTag is the first manifestTag bytes of a MAC (zero-padded if shorter:
// a damaged MAC then simply does not match).
func fitTag(mac []byte) []byte {
	t := make([]byte, manifestTag)
	copy(t, mac)
	return t
}

// checkState verifies the state MAC over the meta rows and the manifest,
// and the audit head against the manifest, and returns the manifest the
// transaction checks every row it reads against. It notes the audit head
// (for the anchor).
func (s *DB) checkState(q *sql.Tx) (*manifest, error) {
	meta, err := readMeta(q)
	if err != nil {
		return nil, err
	}
	if string(meta["format"]) != formatVersion {
		return nil, corrupt("format " + strconv.Quote(string(meta["format"])) + " in a format " + formatVersion + " store")
	}
	if !hmac.Equal(meta["state"], s.stateMAC(meta, meta["manifest"])) {
		return nil, tampered("the metadata (meta table)", "fails its authentication: a meta row was edited, added or removed")
	}
	want, err := decodeManifest(meta["manifest"])
	if err != nil {
		return nil, tampered("the manifest", "is malformed")
	}
	seq, hash, err := auditHead(q)
	if err != nil {
		return nil, err
	}
	if seq != want.auditSeq || !bytes.Equal(hash, want.auditHash) {
		// Name the first broken entry when the chain itself is broken.
		if err := (&txn{s: s, tx: q}).walkAudit(true, func(rekey.AuditEntry) error { return nil }); err != nil {
			return nil, err
		}
	}
	switch {
	case seq < want.auditSeq:
		return nil, tampered("the audit log", fmt.Sprintf("ends at entry %d, but its authenticated head is entry %d: entries were deleted", seq, want.auditSeq))
	case seq > want.auditSeq:
		return nil, tampered("the audit log", fmt.Sprintf("has entry %d and later after its authenticated head (entry %d): entries were added", want.auditSeq+1, want.auditSeq))
	case !bytes.Equal(hash, want.auditHash):
		return nil, tampered(fmt.Sprintf("audit entry %d", seq), "was replaced (its hash is not the authenticated head's)")
	}
	s.headSeq, s.headHash = seq, hash
	return want, nil
}

// writeManifest writes the manifest and the state MAC over it and the meta
// rows. Callers hold the write transaction that made the rows.
func (s *DB) writeManifest(tx *sql.Tx, m *manifest) error {
	man := m.encode()
	if _, err := tx.Exec(`INSERT INTO meta(k, v) VALUES ('manifest', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, man); err != nil {
		return err
	}
	meta, err := readMeta(tx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(`INSERT INTO meta(k, v) VALUES ('state', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, s.stateMAC(meta, man))
	return err
}

// writeState rebuilds the manifest from the rows and writes it (Create, the
// upgrade): it trusts the rows.
func (s *DB) writeState(tx *sql.Tx) (*manifest, error) {
	m, err := rebuildManifest(tx)
	if err != nil {
		return nil, err
	}
	return m, s.writeManifest(tx, m)
}
