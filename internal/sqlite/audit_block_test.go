package sqlite_test

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
)

// packedFixture is a closed store whose audit log has packed blocks and loose
// rows, with the entries as Audit returned them.
type packedFixture struct {
	path    string
	key     seal.Key
	entries []rekey.AuditEntry
}

func newPackedFixture(t testing.TB, n int) packedFixture {
	t.Helper()
	path, key, s := newAuditStore(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	var out []rekey.AuditEntry
	// Several transactions, so packing happens inside a commit and across them.
	for start := 0; start < n; start += 700 {
		err := s.Update(t.Context(), func(tx rekey.Tx) error {
			for i := start; i < min(start+700, n); i++ {
				e := rekey.AuditEntry{Time: base.Add(time.Duration(i) * time.Second), Actor: "alice", Action: "rotate.create", Env: "prod",
					Secret: fmt.Sprintf("S_%03d", i%97), Version: i/97 + 1, Fingerprint: fmt.Sprintf("fp:%016x", i*7919), Outcome: "ok", Detail: fmt.Sprintf("rotation r%d (manual) ünï", i)}
				if i%10 == 3 {
					e.Time = base.Add(-time.Hour) // a clock that went back
					e.Env, e.Secret, e.Fingerprint, e.Detail, e.Version = "", "", "", "", 0
				}
				got, err := tx.Audit(e)
				if err != nil {
					return err
				}
				out = append(out, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.VerifyAudit(t.Context()); err != nil || got != n {
		t.Fatalf("VerifyAudit = %d, %v; want %d, nil", got, err, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return packedFixture{path, key, out}
}

func (f packedFixture) tamper(t testing.TB, edit func(db *sql.DB) error) error {
	t.Helper()
	return auditFixture{path: f.path, key: f.key}.tamper(t, edit)
}

func TestAuditPackedReadsBack(t *testing.T) {
	f := newPackedFixture(t, 5000)
	db := rawDB(t, f.path)
	var blocks, loose int
	db.QueryRow(`SELECT COUNT(*) FROM audit_block`).Scan(&blocks)
	db.QueryRow(`SELECT COUNT(*) FROM audit`).Scan(&loose)
	db.Close()
	if blocks != 3 || loose != 5000-3*1024 {
		t.Fatalf("%d blocks and %d loose rows, want 3 and %d", blocks, loose, 5000-3*1024)
	}
	s := open(t, f.path, f.key)
	defer s.Close()
	var all, bySecret, limited, since []rekey.AuditEntry
	err := s.View(t.Context(), func(tx rekey.Tx) error {
		var err error
		if all, err = tx.AuditLog(rekey.AuditFilter{}); err != nil {
			return err
		}
		if bySecret, err = tx.AuditLog(rekey.AuditFilter{Secret: "S_005"}); err != nil {
			return err
		}
		if limited, err = tx.AuditLog(rekey.AuditFilter{Limit: 10, Env: "prod"}); err != nil {
			return err
		}
		since, err = tx.AuditLog(rekey.AuditFilter{Since: f.entries[4000].Time})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f.entries, all); d != "" {
		t.Fatalf("AuditLog differs from what Audit returned (-wrote +read):\n%s", d)
	}
	var want []rekey.AuditEntry
	for _, e := range f.entries {
		if e.Secret == "S_005" {
			want = append(want, e)
		}
	}
	if d := cmp.Diff(want, bySecret); d != "" {
		t.Errorf("secret filter (-want +got):\n%s", d)
	}
	want = nil
	for _, e := range f.entries {
		if e.Env == "prod" {
			want = append(want, e)
		}
	}
	if d := cmp.Diff(want[len(want)-10:], limited); d != "" {
		t.Errorf("limit (-want +got):\n%s", d)
	}
	for _, e := range since {
		if e.Time.Before(f.entries[4000].Time) {
			t.Errorf("since filter returned entry %d of %v", e.Seq, e.Time)
		}
	}
	if len(since) == 0 {
		t.Error("since filter returned nothing")
	}
}

// Every single-byte change to a packed block, its hash or its range is
// reported by verify, naming an entry of that block.
func TestAuditPackedTamper(t *testing.T) {
	f := newPackedFixture(t, 2100) // one block of 1..1024, rows 1025..2100
	var data []byte
	db := rawDB(t, f.path)
	if err := db.QueryRow(`SELECT data FROM audit_block WHERE first = 1`).Scan(&data); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// The first and last bytes (deflate headers and the end of the stream)
	// and forty spread through the middle.
	var at []int
	for i := 0; i < len(data); i += max(1, len(data)/40) {
		at = append(at, i)
	}
	for i := 0; i < 8; i++ {
		at = append(at, i, len(data)-1-i)
	}
	for _, i := range at {
		for _, x := range []byte{0x01, 0x80} {
			err := f.tamper(t, func(db *sql.DB) error {
				b := append([]byte(nil), data...)
				b[i] ^= x
				_, err := db.Exec(`UPDATE audit_block SET data = ? WHERE first = 1`, b)
				return err
			})
			if err == nil {
				t.Fatalf("byte %d ^ %#x of the block: VerifyAudit passed", i, x)
			}
			if rekey.ErrorCode(err) != rekey.CodeAuth {
				t.Fatalf("byte %d: error code %d (%v), want CodeAuth", i, rekey.ErrorCode(err), err)
			}
		}
	}
	cases := []struct {
		name string
		sql  string
		at   int64
	}{
		{"block hash changed", `UPDATE audit_block SET hash = zeroblob(32)`, 1},
		{"block mac changed", `UPDATE audit_block SET mac = zeroblob(32)`, 1},
		{"block dropped", `DELETE FROM audit_block`, 1},
		{"block range moved", `UPDATE audit_block SET first = 2`, 1},
		{"block last changed", `UPDATE audit_block SET last = 1000`, 1},
		{"first loose row dropped", `DELETE FROM audit WHERE seq = 1025`, 1025},
		{"loose row edited", `UPDATE audit SET actor = 'mallory' WHERE seq = 1500`, 1500},
	}
	for _, c := range cases {
		err := f.tamper(t, func(db *sql.DB) error { _, err := db.Exec(c.sql); return err })
		wantBrokenAt(t, c.name, err, c.at)
	}
	// A block re-encoded with one changed field (a forger without the key
	// keeps the tags) names that entry.
	err := f.tamper(t, func(db *sql.DB) error {
		_, err := db.Exec(`DELETE FROM audit_block`)
		if err != nil {
			return err
		}
		for _, e := range f.entries[:1024] {
			h := e.Hash
			if e.Seq == 700 {
				e.Actor = "mallory"
			}
			if _, err := db.Exec(`INSERT INTO audit(seq, time, actor, action, env, secret, version, fingerprint, outcome, detail, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, unhex(?))`,
				e.Seq, e.Time.UnixNano(), e.Actor, e.Action, e.Env, e.Secret, e.Version, e.Fingerprint, e.Outcome, e.Detail, h); err != nil {
				return err
			}
		}
		return nil
	})
	wantBrokenAt(t, "entry edited while unpacked", err, 700)
}
