package reencrypt

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// childEnv names the variable that turns the test binary into a
// re-encryption child (see runChild): the value is a spec file path.
const childEnv = "REKEY_REENCRYPT_TEST_CHILD"

// codecEnv turns the test binary into a command codec program (see
// runCodecHelper).
const codecEnv = "REKEY_REENCRYPT_TEST_CODEC"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	if mode := os.Getenv(codecEnv); mode != "" {
		os.Exit(runCodecHelper(mode))
	}
	testkit.Main(m)
}

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t, 90*time.Second) }

// newDB creates a fresh database and returns its DSN and a superuser
// connection to it (closed at cleanup). quiet turns off statement logging
// for it (big tests).
func newDB(t testing.TB, quiet bool) (string, *pgx.Conn) {
	t.Helper()
	c := testkit.Cluster(t)
	name := testkit.Unique("re_" + strings.ToLower(sanitize(t.Name())))
	if len(name) > 60 {
		name = name[len(name)-60:]
		name = "r" + name[1:]
	}
	if err := c.CreateDatabase(name); err != nil {
		t.Fatal(err)
	}
	if quiet {
		if err := c.Exec(testCtx(t), "ALTER DATABASE "+quoteIdent(name)+" SET log_statement = 'none'"); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := c.Connect(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return c.SuperConnString(name), conn
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func mustExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// newKey32 returns a random 32-byte key in the given text encoding.
func newKey32(t testing.TB, enc string) rekey.Value {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	switch enc {
	case "hex":
		return rekey.NewValueString(fmt.Sprintf("%x", b))
	case "base64url":
		return rekey.NewValueString(base64.URLEncoding.EncodeToString(b))
	case "rawurl":
		return rekey.NewValueString(base64.RawURLEncoding.EncodeToString(b))
	default:
		return rekey.NewValueString(base64.StdEncoding.EncodeToString(b))
	}
}

// keyPair returns an old and a new random key (base64 of 32 bytes) and
// their ciphers for cfg.
func keyPair(t testing.TB, cfg rekey.ReencryptSpec) (oldK, newK rekey.Value, oldC, newC *Cipher) {
	t.Helper()
	oldK, newK = newKey32(t, "base64"), newKey32(t, "base64")
	return oldK, newK, mustCipher(t, cfg, oldK), mustCipher(t, cfg, newK)
}

func mustCipher(t testing.TB, cfg rekey.ReencryptSpec, k rekey.Value) *Cipher {
	t.Helper()
	c, err := NewCipher(cfg, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func encrypt(t testing.TB, c *Cipher, pt string) []byte {
	t.Helper()
	v, err := c.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// plaintextOf is the deterministic plaintext of row id, column col.
func plaintextOf(id int64, col string) string {
	return fmt.Sprintf("%s-%d@example.com", col, id)
}

// seedTable creates table name (id bigint primary key, email, ssn) with n
// rows encrypted by c, in the column type the encoding needs.
func seedTable(t testing.TB, conn *pgx.Conn, name string, cfg rekey.ReencryptSpec, c *Cipher, n int) {
	t.Helper()
	typ := "text"
	if normalized(cfg).Encoding == EncodingBytea {
		typ = "bytea"
	}
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, name text, email %s, ssn %s)", quoteIdent(name), typ, typ))
	rows := make([][]any, 0, n)
	for i := 1; i <= n; i++ {
		id := int64(i)
		rows = append(rows, []any{id, "n" + strconv.Itoa(i), cell(t, cfg, c, plaintextOf(id, "email")), cell(t, cfg, c, plaintextOf(id, "ssn"))})
	}
	if _, err := conn.CopyFrom(testCtx(t), pgx.Identifier{name}, []string{"id", "name", "email", "ssn"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
}

// cell is the stored form of pt: string for text columns, []byte for bytea.
func cell(t testing.TB, cfg rekey.ReencryptSpec, c *Cipher, pt string) any {
	v := encrypt(t, c, pt)
	if normalized(cfg).Encoding == EncodingBytea {
		return v
	}
	return string(v)
}

// readAll returns id → stored values of the columns, in id order.
func readAll(t testing.TB, conn *pgx.Conn, table string, cols ...string) map[int64][][]byte {
	t.Helper()
	var sel []string
	for _, c := range cols {
		sel = append(sel, quoteIdent(c))
	}
	rows, err := conn.Query(testCtx(t), "SELECT id, "+strings.Join(sel, ", ")+" FROM "+quoteIdent(table)+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][][]byte{}
	for rows.Next() {
		raw := rows.RawValues()
		var id int64
		if err := rows.Scan(append([]any{&id}, anyDiscard(len(cols))...)...); err != nil {
			t.Fatal(err)
		}
		vals := make([][]byte, len(cols))
		for i := range cols {
			if raw[i+1] != nil {
				vals[i] = append([]byte{}, raw[i+1]...)
			}
		}
		out[id] = vals
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func anyDiscard(n int) []any {
	out := make([]any, n)
	for i := range out {
		var x any
		out[i] = &x
	}
	return out
}

// checkDecrypts asserts every row's columns decrypt with c to plaintextOf.
func checkDecrypts(t testing.TB, conn *pgx.Conn, table string, c *Cipher, n int, cols ...string) {
	t.Helper()
	all := readAll(t, conn, table, cols...)
	if len(all) != n {
		t.Fatalf("%d rows, want %d", len(all), n)
	}
	bad := 0
	for id, vals := range all {
		for i, v := range vals {
			pt, err := c.Decrypt(v)
			if err != nil || string(pt) != plaintextOf(id, cols[i]) {
				bad++
				if bad < 5 {
					t.Errorf("row %d column %s: does not decrypt to its plaintext with the new key (%v)", id, cols[i], err)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d values wrong", bad)
	}
}

// childSpec is what a re-encryption child runs.
type childSpec struct {
	DSN       string
	Config    rekey.ReencryptSpec
	Old, New  string
	JobID     string
	StatusOut string // where the child writes its result as JSON
}

// runChild runs one re-encryption described by the spec file and writes
// its result; exit 0 on success, 3 on ErrUndecryptable, 1 otherwise.
func runChild(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var s childSpec
	if err := json.Unmarshal(b, &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	res, err := Run(context.Background(), Job{DSN: s.DSN, Config: s.Config, Old: rekey.NewValueString(s.Old), New: rekey.NewValueString(s.New), JobID: s.JobID})
	if s.StatusOut != "" && res != nil {
		out, _ := json.Marshal(res)
		_ = os.WriteFile(s.StatusOut, out, 0o600)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
