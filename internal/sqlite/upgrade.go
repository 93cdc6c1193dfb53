package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/rekeyhq/rekey"
)

// upgrade turns a format 2 store into format 3 in one transaction: labels
// and attributes move from the version rows to the secret heads, and every
// row gets its MAC. The rows are taken as found: a format 2 store had no way
// to tell an edited row, so the upgrade trusts it once (SECURITY.md), and
// says so in the audit log.
func (s *DB) upgrade(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if needed, err := upgradeNeeded(tx); !needed || err != nil {
			return err
		}
		for _, q := range schema3 {
			if _, err := tx.Exec(q); err != nil {
				return fmt.Errorf("%s: %w", q[:min(len(q), 40)], err)
			}
		}
		heads, err := readHeads2(tx)
		if err != nil {
			return err
		}
		vrows, err := readVersions2(tx, heads)
		if err != nil {
			return err
		}
		if err := s.writeVersions3(tx, vrows); err != nil {
			return err
		}
		t := &txn{s: s, tx: tx, rw: true}
		ids := make([]int64, 0, len(heads))
		for id := range heads {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			if err := t.saveHead(heads[id]); err != nil {
				return err
			}
		}
		nrots, err := s.authenticateRotations(tx)
		if err != nil {
			return err
		}
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE meta SET v = ? WHERE k = 'format'`, []byte(formatVersion)); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO meta(k, v) VALUES ('store_id', ?)`, []byte(hex.EncodeToString(id))); err != nil {
			return err
		}
		if _, err := t.Audit(rekey.AuditEntry{Actor: "rekey", Action: "store.upgrade", Outcome: "ok",
			Detail: fmt.Sprintf("format 2 to %s: every row authenticated from now on (%d secrets, %d versions, %d rotations taken as found)", formatVersion, len(heads), len(vrows), nrots)}); err != nil {
			return err
		}
		_, err = s.writeState(tx)
		return err
	})
}

// upgradeNeeded reports whether the store is still format 2 (another
// process may have upgraded it meanwhile). A format 3 store whose format
// row says 2 is refused: upgrading it again would re-authenticate whatever
// its rows hold now.
func upgradeNeeded(tx *sql.Tx) (bool, error) {
	var f []byte
	if err := tx.QueryRow(`SELECT v FROM meta WHERE k = 'format'`).Scan(&f); err != nil {
		return false, err
	}
	if string(f) != "2" {
		return false, nil
	}
	var authenticated int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('secret') WHERE name = 'mac'`).Scan(&authenticated); err != nil {
		return false, err
	}
	if authenticated > 0 {
		return false, tampered("the metadata (meta table)", "says format 2, but the tables are format 3")
	}
	return true, nil
}

// schema3 turns the format 2 tables into format 3, but for the version
// rows, which go to version3 (writeVersions3).
var schema3 = []string{
	`ALTER TABLE secret ADD COLUMN cur INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE secret ADD COLUMN pend INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE secret ADD COLUMN prev INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE secret ADD COLUMN vset TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE secret ADD COLUMN attrs TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE secret ADD COLUMN mac BLOB NOT NULL DEFAULT x''`,
	`ALTER TABLE rotation ADD COLUMN mac BLOB NOT NULL DEFAULT x''`,
	`DROP INDEX IF EXISTS rotation_running`,
	`CREATE INDEX rotation_env ON rotation (env, started)`,
	`CREATE TABLE version3 (
		secret_id   INTEGER NOT NULL REFERENCES secret (id),
		n           INTEGER NOT NULL,
		created_at  INTEGER NOT NULL,
		fingerprint TEXT NOT NULL,
		source      BLOB NOT NULL,
		rotation_id TEXT NOT NULL DEFAULT '',
		note        TEXT NOT NULL DEFAULT '',
		sealed      BLOB NOT NULL,
		mac         BLOB NOT NULL,
		PRIMARY KEY (secret_id, n)
	) WITHOUT ROWID`,
}

// readHeads2 reads the secret rows of a format 2 store, by id; their
// labels, version lists and attributes are filled from the version rows.
func readHeads2(tx *sql.Tx) (map[int64]*head, error) {
	heads := map[int64]*head{}
	err := eachRow(tx, func(rows *sql.Rows) error {
		h := &head{attrs: map[int]map[string]string{}}
		if err := rows.Scan(&h.id, &h.env, &h.name, &h.lastN); err != nil {
			return err
		}
		heads[h.id] = h
		return nil
	}, `SELECT id, env, name, last_n FROM secret`)
	return heads, err
}

// version2 is a version row of a format 2 store, its columns kept as found
// for the format 3 row.
type version2 struct {
	id      int64
	v       rekey.Version
	created int64
	fp      any
	source  any
	rotID   any
	sealed  []byte
}

// readVersions2 reads the version rows of a format 2 store, and moves their
// labels and attributes to their heads.
func readVersions2(tx *sql.Tx, heads map[int64]*head) ([]version2, error) {
	var vrows []version2
	err := eachRow(tx, func(rows *sql.Rows) error {
		var r version2
		var label sql.NullString
		var attrs string
		if err := rows.Scan(&r.id, &r.v.N, &label, &r.created, &r.fp, &r.source, &r.rotID, &r.v.Note, &attrs, &r.sealed); err != nil {
			return err
		}
		if err := (fpCol{&r.v.Fingerprint}).Scan(r.fp); err != nil {
			return err
		}
		if err := (sourceCol{&r.v.Source}).Scan(r.source); err != nil {
			return err
		}
		if err := (rotIDCol{&r.v.RotationID}).Scan(r.rotID); err != nil {
			return err
		}
		h := heads[r.id]
		if h == nil {
			return corrupt(fmt.Sprintf("version row of no secret (%d)", r.id))
		}
		r.v.Env, r.v.Name, r.v.CreatedAt = h.env, h.name, time.Unix(0, r.created).UTC()
		h.vset = rangesOf(append(h.list(), r.v.N)) // rows come ordered by n
		h.lastN = max(h.lastN, r.v.N)
		if i, ok := labelIndex[rekey.Label(label.String)]; ok {
			h.labels[i] = r.v.N
		}
		if attrs != "" {
			var a map[string]string
			if err := json.Unmarshal([]byte(attrs), &a); err != nil {
				return corrupt(fmt.Sprintf("%s/%s v%d attributes", h.env, h.name, r.v.N))
			}
			if len(a) > 0 {
				h.attrs[r.v.N] = a
			}
		}
		vrows = append(vrows, r)
		return nil
	}, `SELECT secret_id, n, label, created_at, fingerprint, source, rotation_id, note, attrs, sealed FROM version ORDER BY secret_id, n`)
	return vrows, err
}

// writeVersions3 writes the version rows, with their MACs, to the format 3
// table, which replaces the format 2 one.
func (s *DB) writeVersions3(tx *sql.Tx, vrows []version2) error {
	for _, r := range vrows {
		m, err := s.versionMAC(r.v)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO version3(secret_id, n, created_at, fingerprint, source, rotation_id, note, sealed, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.id, r.v.N, r.created, r.fp, r.source, r.rotID, r.v.Note, r.sealed, m); err != nil {
			return err
		}
	}
	for _, q := range []string{`DROP INDEX IF EXISTS version_label`, `DROP TABLE version`, `ALTER TABLE version3 RENAME TO version`} {
		if _, err := tx.Exec(q); err != nil {
			return err
		}
	}
	return nil
}

// authenticateRotations gives every rotation row the MAC over its columns
// as they are, and returns how many there are.
func (s *DB) authenticateRotations(tx *sql.Tx) (int, error) {
	type rot struct {
		id, env, mode, state, actor string
		started, ended              int64
		secrets, steps, errText     string
	}
	var rots []rot
	err := eachRow(tx, func(rows *sql.Rows) error {
		var r rot
		if err := rows.Scan(&r.id, &r.env, &r.mode, &r.state, &r.actor, &r.started, &r.ended, &r.secrets, &r.steps, &r.errText); err != nil {
			return err
		}
		rots = append(rots, r)
		return nil
	}, `SELECT id, env, mode, state, actor, started, ended, secrets, steps, error FROM rotation`)
	if err != nil {
		return 0, err
	}
	for _, r := range rots {
		m, err := s.rotationMAC(r.id, r.env, r.mode, r.state, r.actor, r.started, r.ended, r.secrets, r.steps, r.errText)
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(`UPDATE rotation SET mac = ? WHERE id = ?`, m, r.id); err != nil {
			return 0, err
		}
	}
	return len(rots), nil
}
