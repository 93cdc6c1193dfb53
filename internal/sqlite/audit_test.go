package sqlite_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rekeyhq/rekey/seal"
)

// auditColumns are the columns of the audit table a tamperer can edit, with
// whether they hold a number.
var auditColumns = []struct {
	name    string
	integer bool
}{
	{"time", true},
	{"actor", false},
	{"action", false},
	{"env", false},
	{"secret", false},
	{"version", true},
	{"fingerprint", false},
	{"outcome", false},
	{"detail", false},
	{"hash", false},
}

// auditFixture is a closed store file holding a verified chain of entries.
type auditFixture struct {
	path    string
	key     seal.Key
	entries int
}

// newAuditStore creates a store for an audit fixture; the caller closes it.
func newAuditStore(t testing.TB) (string, seal.Key, *sqlite.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Create(t.Context(), path, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return path, key, s
}

func newAuditFixture(t testing.TB) auditFixture {
	t.Helper()
	path, key, s := newAuditStore(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	entries := []rekey.AuditEntry{
		{Time: base, Actor: "alice", Action: "init", Env: "prod", Secret: "DB_PASSWORD", Version: 1, Fingerprint: "fp:0011223344556677", Outcome: "ok", Detail: "imported from .env"},
		{Time: base.Add(time.Minute), Actor: "alice", Action: "rotate.create", Env: "prod", Secret: "DB_PASSWORD", Version: 2, Fingerprint: "fp:8899aabbccddeeff", Outcome: "ok", Detail: "rotation r1 (manual)"},
		{Time: base.Add(2 * time.Minute), Actor: "cron", Action: "status", Outcome: "ok"}, // empty env, secret, fingerprint, detail; version 0
		{Time: base.Add(3 * time.Minute), Actor: "alice", Action: "rotate.verify", Env: "prod", Secret: "DB_PASSWORD", Version: 2, Fingerprint: "fp:8899aabbccddeeff", Outcome: "error", Detail: "target app: 500"},
		{Time: base.Add(4 * time.Minute), Actor: "alice", Action: "rotate.rollback", Env: "prod", Secret: "DB_PASSWORD", Version: 1, Fingerprint: "fp:0011223344556677", Outcome: "ok", Detail: "rolled back"},
		{Time: base.Add(5 * time.Minute), Actor: "bob", Action: "get", Env: "staging", Secret: "API_KEY", Version: 7, Fingerprint: "fp:ffeeddccbbaa9988", Outcome: "ok", Detail: "ünïcode"},
	}
	// Two transactions, so the chain crosses a commit.
	for _, part := range [][]rekey.AuditEntry{entries[:3], entries[3:]} {
		err := s.Update(t.Context(), func(tx rekey.Tx) error {
			for _, e := range part {
				if _, err := tx.Audit(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.VerifyAudit(t.Context()); err != nil || n != len(entries) {
		t.Fatalf("VerifyAudit of the untouched chain = %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return auditFixture{path, key, len(entries)}
}

// tamper copies the fixture, lets edit change it with raw SQL, and returns
// the error of Open, or else of VerifyAudit, on the copy.
func (f auditFixture) tamper(t testing.TB, edit func(db *sql.DB) error) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tampered.db")
	testkit.CopyFile(t, f.path, path)
	db := rawDB(t, path)
	if err := edit(db); err != nil {
		db.Close()
		t.Fatalf("raw edit: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(t.Context(), path, f.key)
	if err != nil {
		// An edit that reaches the audit head (authenticated in the store's
		// state) is refused by Open itself, naming the entry.
		return err
	}
	defer s.Close()
	_, err = s.VerifyAudit(t.Context())
	return err
}

// wantBrokenAt fails unless err is a CodeAuth error naming "entry seq".
func wantBrokenAt(t testing.TB, what string, err error, seq int64) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: VerifyAudit passed, want it to fail at entry %d", what, seq)
		return
	}
	if !regexp.MustCompile(fmt.Sprintf(`\bentry %d\b`, seq)).MatchString(err.Error()) {
		t.Errorf("%s: VerifyAudit error %q does not name entry %d", what, err, seq)
	}
	if c := rekey.ErrorCode(err); c != rekey.CodeAuth {
		t.Errorf("%s: VerifyAudit error has code %d, want CodeAuth", what, c)
	}
}

// changeText changes one byte of s (a hex digit stays a hex digit), or makes
// an empty s one byte long.
func changeText(s string) string {
	if s == "" {
		return "x"
	}
	b := []byte(s)
	i := len(b) / 2
	switch c := b[i]; {
	case c == '0':
		b[i] = '1'
	case c >= '1' && c <= '9' || c >= 'a' && c <= 'f':
		b[i] = '0'
	default:
		b[i] ^= 0x01
	}
	return string(b)
}

// editColumn changes one column of one audit row.
func editColumn(seq int64, col string, integer bool) func(*sql.DB) error {
	return func(db *sql.DB) error {
		if integer {
			res, err := db.Exec(`UPDATE audit SET `+col+` = `+col+` + 1 WHERE seq = ?`, seq)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("updated %d rows", n)
			}
			return nil
		}
		var v string
		if err := db.QueryRow(`SELECT `+col+` FROM audit WHERE seq = ?`, seq).Scan(&v); err != nil {
			return err
		}
		_, err := db.Exec(`UPDATE audit SET `+col+` = ? WHERE seq = ?`, changeText(v), seq)
		return err
	}
}

func TestAuditTamperEachColumn(t *testing.T) {
	f := newAuditFixture(t)
	for seq := int64(1); seq <= int64(f.entries); seq++ {
		for _, c := range auditColumns {
			what := fmt.Sprintf("%s of entry %d", c.name, seq)
			wantBrokenAt(t, what, f.tamper(t, editColumn(seq, c.name, c.integer)), seq)
		}
	}
}

func TestAuditTamperRows(t *testing.T) {
	f := newAuditFixture(t)
	const cols = `time, actor, action, env, secret, version, fingerprint, outcome, detail, hash`
	for _, c := range []struct {
		name string
		sql  []string
		want int64
	}{
		{"delete a middle row", []string{`DELETE FROM audit WHERE seq = 3`}, 3},
		{"delete the first row", []string{`DELETE FROM audit WHERE seq = 1`}, 1},
		{"delete two middle rows", []string{`DELETE FROM audit WHERE seq IN (4, 5)`}, 4},
		{"delete a row and renumber the rest", []string{
			`DELETE FROM audit WHERE seq = 2`,
			`UPDATE audit SET seq = seq - 1 WHERE seq > 2`,
		}, 2},
		{"swap the seq of two rows", []string{
			`UPDATE audit SET seq = 100 WHERE seq = 2`,
			`UPDATE audit SET seq = 2 WHERE seq = 3`,
			`UPDATE audit SET seq = 3 WHERE seq = 100`,
		}, 2},
		{"swap the content of two rows", []string{
			`CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (4, 5)`,
			`UPDATE audit SET (` + cols + `) = (SELECT ` + cols + ` FROM t WHERE t.seq = 9 - audit.seq) WHERE seq IN (4, 5)`,
		}, 4},
		{"renumber everything", []string{`UPDATE audit SET seq = seq + 10`}, 1},
		{"append a copy of the last row", []string{
			`INSERT INTO audit SELECT seq + 1, ` + cols + ` FROM audit WHERE seq = 6`,
		}, 7},
		{"append a row chained to the last hash", []string{
			`INSERT INTO audit SELECT seq + 1, time + 1, actor, action, env, secret, version, fingerprint, outcome, detail, hash FROM audit WHERE seq = 6`,
		}, 7},
		{"replace a row with another's content and the same hash", []string{
			`UPDATE audit SET (actor, action, env, secret, version, fingerprint, outcome, detail, hash) = (SELECT actor, action, env, secret, version, fingerprint, outcome, detail, hash FROM audit WHERE seq = 2) WHERE seq = 5`,
		}, 5},
	} {
		err := f.tamper(t, func(db *sql.DB) error {
			for _, q := range c.sql {
				if _, err := db.Exec(q); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		})
		wantBrokenAt(t, c.name, err, c.want)
	}
	// Control: an edit that changes nothing keeps the chain valid.
	if err := f.tamper(t, func(db *sql.DB) error {
		_, err := db.Exec(`UPDATE audit SET actor = actor`)
		return err
	}); err != nil {
		t.Errorf("a no-op edit broke the chain: %v", err)
	}
}

// FuzzAuditTamper changes one byte (text) or adds a number (integers) in one
// column of one audit row; VerifyAudit must fail naming that row's entry.
// Run with -fuzz=FuzzAuditTamper; without -fuzz only the seeds run.
func FuzzAuditTamper(f *testing.F) {
	fx := newAuditFixture(f)
	f.Add(uint8(0), uint8(0), uint16(0), uint8(1))
	f.Add(uint8(2), uint8(3), uint16(0), uint8(0x80))
	f.Add(uint8(5), uint8(10), uint16(63), uint8(0xff))
	f.Add(uint8(3), uint8(9), uint16(7), uint8(0x20))
	f.Add(uint8(1), uint8(5), uint16(0), uint8(200))
	f.Fuzz(func(t *testing.T, row, col uint8, pos uint16, delta uint8) {
		if delta == 0 {
			t.Skip("no change")
		}
		seq := int64(row)%int64(fx.entries) + 1
		c := auditColumns[int(col)%len(auditColumns)]
		err := fx.tamper(t, func(db *sql.DB) error {
			if c.integer {
				_, err := db.Exec(`UPDATE audit SET `+c.name+` = `+c.name+` + ? WHERE seq = ?`, int64(delta), seq)
				return err
			}
			var v string
			if err := db.QueryRow(`SELECT `+c.name+` FROM audit WHERE seq = ?`, seq).Scan(&v); err != nil {
				return err
			}
			b := []byte(v)
			if len(b) == 0 {
				b = []byte{delta}
			} else {
				b[int(pos)%len(b)] ^= delta
			}
			_, err := db.Exec(`UPDATE audit SET `+c.name+` = ? WHERE seq = ?`, string(b), seq)
			return err
		})
		wantBrokenAt(t, fmt.Sprintf("%s of entry %d", c.name, seq), err, seq)
	})
}
