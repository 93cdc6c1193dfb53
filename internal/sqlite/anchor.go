package sqlite

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/safefile"
)

// The anchor: the audit head (sequence number and hash) kept outside the
// store file, in a folder the project's writers do not control (the user's
// state directory), under a MAC only the master key's holder can make.
//
// Inside the file the state MAC covers the audit head, so deleting audit
// entries or replaying single rows is caught there. What the file cannot
// catch by itself is being replaced whole by an older copy of itself: that
// copy is consistent. The anchor can: when the store's audit log does not
// reach, or does not contain, the entry the anchor names, Open refuses.
//
// The anchor may lag behind the store (a command killed before it saved it)
// but never runs ahead of it, so a store that has moved on from the anchor
// is fine as long as it still holds the anchor's entry with the same hash.
//
// Limit (SECURITY.md): someone who can also write the anchor folder can roll
// both back together; a machine that has never opened the store has no
// anchor to compare with (the first Open writes one).

type anchorState struct {
	dir   string
	reset bool
	found bool
	seq   int64
	hash  []byte
}

// WithAnchor keeps the anchor in dir, in a file named after the store's ID.
func WithAnchor(dir string) Option { return func(s *DB) { s.anchor.dir = dir } }

// WithAnchorReset skips the comparison with the anchor and writes it anew on
// Close (`rekey audit anchor --reset`, after restoring a backup on purpose).
func WithAnchorReset() Option { return func(s *DB) { s.anchor.reset = true } }

// AnchorPath is the anchor file of the store ("" without WithAnchor).
func (s *DB) AnchorPath() string {
	if s.anchor.dir == "" || s.storeID == "" {
		return ""
	}
	return filepath.Join(s.anchor.dir, s.storeID+".anchor")
}

// AnchorInfo is what the anchor holds and what the store holds now.
type AnchorInfo struct {
	Path      string
	Found     bool  // an anchor existed when the store was opened
	Seq       int64 // the audit entry it named then
	StoreSeq  int64 // the store's audit head now
	StoreHash string
}

// Anchor describes the anchor as found at Open and the store's head now.
func (s *DB) Anchor() AnchorInfo {
	return AnchorInfo{Path: s.AnchorPath(), Found: s.anchor.found, Seq: s.anchor.seq, StoreSeq: s.headSeq, StoreHash: hex.EncodeToString(s.headHash)}
}

func (s *DB) anchorMAC(seq int64, hash []byte) []byte {
	m := hmac.New(sha256.New, deriveKey(s.audit, "anchor"))
	w := &macWriter{m: m}
	return w.str("rekey-anchor-v1").str(s.storeID).int(seq).bytes(hash).sum()
}

func anchorErr(path, msg string) error {
	return &rekey.Error{Code: rekey.CodeAuth, Msg: msg,
		Hint: fmt.Sprintf("someone replaced .rekey/rekey.db with an older copy or cut its audit log: restore the newest backup; if you restored an older backup on purpose, run `rekey audit anchor --reset --reason TEXT` (the anchor is %s)", path),
		Err:  rekey.ErrCorrupt}
}

// checkAnchor compares the store's audit head (noted by the View in Open)
// with the anchor.
func (s *DB) checkAnchor(ctx context.Context) error {
	path := s.AnchorPath()
	if path == "" || s.anchor.reset {
		return nil
	}
	b, err := readSmall(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("read the audit anchor %s: %v", path, err), Hint: "it must be a regular file of yours; remove it and rekey writes it anew"}
	}
	seq, hash, ok := s.parseAnchor(b)
	if !ok {
		return &rekey.Error{Code: rekey.CodeAuth, Msg: fmt.Sprintf("the audit anchor %s does not authenticate under this store's key", path),
			Hint: "it was damaged or written for another store; remove it if you trust the store (`rekey audit verify` first)", Err: rekey.ErrCorrupt}
	}
	s.anchor.found, s.anchor.seq, s.anchor.hash = true, seq, hash
	switch {
	case seq > s.headSeq:
		return anchorErr(path, fmt.Sprintf("store is older than this machine last saw it: its audit log ends at entry %d, the anchor outside it records entry %d", s.headSeq, seq))
	case seq == s.headSeq:
		if !bytes.Equal(hash, s.headHash) {
			return anchorErr(path, fmt.Sprintf("store's audit entry %d is not the one this machine last saw: the store was replaced by another history", seq))
		}
		return nil
	}
	var h []byte
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		h, err = entryHash(s, tx, seq)
		return err
	})
	if err != nil {
		return err
	}
	if !bytes.Equal(h, hash) {
		return anchorErr(path, fmt.Sprintf("store's audit entry %d is not the one this machine last saw: the store was replaced by another history", seq))
	}
	return nil
}

func (s *DB) parseAnchor(b []byte) (int64, []byte, bool) {
	f := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 5 || lines[0] != "rekey-anchor v1" {
		return 0, nil, false
	}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			return 0, nil, false
		}
		f[k] = v
	}
	seq, err := strconv.ParseInt(f["seq"], 10, 64)
	if err != nil || seq < 0 || f["store"] != s.storeID {
		return 0, nil, false
	}
	hash, err1 := hex.DecodeString(f["hash"])
	m, err2 := hex.DecodeString(f["mac"])
	if err1 != nil || err2 != nil || !hmac.Equal(m, s.anchorMAC(seq, hash)) {
		return 0, nil, false
	}
	return seq, hash, true
}

// saveAnchor writes the anchor when the store's head moved since it was
// read (or there was none): a temporary file, fsync, rename.
func (s *DB) saveAnchor() error {
	path := s.AnchorPath()
	if path == "" || s.rowKey == nil {
		return nil
	}
	if s.anchor.found && !s.anchor.reset && s.anchor.seq == s.headSeq && bytes.Equal(s.anchor.hash, s.headHash) {
		return nil
	}
	if err := os.MkdirAll(s.anchor.dir, 0o700); err != nil {
		return fmt.Errorf("save the audit anchor: %w", err)
	}
	body := fmt.Sprintf("rekey-anchor v1\nstore %s\nseq %d\nhash %x\nmac %x\n", s.storeID, s.headSeq, s.headHash, s.anchorMAC(s.headSeq, s.headHash))
	if err := safefile.Replace(path, ".anchor-*", []byte(body)); err != nil {
		return fmt.Errorf("save the audit anchor: %w", err)
	}
	s.anchor.found, s.anchor.reset, s.anchor.seq, s.anchor.hash = true, false, s.headSeq, s.headHash
	return nil
}

// readSmall reads a small regular file without following a symlink.
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return io.ReadAll(io.LimitReader(f, 4096))
}

// entryHash is the full hash of audit entry seq: a loose row's as stored; a
// packed entry's recomputed from its block.
func entryHash(s *DB, tx *sql.Tx, seq int64) ([]byte, error) {
	var h []byte
	err := tx.QueryRow(`SELECT hash FROM audit WHERE seq = ?`, seq).Scan(&h)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return h, err
	}
	var first, last int64
	var data, bhash []byte
	err = tx.QueryRow(`SELECT first, last, data, hash FROM audit_block WHERE first <= ? AND last >= ?`, seq, seq).Scan(&first, &last, &data, &bhash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // no such entry: compared, it does not match
	}
	if err != nil {
		return nil, err
	}
	prev := ""
	if first > 1 {
		var p []byte
		if err := tx.QueryRow(`SELECT hash FROM audit_block WHERE last = ?`, first-1).Scan(&p); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		prev = hex.EncodeToString(p)
	}
	es, err := decodeBlock(first, data)
	if err != nil {
		return nil, nil
	}
	for _, be := range es {
		e := be.e
		e.PrevHash = prev
		prev = s.auditHash(e)
		if e.Seq == seq {
			return hex.DecodeString(prev)
		}
	}
	return nil, nil
}

var rotationRef = regexp.MustCompile(`\brotation (\S+)`)

// Unaudited lists the versions and rotations the audit log has no record
// of: a version with no entry naming its environment, secret, number and
// fingerprint; a rotation no entry names ("rotation ID"). rekey writes such
// an entry in the same transaction as each, so any of them was made outside
// rekey, or its entry was cut from the log.
func (s *DB) Unaudited(ctx context.Context) ([]string, error) {
	var out []string
	err := s.View(ctx, func(t rekey.Tx) error {
		tx := t.(*txn)
		type key struct {
			env, name string
			n         int
			fp        string
		}
		seen := map[key]bool{}
		rots := map[string]bool{}
		if err := tx.walkAudit(false, func(e rekey.AuditEntry) error {
			if e.Secret != "" && e.Version > 0 {
				seen[key{e.Env, e.Secret, e.Version, e.Fingerprint}] = true
			}
			for _, m := range rotationRef.FindAllStringSubmatch(e.Detail, -1) {
				rots[strings.TrimRight(m[1], ",;:)")] = true
			}
			return nil
		}); err != nil {
			return err
		}
		err := rekey.EachVersion(tx, func(v rekey.Version) error {
			if !seen[key{v.Env, v.Name, v.N, v.Fingerprint}] {
				out = append(out, fmt.Sprintf("version %s/%s v%d (%s) has no audit entry", v.Env, v.Name, v.N, v.Fingerprint))
			}
			return nil
		})
		if err != nil {
			return err
		}
		rs, err := tx.rotations("")
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !rots[r.ID] {
				out = append(out, fmt.Sprintf("rotation %s (%s, %s) has no audit entry", r.ID, r.Env, r.Mode))
			}
		}
		return nil
	})
	return out, err
}
