package main

import (
	"database/sql"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// The attacker of these tests can write the project folder, .rekey/rekey.db
// included, but does not have the master key (SECURITY.md). Each test edits
// the real store file with raw SQL, as such an attacker would, then runs the
// commands a routine cron job or an operator would run next.

// atProject is a project initialised in-process.
type atProject struct{ *inProject }

func newAtProject(t *testing.T) *atProject {
	t.Helper()
	p := &atProject{&inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": ctRandB64(32, base64.StdEncoding),
		"XDG_CONFIG_HOME":  t.TempDir(),
		"XDG_STATE_HOME":   t.TempDir(),
		"REKEY_ACTOR":      "attack-test",
	}}}
	pw := ctRandB64(24, base64.RawURLEncoding)
	p.init("DATABASE_URL=postgres://postgres:" + pw + "@localhost:5432/atlas\n" +
		"DATABASE_PASSWORD=" + pw + "\n" +
		"JWT_SECRET=" + ctRandB64(64, base64.StdEncoding) + "\n" +
		"RUST_LOG=info\n")
	return p
}

func (p *atProject) store() string { return filepath.Join(p.dir, ".rekey", "rekey.db") }

func (p *atProject) envFile() string { p.t.Helper(); return p.read(".env") }

// sql runs raw statements on the store file, as the attacker.
func (p *atProject) sql(qs ...string) {
	p.t.Helper()
	db, err := sql.Open("sqlite", "file:"+p.store())
	if err != nil {
		p.t.Fatal(err)
	}
	defer db.Close()
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			p.t.Fatalf("%s: %v", q, err)
		}
	}
}

// refused runs a command and wants exit 6 with every fragment in stderr.
func (p *atProject) refused(args []string, fragments ...string) {
	p.t.Helper()
	_, errs, code := p.run(args...)
	if code != 6 {
		p.t.Errorf("rekey %s: exit %d, want 6 (refused)\n%s", strings.Join(args, " "), code, errs)
		return
	}
	for _, f := range fragments {
		if !strings.Contains(errs, f) {
			p.t.Errorf("rekey %s: stderr does not name %q:\n%s", strings.Join(args, " "), f, errs)
		}
	}
}

// everyCommandRefuses runs what a cron job and an operator run next.
func (p *atProject) everyCommandRefuses(fragments ...string) {
	p.t.Helper()
	before := p.envFile()
	for _, args := range [][]string{
		{"status"}, {"rotate", "--due"}, {"rotate", "JWT_SECRET"}, {"recover"}, {"get", "JWT_SECRET"},
		{"publish", "JWT_SECRET"}, {"history", "JWT_SECRET"}, {"audit", "verify"},
	} {
		p.refused(args, fragments...)
	}
	if after := p.envFile(); after != before {
		p.t.Errorf("the .env changed although every command was refused:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestAttackPlantedRotation: a "running" rotation journal naming an old
// version, inserted into the store. Before format 3 the next `rotate --due`
// completed it, made the old (possibly leaked) value current and wrote it
// to the .env, and `audit verify` said ok.
func TestAttackPlantedRotation(t *testing.T) {
	p := newAtProject(t)
	old := p.must("get", "JWT_SECRET", "-n")
	p.must("rotate", "JWT_SECRET")
	p.must("rotate", "JWT_SECRET")
	steps := `[{"name":"create","started":"2026-01-01T00:00:00Z","ended":"2026-01-01T00:00:01Z","outcome":"ok"},{"name":"publish","started":"2026-01-01T00:00:01Z"}]`
	p.sql(
		`UPDATE secret SET pend = 1 WHERE name = 'JWT_SECRET'`,
		`INSERT INTO rotation(id, env, mode, state, actor, started, ended, secrets, steps, error, mac)
			VALUES ('20260101T000000Z-deadbeef', 'production', 'scheduled', 'running', 'cron', 1767225600000000000, 0, '{"JWT_SECRET":1}', '`+steps+`', '', x'00')`,
	)
	p.everyCommandRefuses("store was changed outside rekey", "rotation 20260101T000000Z-deadbeef")
	if strings.Contains(p.envFile(), old) {
		t.Fatal("the old value was published")
	}
	// The rotation row alone (labels untouched) is named too.
	p2 := newAtProject(t)
	p2.must("rotate", "JWT_SECRET")
	p2.sql(`INSERT INTO rotation(id, env, mode, state, actor, started, ended, secrets, steps, error, mac)
			VALUES ('20260101T000000Z-deadbeef', 'production', 'scheduled', 'running', 'cron', 1767225600000000000, 0, '{"JWT_SECRET":1}', '` + steps + `', '', x'00')`)
	p2.everyCommandRefuses("rotation 20260101T000000Z-deadbeef", "inserted")
}

// TestAttackEditedRows: each steering column of each kind of row, edited.
func TestAttackEditedRows(t *testing.T) {
	for _, c := range []struct {
		name string
		sql  string
		want string
	}{
		{"label moved to an old version", `UPDATE secret SET cur = 1 WHERE name = 'JWT_SECRET'`, "secret production/JWT_SECRET"},
		{"role attribute set to a superuser", `UPDATE secret SET attrs = '2' || char(0) || 'role' || char(0) || 'postgres' WHERE name = 'DATABASE_PASSWORD'`, "secret production/DATABASE_PASSWORD"},
		{"grace deadline extended", `UPDATE secret SET attrs = '1' || char(0) || 'grace_until' || char(0) || '2099-01-01T00:00:00Z' WHERE name = 'JWT_SECRET'`, "secret production/JWT_SECRET"},
		{"version list shortened", `UPDATE secret SET vset = '2' WHERE name = 'JWT_SECRET'`, "secret production/JWT_SECRET"},
		{"highest number lowered (reuse)", `UPDATE secret SET last_n = 1 WHERE name = 'JWT_SECRET'`, "secret production/JWT_SECRET"},
		{"version created date backdated", `UPDATE version SET created_at = 0 WHERE n = 2 AND secret_id = (SELECT id FROM secret WHERE name = 'JWT_SECRET')`, "version production/JWT_SECRET v2"},
		{"version note edited", `UPDATE version SET note = 'rollback of v1' WHERE n = 2 AND secret_id = (SELECT id FROM secret WHERE name = 'JWT_SECRET')`, "version production/JWT_SECRET v2"},
		{"rotation state edited", `UPDATE rotation SET state = 'running'`, "rotation"},
		{"rotation deleted", `DELETE FROM rotation`, "rotation"},
		{"kdf parameters added", `INSERT INTO meta(k, v) VALUES ('kdf2', x'00')`, "meta"},
		{"store key id edited", `UPDATE meta SET v = CAST('other' AS BLOB) WHERE k = 'store_id'`, "meta"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newAtProject(t)
			p.must("rotate", "JWT_SECRET")
			p.sql(c.sql)
			p.everyCommandRefuses("store was changed outside rekey", c.want)
		})
	}
}

// TestAttackVersionDeleted: an old version's row deleted. Commands that
// never read it go on (nothing acts on it); every reader of it, and
// `audit verify`, refuses.
func TestAttackVersionDeleted(t *testing.T) {
	p := newAtProject(t)
	p.must("rotate", "JWT_SECRET")
	p.sql(`DELETE FROM version WHERE n = 1 AND secret_id = (SELECT id FROM secret WHERE name = 'JWT_SECRET')`)
	for _, args := range [][]string{{"history", "JWT_SECRET"}, {"get", "JWT_SECRET", "--version", "1"}, {"rollback", "JWT_SECRET"}, {"audit", "verify"}} {
		p.refused(args, "version production/JWT_SECRET v1", "deleted")
	}
}

// TestAttackReplayedRow: an older copy of a secret's row (its labels as
// they were before a rotation), put back. Each copy had a valid MAC.
func TestAttackReplayedRow(t *testing.T) {
	p := newAtProject(t)
	saved := filepath.Join(t.TempDir(), "old.db")
	testkit.CopyFile(t, p.store(), saved)
	p.must("rotate", "JWT_SECRET")
	p.sql(`ATTACH '`+saved+`' AS old`,
		`UPDATE secret SET (last_n, cur, pend, prev, vset, attrs, mac) = (SELECT last_n, cur, pend, prev, vset, attrs, mac FROM old.secret o WHERE o.name = secret.name AND o.env = secret.env) WHERE name = 'JWT_SECRET'`)
	p.everyCommandRefuses("secret production/JWT_SECRET", "older copy")
}

// TestAttackSwappedEnvironments: the version rows of one environment's
// secret given to another's (the sealed values' AEAD refuses to open, but
// the metadata must be refused first).
func TestAttackSwappedEnvironments(t *testing.T) {
	p := newAtProject(t)
	staging := "JWT_SECRET=" + ctRandB64(64, base64.StdEncoding) + "\nRUST_LOG=debug\n"
	if err := os.WriteFile(filepath.Join(p.dir, ".env.staging"), []byte(staging), 0o600); err != nil {
		t.Fatal(err)
	}
	p.must("init", "--environment", "staging", "--env-file", ".env.staging")
	p.sql(`UPDATE version SET secret_id = -secret_id WHERE secret_id IN (SELECT id FROM secret WHERE name = 'JWT_SECRET')`,
		`UPDATE version SET secret_id = (SELECT id FROM secret WHERE name = 'JWT_SECRET' AND env = 'staging') WHERE secret_id = -(SELECT id FROM secret WHERE name = 'JWT_SECRET' AND env = 'production')`,
		`UPDATE version SET secret_id = (SELECT id FROM secret WHERE name = 'JWT_SECRET' AND env = 'production') WHERE secret_id = -(SELECT id FROM secret WHERE name = 'JWT_SECRET' AND env = 'staging')`)
	p.everyCommandRefuses("store was changed outside rekey", "JWT_SECRET v1", "moved from another secret or environment")
}

// TestAttackAuditTruncated: the last audit entries, or all of them, deleted.
func TestAttackAuditTruncated(t *testing.T) {
	for _, c := range []struct{ name, sql, want string }{
		{"last entries", `DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 3 FROM audit)`, "store was changed outside rekey: the audit log ends at entry"},
		{"all of it", `DELETE FROM audit`, "entries were deleted"},
		// The chain names the first broken entry when it can.
		{"last entry replaced by an earlier one", `UPDATE audit SET (actor, action, env, secret, version, fingerprint, outcome, detail, hash) = (SELECT actor, action, env, secret, version, fingerprint, outcome, detail, hash FROM audit WHERE seq = 1) WHERE seq = (SELECT MAX(seq) FROM audit)`, "audit chain broken at entry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newAtProject(t)
			p.must("rotate", "JWT_SECRET")
			p.sql(c.sql)
			p.everyCommandRefuses(c.want)
		})
	}
}

// TestAttackWholeStoreRolledBack: .rekey/rekey.db replaced by an older copy
// of itself (consistent inside: only the anchor outside can tell).
func TestAttackWholeStoreRolledBack(t *testing.T) {
	p := newAtProject(t)
	saved := filepath.Join(t.TempDir(), "old.db")
	testkit.CopyFile(t, p.store(), saved)
	leaked := p.must("get", "JWT_SECRET", "-n")
	p.must("rotate", "JWT_SECRET")
	p.must("status")
	testkit.CopyFile(t, saved, p.store())
	p.everyCommandRefuses("older than this machine last saw", "rekey audit anchor --reset")
	if strings.Contains(p.envFile(), leaked) {
		t.Fatal("the rolled-back value was published")
	}
	// The operator who restored a backup on purpose says so, and why.
	if _, errs, code := p.run("audit", "anchor", "--reset"); code != 2 || !strings.Contains(errs, "--reason") {
		t.Fatalf("anchor --reset without a reason: exit %d\n%s", code, errs)
	}
	p.must("audit", "anchor", "--reset", "--reason", "restored last night's backup")
	// The backup predates the rotation whose value the .env holds: status
	// says so (drift, exit 8) and how to record it.
	if out, errs, code := p.run("status"); code != 8 || !strings.Contains(out, "drift") || !strings.Contains(errs, "rekey set JWT_SECRET --from-target") {
		t.Fatalf("status after restoring an older store: exit %d\n%s%s", code, out, errs)
	}
	if out := p.must("audit"); !strings.Contains(out, "anchor.reset") {
		t.Fatalf("the reset is not audited:\n%s", out)
	}
	p.must("audit", "verify")
}

// TestAttackAnchorLagIsFine: an anchor that lags (a command killed before
// it saved it) is not a false alarm; an anchor forged without the master key
// is refused, not trusted.
func TestAttackAnchorLagIsFine(t *testing.T) {
	p := newAtProject(t)
	p.must("rotate", "JWT_SECRET")
	anchors, _ := filepath.Glob(filepath.Join(p.env["XDG_STATE_HOME"], "rekey", "anchors", "*.anchor"))
	if len(anchors) != 1 {
		t.Fatalf("anchors: %v, want one", anchors)
	}
	lag, err := os.ReadFile(anchors[0])
	if err != nil {
		t.Fatal(err)
	}
	p.must("rotate", "JWT_SECRET")
	if err := os.WriteFile(anchors[0], lag, 0o600); err != nil { // as if the last command died before saving it
		t.Fatal(err)
	}
	p.must("status")
	out := p.must("audit", "verify")
	if !strings.Contains(out, "anchor ok") {
		t.Fatalf("audit verify:\n%s", out)
	}
	// A forged anchor (no master key) is refused, not trusted.
	if err := os.WriteFile(anchors[0], []byte(strings.Replace(string(lag), "seq ", "seq 9", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.refused([]string{"status"}, "does not authenticate")
}

// TestAttackKDFParameters: a passphrase store whose KDF parameters were
// raised to 4 GiB must not make a command allocate them.
func TestAttackKDFParameters(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"REKEY_MASTER_KEY": "", "REKEY_PASSPHRASE": "correct horse battery staple", "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir()}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env", "--passphrase"); code != 0 {
		t.Fatalf("init --passphrase: exit %d\n%s", code, errs)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, ".rekey", "rekey.db"))
	if err != nil {
		t.Fatal(err)
	}
	var kdf string
	if err := db.QueryRow(`SELECT CAST(v AS TEXT) FROM meta WHERE k = 'kdf'`).Scan(&kdf); err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(kdf, "m=65536", "m=4194304", 1)
	if tampered == kdf {
		t.Fatalf("unexpected kdf %q", kdf)
	}
	if _, err := db.Exec(`UPDATE meta SET v = CAST(? AS BLOB) WHERE k = 'kdf'`, tampered); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, errs, code := runIn(t, dir, env, "", "status")
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if code != 6 || !strings.Contains(errs, "m must be") {
		t.Fatalf("status with m=4 GiB: exit %d, want 6 naming the parameter\n%s", code, errs)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Fatalf("status allocated %d MiB for a tampered KDF", grew>>20)
	}
}
