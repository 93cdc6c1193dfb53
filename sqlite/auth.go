package sqlite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

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
	w := &macWriter{m: hmac.New(sha256.New, s.rowKey)}
	w.str("rekey-row-v1")
	w.str(kind)
	return w, nil
}

type macWriter struct {
	m interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	buf [binary.MaxVarintLen64]byte
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

// head is a secret row: the mutable state of one secret.
type head struct {
	id     int64
	env    string
	name   string
	lastN  int
	labels [3]int // current, pending, previous; 0 = none
	vset   []int  // existing version numbers, ascending
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

func (h *head) has(n int) bool {
	_, ok := slices.BinarySearch(h.vset, n)
	return ok
}

func (h *head) what() string { return fmt.Sprintf("secret %s/%s", h.env, h.name) }

// encodeVset writes ascending version numbers as ranges: "1-3,5".
func encodeVset(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ns[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ns[j]))
		}
		i = j + 1
	}
	return b.String()
}

var errVset = errors.New("malformed version set")

// decodeVset reverses encodeVset, accepting only its canonical output.
func decodeVset(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		if err != nil || lo < 1 {
			return nil, errVset
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil || hi <= lo {
				return nil, errVset
			}
		}
		if len(out) > 0 && lo <= out[len(out)-1] {
			return nil, errVset
		}
		if hi-lo > 1<<20 {
			return nil, errVset
		}
		for n := lo; n <= hi; n++ {
			out = append(out, n)
		}
	}
	if encodeVset(out) != s {
		return nil, errVset
	}
	return out, nil
}

// encodeAttrs writes the attributes of every version that has any, in a
// canonical form: "n\x00k\x00v\x00k\x00v\x01n..." with n ascending and keys sorted.
func encodeAttrs(a map[int]map[string]string) string {
	ns := make([]int, 0, len(a))
	for n, m := range a {
		if len(m) > 0 {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	var b strings.Builder
	for i, n := range ns {
		if i > 0 {
			b.WriteByte(1)
		}
		b.WriteString(strconv.Itoa(n))
		keys := make([]string, 0, len(a[n]))
		for k := range a[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteByte(0)
			b.WriteString(k)
			b.WriteByte(0)
			b.WriteString(a[n][k])
		}
	}
	return b.String()
}

func decodeAttrs(s string) (map[int]map[string]string, error) {
	out := map[int]map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, rec := range strings.Split(s, "\x01") {
		f := strings.Split(rec, "\x00")
		if len(f)%2 != 1 || len(f) < 3 {
			return nil, errors.New("malformed attributes")
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 {
			return nil, errors.New("malformed attributes")
		}
		m := map[string]string{}
		for i := 1; i < len(f); i += 2 {
			m[f[i]] = f[i+1]
		}
		out[n] = m
	}
	if encodeAttrs(out) != s {
		return nil, errors.New("malformed attributes")
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
	return w.str(vset).str(attrs).sum(), nil
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
		str(string(v.Source)).str(v.RotationID).str(v.Note).sum(), nil
}

// rotationMAC covers every column of a rotation row as stored.
func (s *DB) rotationMAC(id, env, mode, state, actor string, started, ended int64, secrets, steps, errText string) ([]byte, error) {
	w, err := s.newMAC("rotation")
	if err != nil {
		return nil, err
	}
	return w.str(id).str(env).str(mode).str(state).str(actor).int(started).int(ended).str(secrets).str(steps).str(errText).sum(), nil
}

// tampered is the error for a row that fails its authentication.
func tampered(what, how string) error {
	return &rekey.Error{Code: rekey.CodeAuth,
		Msg:  fmt.Sprintf("store was changed outside rekey: %s %s", what, how),
		Hint: "restore .rekey/rekey.db from a backup you trust (then `rekey audit verify`); nothing was acted on",
		Err:  rekey.ErrCorrupt}
}

// manifest is what the state MAC covers besides the meta rows: every secret
// row and rotation row with a tag of its MAC, and the audit head.
type manifest struct {
	secrets   []manifestRow
	rotations []manifestRow
	auditSeq  int64
	auditHash []byte
}

type manifestRow struct {
	key string // secret: "id env\x00name"; rotation: id
	tag []byte
}

func (m *manifest) encode() []byte {
	var b []byte
	b = append(b, "rekey-manifest-v1"...)
	for _, list := range [][]manifestRow{m.secrets, m.rotations} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, r := range list {
			b = binary.AppendUvarint(b, uint64(len(r.key)))
			b = append(b, r.key...)
			b = append(b, r.tag...)
		}
	}
	b = binary.AppendUvarint(b, uint64(m.auditSeq))
	b = binary.AppendUvarint(b, uint64(len(m.auditHash)))
	return append(b, m.auditHash...)
}

func decodeManifest(p []byte) (*manifest, error) {
	bad := errors.New("malformed manifest")
	r, ok := bytes.CutPrefix(p, []byte("rekey-manifest-v1"))
	if !ok {
		return nil, bad
	}
	rd := bytes.NewReader(r)
	m := &manifest{}
	for _, list := range []*[]manifestRow{&m.secrets, &m.rotations} {
		n, err := binary.ReadUvarint(rd)
		if err != nil || n > uint64(rd.Len()) {
			return nil, bad
		}
		for range n {
			l, err := binary.ReadUvarint(rd)
			if err != nil || l+manifestTag > uint64(rd.Len()) {
				return nil, bad
			}
			k := make([]byte, l)
			rd.Read(k)
			tag := make([]byte, manifestTag)
			rd.Read(tag)
			*list = append(*list, manifestRow{string(k), tag})
		}
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

func readMeta(q queryer) (map[string][]byte, error) {
	rows, err := q.Query(`SELECT k, v FROM meta`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	meta := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		meta[k] = v
	}
	return meta, rows.Err()
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

// currentManifest builds the manifest from the rows as they are.
func currentManifest(q queryer) (*manifest, error) {
	m := &manifest{}
	rows, err := q.Query(`SELECT id, env, name, mac FROM secret ORDER BY id`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var env, name string
		var tag []byte
		if err := rows.Scan(&id, &env, &name, &tag); err != nil {
			rows.Close()
			return nil, err
		}
		m.secrets = append(m.secrets, manifestRow{strconv.FormatInt(id, 10) + " " + env + "\x00" + name, fitTag(tag)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.Query(`SELECT id, mac FROM rotation ORDER BY id`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var tag []byte
		if err := rows.Scan(&id, &tag); err != nil {
			rows.Close()
			return nil, err
		}
		m.rotations = append(m.rotations, manifestRow{id, fitTag(tag)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
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

// checkState verifies the state MAC and that the rows match the manifest.
// It names the first row that does not. It notes the audit head (for the
// anchor).
func (s *DB) checkState(q *sql.Tx) error {
	meta, err := readMeta(q)
	if err != nil {
		return err
	}
	if string(meta["format"]) != formatVersion {
		return corrupt("format " + strconv.Quote(string(meta["format"])) + " in a format " + formatVersion + " store")
	}
	if !hmac.Equal(meta["state"], s.stateMAC(meta, meta["manifest"])) {
		return tampered("the metadata (meta table)", "fails its authentication: a meta row was edited, added or removed")
	}
	want, err := decodeManifest(meta["manifest"])
	if err != nil {
		return tampered("the manifest", "is malformed")
	}
	got, err := currentManifest(q)
	if err != nil {
		return err
	}
	if err := diffRows("secret", want.secrets, got.secrets, secretKeyName); err != nil {
		return err
	}
	if err := diffRows("rotation", want.rotations, got.rotations, func(k string) string { return k }); err != nil {
		return err
	}
	if got.auditSeq != want.auditSeq || !bytes.Equal(got.auditHash, want.auditHash) {
		// Name the first broken entry when the chain itself is broken.
		if err := (&txn{s: s, tx: q}).walkAudit(true, func(rekey.AuditEntry) error { return nil }); err != nil {
			return err
		}
	}
	switch {
	case got.auditSeq < want.auditSeq:
		return tampered("the audit log", fmt.Sprintf("ends at entry %d, but its authenticated head is entry %d: entries were deleted", got.auditSeq, want.auditSeq))
	case got.auditSeq > want.auditSeq:
		return tampered("the audit log", fmt.Sprintf("has entry %d and later after its authenticated head (entry %d): entries were added", want.auditSeq+1, want.auditSeq))
	case !bytes.Equal(got.auditHash, want.auditHash):
		return tampered(fmt.Sprintf("audit entry %d", got.auditSeq), "was replaced (its hash is not the authenticated head's)")
	}
	s.headSeq, s.headHash = got.auditSeq, got.auditHash
	return nil
}

func secretKeyName(k string) string {
	_, rest, _ := strings.Cut(k, " ")
	env, name, _ := strings.Cut(rest, "\x00")
	return env + "/" + name
}

// diffRows names the first difference between the authenticated list of
// rows and the rows found.
func diffRows(kind string, want, got []manifestRow, name func(string) string) error {
	w := map[string][]byte{}
	for _, r := range want {
		w[r.key] = r.tag
	}
	g := map[string]bool{}
	for _, r := range got {
		g[r.key] = true
		tag, ok := w[r.key]
		switch {
		case !ok:
			return tampered(kind+" "+name(r.key), "was inserted (it is not in the store's authenticated manifest)")
		case !bytes.Equal(tag, r.tag):
			return tampered(kind+" "+name(r.key), "was edited or replaced by an older copy (its MAC is not the authenticated one)")
		}
	}
	for _, r := range want {
		if !g[r.key] {
			return tampered(kind+" "+name(r.key), "was deleted")
		}
	}
	return nil
}

// writeState recomputes the manifest from the rows and writes it with the
// state MAC. Callers hold the write transaction that made the rows.
func (s *DB) writeState(tx *sql.Tx) (*manifest, error) {
	m, err := currentManifest(tx)
	if err != nil {
		return nil, err
	}
	man := m.encode()
	if _, err := tx.Exec(`INSERT INTO meta(k, v) VALUES ('manifest', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, man); err != nil {
		return nil, err
	}
	meta, err := readMeta(tx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(`INSERT INTO meta(k, v) VALUES ('state', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, s.stateMAC(meta, man)); err != nil {
		return nil, err
	}
	return m, nil
}
