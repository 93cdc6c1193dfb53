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
		var f []byte
		if err := tx.QueryRow(`SELECT v FROM meta WHERE k = 'format'`).Scan(&f); err != nil {
			return err
		}
		if string(f) != "2" {
			return nil // upgraded by another process meanwhile
		}
		var authenticated int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('secret') WHERE name = 'mac'`).Scan(&authenticated); err != nil {
			return err
		}
		if authenticated > 0 {
			// A format 3 store whose format row says 2: upgrading it again would
			// re-authenticate whatever its rows hold now.
			return tampered("the metadata (meta table)", "says format 2, but the tables are format 3")
		}
		for _, q := range []string{
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
		} {
			if _, err := tx.Exec(q); err != nil {
				return fmt.Errorf("%s: %w", q[:min(len(q), 40)], err)
			}
		}
		heads := map[int64]*head{}
		rows, err := tx.Query(`SELECT id, env, name, last_n FROM secret`)
		if err != nil {
			return err
		}
		for rows.Next() {
			h := &head{attrs: map[int]map[string]string{}}
			if err := rows.Scan(&h.id, &h.env, &h.name, &h.lastN); err != nil {
				rows.Close()
				return err
			}
			heads[h.id] = h
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		type row struct {
			id      int64
			v       rekey.Version
			created int64
			fp      any
			source  any
			rotID   any
			sealed  []byte
		}
		var vrows []row
		rows, err = tx.Query(`SELECT secret_id, n, label, created_at, fingerprint, source, rotation_id, note, attrs, sealed FROM version ORDER BY secret_id, n`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r row
			var label sql.NullString
			var attrs string
			if err := rows.Scan(&r.id, &r.v.N, &label, &r.created, &r.fp, &r.source, &r.rotID, &r.v.Note, &attrs, &r.sealed); err != nil {
				rows.Close()
				return err
			}
			if err := (fpCol{&r.v.Fingerprint}).Scan(r.fp); err != nil {
				rows.Close()
				return err
			}
			if err := (sourceCol{&r.v.Source}).Scan(r.source); err != nil {
				rows.Close()
				return err
			}
			if err := (rotIDCol{&r.v.RotationID}).Scan(r.rotID); err != nil {
				rows.Close()
				return err
			}
			h := heads[r.id]
			if h == nil {
				rows.Close()
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
					rows.Close()
					return corrupt(fmt.Sprintf("%s/%s v%d attributes", h.env, h.name, r.v.N))
				}
				if len(a) > 0 {
					h.attrs[r.v.N] = a
				}
			}
			vrows = append(vrows, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
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
		ids := make([]int64, 0, len(heads))
		for id := range heads {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		t := &txn{s: s, tx: tx, rw: true}
		for _, id := range ids {
			if err := t.saveHead(heads[id]); err != nil {
				return err
			}
		}
		// Rotations: the MAC over the columns as they are.
		type rot struct {
			id, env, mode, state, actor string
			started, ended              int64
			secrets, steps, errText     string
		}
		var rots []rot
		rows, err = tx.Query(`SELECT id, env, mode, state, actor, started, ended, secrets, steps, error FROM rotation`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r rot
			if err := rows.Scan(&r.id, &r.env, &r.mode, &r.state, &r.actor, &r.started, &r.ended, &r.secrets, &r.steps, &r.errText); err != nil {
				rows.Close()
				return err
			}
			rots = append(rots, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range rots {
			m, err := s.rotationMAC(r.id, r.env, r.mode, r.state, r.actor, r.started, r.ended, r.secrets, r.steps, r.errText)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE rotation SET mac = ? WHERE id = ?`, m, r.id); err != nil {
				return err
			}
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
			Detail: fmt.Sprintf("format 2 to %s: every row authenticated from now on (%d secrets, %d versions, %d rotations taken as found)", formatVersion, len(heads), len(vrows), len(rots))}); err != nil {
			return err
		}
		_, err = s.writeState(tx)
		return err
	})
}
