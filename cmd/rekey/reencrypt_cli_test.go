package main

// rekey rotate ENCRYPTION_KEY against a real PostgreSQL: every PII value is
// re-encrypted to the new key (AES-256-GCM, nonce || ciphertext || tag,
// base64, as the atlas app and Rust's aes-gcm store it), through crashes at
// the step boundaries, with a corrupt row that keeps the old key until it is
// fixed and `rekey reencrypt` finishes.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

type rcProject struct {
	*ctProject
	cluster *pgtest.Cluster
	url     string
	plain   map[int64][2]string // id → email, ssn
}

func rcSeal(t *testing.T, key, plaintext string) string {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, []byte(plaintext), nil))
}

func rcOpen(key, stored string) (string, bool) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(stored)
	if err != nil || len(b) < 28 {
		return "", false
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	p, err := gcm.Open(nil, b[:12], b[12:], nil)
	return string(p), err == nil
}

func rcNewProject(t *testing.T, db string, rows int, extraEnv ...string) *rcProject {
	t.Helper()
	c := startCluster(t)
	if err := c.CreateDatabase(db); err != nil {
		t.Fatal(err)
	}
	key := ctRandB64(32, base64.StdEncoding)
	p := &rcProject{cluster: c, url: c.ConnString(c.SuperUser, c.SuperPassword, db), plain: map[int64][2]string{}}
	// The project: a manual DATABASE_URL (no password rotation here) and the key.
	p.ctProject = ctBareProject(t, "DATABASE_URL="+p.url+"\nENCRYPTION_KEY="+key+"\nRUST_LOG=info\n"+strings.Join(extraEnv, ""), "reencrypt-test")
	p.exec(`CREATE TABLE patients (id bigint PRIMARY KEY, email text, ssn text)`)
	var src [][]any
	for i := int64(1); i <= int64(rows); i++ {
		email, ssn := fmt.Sprintf("patient%d@example.com", i), fmt.Sprintf("%03d-%02d-%04d", i%1000, i%100, i)
		row := []any{i, rcSeal(t, key, email), rcSeal(t, key, ssn)}
		if i%10 == 0 {
			row[2], ssn = nil, "" // NULLs stay NULL
		}
		p.plain[i] = [2]string{email, ssn}
		src = append(src, row)
	}
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"id", "email", "ssn"}, pgx.CopyFromRows(src)); err != nil {
			t.Fatal(err)
		}
	})
	p.must("init", "--env-file", ".env")
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "\n  ENCRYPTION_KEY:\n", "\n  ENCRYPTION_KEY:\n    reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [patients.email, patients.ssn], batch_size: 500}\n")
	p.must("config", "trust") // the operator approves the edit
	return p
}

// withDB runs f on a connection to the project's database, closed after.
func (p *rcProject) withDB(f func(ctx context.Context, conn *pgx.Conn)) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	f(ctx, conn)
}

// envKeys returns ENCRYPTION_KEY and ENCRYPTION_KEY_PREVIOUS of the .env.
func (p *rcProject) envKeys() (string, string) {
	data := p.readEnv()
	k, _ := ctEnvValue(data, "ENCRYPTION_KEY")
	prev, _ := ctEnvValue(data, "ENCRYPTION_KEY_PREVIOUS")
	return k, prev
}

// check reads every row: each value opens with key to its original
// plaintext (NULLs stay NULL), except the ids in skip.
func (p *rcProject) check(key string, skip ...int64) {
	t := p.t
	t.Helper()
	p.withDB(func(ctx context.Context, conn *pgx.Conn) { p.checkRows(ctx, conn, key, skip) })
}

// checkRows is check on conn.
func (p *rcProject) checkRows(ctx context.Context, conn *pgx.Conn, key string, skip []int64) {
	t := p.t
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT id, email, ssn FROM patients ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var email string
		var ssn *string
		if err := rows.Scan(&id, &email, &ssn); err != nil {
			t.Fatal(err)
		}
		n++
		if slices.Contains(skip, id) {
			continue
		}
		want := p.plain[id]
		if got, ok := rcOpen(key, email); !ok || got != want[0] {
			t.Fatalf("row %d email does not open with the current key to its plaintext", id)
		}
		if want[1] == "" {
			if ssn != nil {
				t.Fatalf("row %d: a NULL ssn was written", id)
			}
		} else if ssn == nil {
			t.Fatalf("row %d: ssn became NULL", id)
		} else if got, ok := rcOpen(key, *ssn); !ok || got != want[1] {
			t.Fatalf("row %d ssn does not open with the current key to its plaintext", id)
		}
	}
	if n != len(p.plain) {
		t.Fatalf("%d rows, want %d", n, len(p.plain))
	}
}

func (p *rcProject) exec(sql string, args ...any) {
	p.t.Helper()
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			p.t.Fatal(err)
		}
	})
}

func TestReencryptRotation(t *testing.T) {
	p := rcNewProject(t, "atlas", 3000)
	old, _ := p.envKeys()
	r := p.run("rotate", "ENCRYPTION_KEY")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	key, prev := p.envKeys()
	if key == old || prev != "" {
		t.Fatalf("after the rotation the .env should hold the new key alone (new %v, previous left %v)", key != old, prev != "")
	}
	if got := strings.TrimSpace(p.must("get", "ENCRYPTION_KEY")); got != key {
		t.Fatal("the .env key is not the store's current")
	}
	p.check(key)
	if !strings.Contains(r.stderr, "re-encrypted 5700 values of ENCRYPTION_KEY") {
		t.Errorf("rotate did not report the re-encryption:\n%s", r.stderr)
	}
	v := p.must("reencrypt", "--verify")
	if !strings.Contains(v, "every value is on the current key") || !strings.Contains(v, "patients.email") {
		t.Errorf("reencrypt --verify:\n%s", v)
	}
	// A rehearsal runs on a copy and leaves the database as it was.
	reh := p.must("reencrypt", "--rehearse")
	if !strings.Contains(reh, "rehearsal on a copy of the database (template") || !strings.Contains(reh, "for 3000 rows") || !strings.Contains(reh, "5700 values re-encrypted") || !strings.Contains(reh, "patients:") {
		t.Errorf("reencrypt --rehearse:\n%s", reh)
	}
	p.check(key)
	if a := p.must("audit", "--secret", "ENCRYPTION_KEY"); !strings.Contains(a, "rotate.reencrypt") {
		t.Errorf("no re-encryption record in the audit log:\n%s", a)
	}
	for _, out := range []string{r.stdout, r.stderr, v} {
		if strings.Contains(out, key) || strings.Contains(out, old) {
			t.Fatal("a key value appears in rekey's output")
		}
	}
}

// Killed at every step boundary of a data-key rotation after create (the
// engine's step table lists them), recovered: every row is on the store's
// current key and the .env holds it alone.
func TestReencryptCrashMatrix(t *testing.T) {
	p := rcNewProject(t, "atlas", 1200)
	var points []string
	for _, fp := range engine.FaultPoints(engine.NeedOnline) {
		if fp.Recovery != engine.NotCreated {
			points = append(points, fp.Point)
		}
	}
	for _, point := range points {
		p.crash(point, "rotate", "ENCRYPTION_KEY")
		if r := p.run("recover"); r.code != 0 {
			t.Fatalf("recover after a crash at %s: %v", point, r)
		}
		key, prev := p.envKeys()
		if prev != "" {
			t.Fatalf("%s: ENCRYPTION_KEY_PREVIOUS still in the .env after recovery", point)
		}
		if got := strings.TrimSpace(p.must("get", "ENCRYPTION_KEY")); got != key {
			t.Fatalf("%s: the .env key is not the store's current after recovery", point)
		}
		p.check(key)
	}
}

// A value that opens with neither key: rotate exits 7 naming the row, the
// row is untouched, the old key stays (sealed and as ENCRYPTION_KEY_PREVIOUS),
// status needs attention, another rotation is refused; once the row is
// repaired, `rekey reencrypt` finishes and the old key leaves the .env.
func TestReencryptCorruptRow(t *testing.T) {
	p := rcNewProject(t, "atlas", 500)
	old, _ := p.envKeys()
	p.exec(`UPDATE patients SET email = 'bm90IGEgY2lwaGVydGV4dCBhdCBhbGwsIGp1c3QgdGV4dA==' WHERE id = 7`)
	r := p.run("rotate", "ENCRYPTION_KEY")
	if r.code != 7 || !strings.Contains(r.stderr, "patients (id)=(7) column email") {
		t.Fatalf("want exit 7 naming the corrupt row: %v", r)
	}
	key, prev := p.envKeys()
	if prev != old || key == old {
		t.Fatal("after an incomplete re-encryption the .env should hold the new key and the old one as ENCRYPTION_KEY_PREVIOUS")
	}
	p.check(key, 7)
	var email string
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		conn.QueryRow(ctx, `SELECT email FROM patients WHERE id = 7`).Scan(&email)
	})
	if email != "bm90IGEgY2lwaGVydGV4dCBhdCBhbGwsIGp1c3QgdGV4dA==" {
		t.Fatal("the corrupt row was changed")
	}
	if s := p.run("status"); s.code != 8 || !strings.Contains(s.stdout, "reencrypt-incomplete") {
		t.Errorf("status: %v", s)
	}
	if v := p.run("reencrypt", "--verify"); v.code != 7 || !strings.Contains(v.stdout, "1 values open with neither key") {
		t.Errorf("reencrypt --verify: %v", v)
	}
	if r := p.run("rotate", "ENCRYPTION_KEY"); r.code != 4 {
		t.Errorf("a second rotation while rows need the old key: %v", r)
	}
	// Repaired from a backup: the row under the old key again.
	p.exec(`UPDATE patients SET email = $1 WHERE id = 7`, rcSeal(t, old, p.plain[7][0]))
	if r := p.run("reencrypt"); r.code != 0 || !strings.Contains(r.stdout, "every row is on the current key") {
		t.Fatalf("reencrypt: %v", r)
	}
	key2, prev2 := p.envKeys()
	if key2 != key || prev2 != "" {
		t.Fatal("after reencrypt the .env should hold the current key alone")
	}
	p.check(key)
	if s := p.run("status"); strings.Contains(s.stdout, "reencrypt-incomplete") {
		t.Errorf("status still incomplete: %v", s)
	}
	if r := p.run("rotate", "ENCRYPTION_KEY"); r.code != 0 {
		t.Fatalf("rotation after the repair: %v", r)
	}
}

// on_rotate SQL hooks run against the real database after publish: a
// session table is emptied when JWT_SECRET rotates (immediate mode); a hook
// that fails rolls a manual rotation back, and its error shows no value.
func TestSessionsSQLHook(t *testing.T) {
	p := rcNewProject(t, "atlas", 10, "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n")
	p.exec(`CREATE TABLE sessions (id int PRIMARY KEY, token text)`)
	p.exec(`INSERT INTO sessions SELECT g, 'tok' || g FROM generate_series(1, 3) g`)
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	hook := "\n  JWT_SECRET:\n    sessions: {mode: immediate, on_rotate: [{sql: DELETE FROM sessions, database: DATABASE_URL}]}\n"
	testkit.EditFile(t, cfgPath, "\n  JWT_SECRET:\n", hook)
	p.must("config", "trust")
	r := p.run("rotate", "JWT_SECRET")
	if r.code != 0 || !strings.Contains(r.stderr, "on_rotate: DELETE FROM sessions (3 rows)") {
		t.Fatalf("%v", r)
	}
	var n int
	p.withDB(func(ctx context.Context, conn *pgx.Conn) {
		conn.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&n)
	})
	if n != 0 {
		t.Fatalf("%d sessions left after the rotation", n)
	}
	// A hook that fails: the rotation rolls back.
	before, _ := ctEnvValue(p.readEnv(), "JWT_SECRET")
	testkit.EditFile(t, cfgPath, "DELETE FROM sessions", "DELETE FROM no_such_table")
	p.must("config", "trust")
	r = p.run("rotate", "JWT_SECRET")
	if r.code != 7 || !strings.Contains(r.stderr, "sql hook failed") || !strings.Contains(r.stderr, "rotation rolled back") {
		t.Fatalf("want a rollback on a failing hook: %v", r)
	}
	if after, _ := ctEnvValue(p.readEnv(), "JWT_SECRET"); after != before {
		t.Fatal("JWT_SECRET not rolled back")
	}
	if strings.Contains(r.stderr, before) || strings.Contains(r.stderr, p.url) {
		t.Fatal("a value appears in the error")
	}
}

// TestReencryptCommandCodecStderrRedacted: a careless command codec prints
// every key it is handed on its stderr; what the operator sees of it is
// redacted, and the rows still move (a real cluster, the python codec).
func TestReencryptCommandCodecStderrRedacted(t *testing.T) {
	p := rcNewProject(t, "atlas", 300)
	src, err := os.ReadFile("../../internal/reencrypt/testdata/codec.py")
	if err != nil {
		t.Fatal(err)
	}
	leaky := strings.Replace(string(src), "        verb, key_b64, data_b64 = parts\n",
		"        verb, key_b64, data_b64 = parts\n        sys.stderr.write('codec: key ' + base64.b64decode(key_b64).decode() + '\\n')\n        sys.stderr.flush()\n", 1)
	if leaky == string(src) {
		t.Fatal("codec.py changed: cannot make it leak")
	}
	script := filepath.Join(t.TempDir(), "leaky_codec.py")
	if err := os.WriteFile(script, []byte(leaky), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	testkit.EditFile(t, cfgPath, "codec: aes-256-gcm", "codec: command, command: [python3, "+script+"]")
	p.must("config", "trust")
	old, _ := p.envKeys()
	r := p.run("rotate", "ENCRYPTION_KEY")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	key, _ := p.envKeys()
	p.check(key)
	if !strings.Contains(r.stderr, "codec: key "+rekey.Redacted) {
		t.Fatalf("the codec's stderr did not come through redacted:\n%s", r.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, key) || strings.Contains(out, old) {
			t.Fatalf("a key value appears in rekey's output:\n%s", out)
		}
	}
}

// reencrypt --json (finish, --verify, --rehearse) against a real database:
// each document parses, its keys are snake_case, and its figures are the
// rows'. (TestJSONGolden covers the runs without a database.)
func TestReencryptJSON(t *testing.T) {
	p := rcNewProject(t, "atlas", 200)
	p.must("rotate", "ENCRYPTION_KEY")
	var counts struct {
		Secrets []struct {
			Secret  string `json:"secret"`
			Neither int64  `json:"neither"`
			Keys    []struct {
				Version int    `json:"version"`
				Label   string `json:"label"`
				Values  int64  `json:"values"`
			} `json:"keys"`
			Columns []struct {
				Table, Column string
			} `json:"columns"`
		} `json:"secrets"`
	}
	out := p.must("reencrypt", "--verify", "--json")
	decodeSnake(t, out, &counts)
	if len(counts.Secrets) != 1 || counts.Secrets[0].Secret != "ENCRYPTION_KEY" || counts.Secrets[0].Neither != 0 ||
		len(counts.Secrets[0].Keys) == 0 || counts.Secrets[0].Keys[0].Label != "current" || counts.Secrets[0].Keys[0].Values == 0 ||
		len(counts.Secrets[0].Columns) == 0 {
		t.Errorf("reencrypt --verify --json:\n%s", out)
	}
	var reh struct {
		Rehearsals []struct {
			Secret      string `json:"secret"`
			Method      string `json:"method"`
			Rows        int64  `json:"rows"`
			Reencrypted int64  `json:"reencrypted"`
			Tables      []struct {
				Table       string `json:"table"`
				BeforeBytes int64  `json:"before_bytes"`
			} `json:"tables"`
		} `json:"rehearsals"`
	}
	out = p.must("reencrypt", "--rehearse", "--json")
	decodeSnake(t, out, &reh)
	if len(reh.Rehearsals) != 1 || reh.Rehearsals[0].Rows != 200 || reh.Rehearsals[0].Reencrypted == 0 ||
		len(reh.Rehearsals[0].Tables) == 0 || reh.Rehearsals[0].Tables[0].BeforeBytes == 0 {
		t.Errorf("reencrypt --rehearse --json:\n%s", out)
	}
	var fin struct {
		Finished []string `json:"finished"`
	}
	out = p.must("reencrypt", "--json")
	decodeSnake(t, out, &fin)
	if fin.Finished == nil || len(fin.Finished) != 0 {
		t.Errorf("reencrypt --json with nothing to finish:\n%s", out)
	}
}

// decodeSnake parses out into v after checking every key is snake_case.
func decodeSnake(t *testing.T, out string, v any) {
	t.Helper()
	doc, err := parseJSONDoc(out)
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	checkSnake(t, doc, "$")
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
