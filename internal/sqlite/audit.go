package sqlite

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/rekeyhq/rekey"
)

// The audit log is a hash chain: each entry's hash is an HMAC-SHA256 under
// the store's audit key over the previous entry's hash and the entry's
// fields, so no byte can change, and no entry be removed, reordered or
// inserted, without `rekey audit verify` naming it.
//
// The newest entries are rows of the audit table, with their full hash. Older
// ones are packed, auditBlock at a time, into compressed rows of audit_block:
// each entry keeps the first auditTagSize bytes of its hash (enough to name
// the first changed entry) and the block keeps the full hash of its last
// entry. Verification recomputes every hash from the start, so a change to
// any entry also breaks every later full hash. Packing keeps a store with a
// long history small: an audit row costs about 160 bytes, a packed entry
// about 21.
const (
	auditBlock   = 1024
	auditTagSize = 4
)

// auditHash is HMAC-SHA256 under the store's audit key over the previous hash
// and every field, each length-prefixed, so no byte can change unnoticed and
// no one without the master key can forge a chain.
func (s *DB) auditHash(e rekey.AuditEntry) string {
	m := hmac.New(sha256.New, s.audit)
	var buf [binary.MaxVarintLen64]byte
	put := func(p string) {
		n := binary.PutUvarint(buf[:], uint64(len(p)))
		m.Write(buf[:n])
		m.Write([]byte(p))
	}
	put("rekey-audit-v1")
	put(e.PrevHash)
	put(strconv.FormatInt(e.Seq, 10))
	put(strconv.FormatInt(e.Time.UnixNano(), 10))
	put(e.Actor)
	put(e.Action)
	put(e.Env)
	put(e.Secret)
	put(strconv.Itoa(e.Version))
	put(e.Fingerprint)
	put(e.Outcome)
	put(e.Detail)
	return hex.EncodeToString(m.Sum(nil))
}

// auditSelect reads audit rows with their previous hash, taken from the row
// before (the first row's comes from the last block).
const auditSelect = `SELECT seq, time, actor, action, env, secret, version, fingerprint, outcome, detail, prev, hash FROM
	(SELECT *, LAG(hash, 1, x'') OVER (ORDER BY seq) AS prev FROM audit)`

func scanAudit(sc interface{ Scan(...any) error }) (rekey.AuditEntry, error) {
	var e rekey.AuditEntry
	var tm int64
	var prev, hash []byte
	err := sc.Scan(&e.Seq, &tm, &e.Actor, &e.Action, &e.Env, &e.Secret, &e.Version, &e.Fingerprint, &e.Outcome, &e.Detail, &prev, &hash)
	e.Time = time.Unix(0, tm).UTC()
	e.PrevHash, e.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
	return e, err
}

// lastBlock returns the last packed block's last seq and full hash (0, nil
// when nothing is packed).
func lastBlock(tx *sql.Tx) (int64, []byte, error) {
	var last int64
	var hash []byte
	err := tx.QueryRow(`SELECT last, hash FROM audit_block ORDER BY first DESC LIMIT 1`).Scan(&last, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return last, hash, err
}

func (t *txn) Audit(e rekey.AuditEntry) (rekey.AuditEntry, error) {
	if !t.rw {
		return e, errors.New("audit: read-only transaction")
	}
	t.dirty = true
	var last sql.NullInt64
	var prev []byte
	err := t.tx.QueryRow(`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
	if errors.Is(err, sql.ErrNoRows) {
		var n int64
		n, prev, err = lastBlock(t.tx)
		last = sql.NullInt64{Int64: n, Valid: true}
	}
	if err != nil {
		return e, err
	}
	e.Seq = last.Int64 + 1
	e.PrevHash = hex.EncodeToString(prev)
	if e.Time.IsZero() {
		e.Time = t.s.Now()
	}
	e.Time = time.Unix(0, e.Time.UnixNano()).UTC()
	e.Hash = t.s.auditHash(e)
	hash, _ := hex.DecodeString(e.Hash)
	_, err = t.tx.Exec(`INSERT INTO audit(seq, time, actor, action, env, secret, version, fingerprint, outcome, detail, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.Time.UnixNano(), e.Actor, e.Action, e.Env, e.Secret, e.Version, e.Fingerprint, e.Outcome, e.Detail, hash)
	if err != nil {
		return e, err
	}
	if t.man != nil {
		t.man.auditSeq, t.man.auditHash = e.Seq, hash
	}
	return e, t.packAudit(e.Seq)
}

// packAudit moves the oldest auditBlock rows into a block once twice that
// many are loose, so the newest entries always stay plain rows.
func (t *txn) packAudit(newest int64) error {
	var oldest int64
	if err := t.tx.QueryRow(`SELECT MIN(seq) FROM audit`).Scan(&oldest); err != nil {
		return err
	}
	if newest-oldest+1 < 2*auditBlock {
		return nil
	}
	var es []rekey.AuditEntry
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		e, err := scanAudit(rows)
		if err != nil {
			return err
		}
		es = append(es, e)
		return nil
	}, auditSelect+` WHERE seq BETWEEN ? AND ? ORDER BY seq`, oldest, oldest+auditBlock-1); err != nil {
		return err
	}
	for i, e := range es {
		if e.Seq != oldest+int64(i) {
			// A gap: leave it for `rekey audit verify` to report; never pack over it.
			return nil
		}
	}
	data, err := encodeBlock(es)
	if err != nil {
		return err
	}
	last := es[len(es)-1]
	hash, _ := hex.DecodeString(last.Hash)
	if _, err := t.tx.Exec(`INSERT INTO audit_block(first, last, data, hash, mac) VALUES (?, ?, ?, ?, ?)`, oldest, last.Seq, data, hash, t.s.blockMAC(oldest, last.Seq, data, hash)); err != nil {
		return err
	}
	_, err = t.tx.Exec(`DELETE FROM audit WHERE seq BETWEEN ? AND ?`, oldest, last.Seq)
	return err
}

// blockMAC authenticates a packed block's bytes as stored, so verification
// notices a change even where deflate would ignore it (padding bits).
func (s *DB) blockMAC(first, last int64, data, hash []byte) []byte {
	m := hmac.New(sha256.New, s.audit)
	m.Write([]byte("rekey-audit-block-v1\x00"))
	m.Write(binary.AppendUvarint(binary.AppendUvarint(nil, uint64(first)), uint64(last)))
	m.Write(binary.AppendUvarint(nil, uint64(len(data))))
	m.Write(data)
	m.Write(hash)
	return m.Sum(nil)
}

// encodeBlock writes entries as varints and length-prefixed strings, each
// with its hash tag, deflated.
func encodeBlock(es []rekey.AuditEntry) ([]byte, error) {
	var raw []byte
	raw = binary.AppendUvarint(raw, uint64(len(es)))
	var prevTime int64
	for _, e := range es {
		tm := e.Time.UnixNano()
		raw = binary.AppendVarint(raw, tm-prevTime)
		prevTime = tm
		for _, f := range []string{e.Actor, e.Action, e.Env, e.Secret, e.Fingerprint, e.Outcome, e.Detail} {
			raw = appendString(raw, f)
		}
		raw = binary.AppendUvarint(raw, uint64(e.Version))
		h, err := hex.DecodeString(e.Hash)
		if err != nil || len(h) < auditTagSize {
			return nil, fmt.Errorf("audit entry %d: malformed hash", e.Seq)
		}
		raw = append(raw, h[:auditTagSize]...)
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(raw)
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blockEntry is a decoded packed entry: its fields and its hash tag.
type blockEntry struct {
	e   rekey.AuditEntry
	tag []byte
}

var errBlock = errors.New("malformed audit block")

// decodeBlock reverses encodeBlock; entries are numbered from first.
func decodeBlock(first int64, data []byte) ([]blockEntry, error) {
	br := bytes.NewReader(data) // an io.ByteReader: flate reads no further than its end
	raw, err := io.ReadAll(io.LimitReader(flate.NewReader(br), 64<<20))
	if err != nil || br.Len() != 0 { // trailing bytes are a change too
		return nil, errBlock
	}
	r := bytes.NewReader(raw)
	n, err := binary.ReadUvarint(r)
	if err != nil || n > auditBlock*4 {
		return nil, errBlock
	}
	out := make([]blockEntry, 0, n)
	var tm int64
	for i := uint64(0); i < n; i++ {
		d, err := binary.ReadVarint(r)
		if err != nil {
			return nil, errBlock
		}
		tm += d
		e := rekey.AuditEntry{Seq: first + int64(i), Time: time.Unix(0, tm).UTC()}
		for _, f := range []*string{&e.Actor, &e.Action, &e.Env, &e.Secret, &e.Fingerprint, &e.Outcome, &e.Detail} {
			var ok bool
			if *f, ok = readString(r); !ok {
				return nil, errBlock
			}
		}
		v, err := binary.ReadUvarint(r)
		if err != nil || v > 1<<31 {
			return nil, errBlock
		}
		e.Version = int(v)
		tag := make([]byte, auditTagSize)
		if _, err := io.ReadFull(r, tag); err != nil {
			return nil, errBlock
		}
		out = append(out, blockEntry{e, tag})
	}
	if r.Len() != 0 {
		return nil, errBlock
	}
	return out, nil
}

// chainBroken is the error naming the first broken entry.
func chainBroken(seq int64, why string) error {
	return rekey.Errorf(rekey.CodeAuth, "audit chain broken at entry %d: %s", seq, why).WithHint("the audit log was edited outside rekey")
}

// walkAudit reads the whole log in order, recomputing every hash, and calls
// fn with each entry (PrevHash and Hash filled). With verify it stops at the
// first entry that does not match its stored hash or tag, or a gap.
func (t *txn) walkAudit(verify bool, fn func(rekey.AuditEntry) error) error {
	type block struct {
		first, last     int64
		data, hash, mac []byte
	}
	var blocks []block
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		var b block
		if err := rows.Scan(&b.first, &b.last, &b.data, &b.hash, &b.mac); err != nil {
			return err
		}
		blocks = append(blocks, b)
		return nil
	}, `SELECT first, last, data, hash, mac FROM audit_block ORDER BY first`); err != nil {
		return err
	}
	prev := ""
	var want int64 = 1
	for _, b := range blocks {
		if verify && b.first != want {
			return chainBroken(want, fmt.Sprintf("entry %d is missing", want))
		}
		es, err := decodeBlock(b.first, b.data)
		if err == nil && verify && !hmac.Equal(b.mac, t.s.blockMAC(b.first, b.last, b.data, b.hash)) {
			err = errBlock
		}
		if err != nil {
			if !verify {
				return corrupt(fmt.Sprintf("audit entries %d to %d", b.first, b.last))
			}
			return chainBroken(b.first, fmt.Sprintf("the packed entries %d to %d were changed or damaged", b.first, b.last))
		}
		if verify && (len(es) == 0 || es[len(es)-1].e.Seq != b.last) {
			return chainBroken(b.first, fmt.Sprintf("the packed entries %d to %d were changed or damaged", b.first, b.last))
		}
		for _, be := range es {
			e := be.e
			e.PrevHash = prev
			e.Hash = t.s.auditHash(e)
			if verify {
				h, _ := hex.DecodeString(e.Hash)
				if !hmac.Equal(h[:auditTagSize], be.tag) || (e.Seq == b.last && !hmac.Equal(h, b.hash)) {
					return chainBroken(e.Seq, "its hash does not match its content")
				}
			}
			if err := fn(e); err != nil {
				return err
			}
			prev = e.Hash
			want = e.Seq + 1
		}
		if !verify && len(es) > 0 {
			prev = hex.EncodeToString(b.hash)
		}
	}
	rows, err := t.tx.Query(auditSelect + ` ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return err
		}
		if verify && e.Seq != want {
			return chainBroken(want, fmt.Sprintf("entry %d is missing", want))
		}
		stored := e.Hash
		e.PrevHash = prev // the hash of the entry actually before it
		if verify {
			if h := t.s.auditHash(e); !hmac.Equal([]byte(h), []byte(stored)) {
				return chainBroken(e.Seq, "its hash does not match its content")
			}
		}
		if err := fn(e); err != nil {
			return err
		}
		prev = stored
		want = e.Seq + 1
	}
	return rows.Err()
}

// VerifyAudit implements rekey.Store.
func (s *DB) VerifyAudit(ctx context.Context) (int, error) {
	n := 0
	err := s.View(ctx, func(t rekey.Tx) error {
		return t.(*txn).walkAudit(true, func(rekey.AuditEntry) error { n++; return nil })
	})
	return n, err
}

func (t *txn) AuditLog(f rekey.AuditFilter) ([]rekey.AuditEntry, error) {
	var out []rekey.AuditEntry
	err := t.walkAudit(false, func(e rekey.AuditEntry) error {
		if (f.Env == "" || e.Env == f.Env) && (f.Secret == "" || e.Secret == f.Secret) && (f.Since.IsZero() || !e.Time.Before(f.Since)) {
			out = append(out, e)
		}
		return nil
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, err
}
