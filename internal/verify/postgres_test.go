package verify

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The test codec: AES-256-GCM, nonce||ciphertext, base64 (the atlas app's
// layout). The real one comes from the codec package through the Opener.

func gcmOf(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func seal(t *testing.T, key []byte, plain string) string {
	t.Helper()
	g, err := gcmOf(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, []byte(plain), nil))
}

func testOpener(s rekey.DecryptSample, key rekey.Value) (func([]byte) error, error) {
	if s.Codec != "aes-256-gcm" || s.Encoding != "base64" {
		return nil, errors.New("unsupported codec")
	}
	k, err := base64.StdEncoding.DecodeString(key.RevealString())
	if err != nil || len(k) != 32 {
		return nil, errors.New("the key is not base64 of 32 bytes")
	}
	g, err := gcmOf(k)
	if err != nil {
		return nil, err
	}
	return func(ct []byte) error {
		raw, err := base64.StdEncoding.DecodeString(string(ct))
		if err != nil {
			return errors.New("not base64")
		}
		if len(raw) < g.NonceSize() {
			return errors.New("too short")
		}
		_, err = g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], nil)
		return err
	}, nil
}

// setup creates a database with a login role and a patients table: rows
// 1-4 encrypted under keyA, row 5 under keyB, row 6 NULL.
func setup(t *testing.T) (c *pgtest.Cluster, url string, keyA, keyB []byte) {
	c = testkit.Cluster(t)
	ctx := context.Background()
	db := "verify_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))
	// Fresh under -count=N too: one cluster serves every run of the binary.
	c.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	c.Exec(ctx, "DROP ROLE IF EXISTS "+db+"_app")
	if err := c.CreateDatabase(db); err != nil {
		t.Fatal(err)
	}
	const pw = "app-pass-W0rd/with:odd@chars"
	role := db + "_app"
	if err := c.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, role, pw)); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	keyA, keyB = make([]byte, 32), make([]byte, 32)
	rand.Read(keyA)
	rand.Read(keyB)
	if _, err := conn.Exec(ctx, `CREATE TABLE patients (id int PRIMARY KEY, email text); GRANT SELECT, INSERT ON patients TO `+role); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		k := keyA
		if i == 5 {
			k = keyB
		}
		if _, err := conn.Exec(ctx, `INSERT INTO patients VALUES ($1, $2)`, i, seal(t, k, fmt.Sprintf("p%d@example.com", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO patients VALUES (6, NULL)`); err != nil {
		t.Fatal(err)
	}
	return c, c.ConnString(role, pw, db), keyA, keyB
}

func dbCheck(name string) rekey.Check {
	c := check(name, 0)
	return c
}

func TestPostgres(t *testing.T) {
	c, url, _, _ := setup(t)
	resolve := values(map[string]string{"DATABASE_URL": url, "BAD_URL": strings.Replace(url, "app-pass", "wrong-pass", 1), "NOT_A_URL": "hello"})
	pg := func(name, urlName string) rekey.Check {
		k := dbCheck(name)
		k.Type, k.Postgres = rekey.CheckPostgres, &rekey.PostgresCheck{URL: urlName}
		return k
	}
	before, err := c.ServerLog() // setup's CREATE ROLE holds the password
	if err != nil {
		t.Fatal(err)
	}
	rs := Run(context.Background(), []rekey.Check{pg("db", "DATABASE_URL"), pg("bad", "BAD_URL"), pg("notaurl", "NOT_A_URL")}, resolve, Options{Postgres: postgres.URLDialer{}})
	if !rs[0].OK || rs[0].Message != "logged in with DATABASE_URL" {
		t.Errorf("%+v", rs[0])
	}
	if r := rs[1]; r.OK || !strings.Contains(r.Message, "log in with BAD_URL") || !strings.Contains(r.Message, "password authentication failed") ||
		!strings.Contains(r.Hint, "rekey recover --probe") {
		t.Errorf("%+v", r)
	}
	if r := rs[2]; r.OK || r.Attempts != 1 || !strings.Contains(r.Message, "NOT_A_URL is not a usable connection URL") {
		t.Errorf("%+v", r)
	}
	for _, r := range rs {
		if strings.Contains(r.Message+r.Hint, "pass-W0rd") {
			t.Errorf("a password shows: %+v", r)
		}
	}
	log, err := c.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log[len(before):]), "pass-W0rd") {
		t.Error("a password reached the server log")
	}
}

func TestSQL(t *testing.T) {
	_, url, _, _ := setup(t)
	resolve := values(map[string]string{"DATABASE_URL": url})
	q := func(name, query, expect string) rekey.Check {
		k := dbCheck(name)
		k.Type, k.SQL = rekey.CheckSQL, &rekey.SQLCheck{URL: "DATABASE_URL", Query: query, Expect: expect}
		return k
	}
	rs := Run(context.Background(), []rekey.Check{
		q("count", "SELECT count(*) FROM patients", "6"),
		q("bool-go", "SELECT count(*) > 0 FROM patients", "true"),
		q("bool-pg", "SELECT count(*) > 0 FROM patients", "t"),
		q("null", "SELECT NULL", "null"),
		q("wrong", "SELECT count(*) FROM patients", "7"),
		q("two-columns", "SELECT 1, 2", "1"),
		q("no-rows", "SELECT 1 WHERE false", "1"),
		q("read-only", "INSERT INTO patients VALUES (99, 'x') RETURNING 1", "1"),
		q("syntax", "SELEC 1", "1"),
	}, resolve, Options{Postgres: postgres.URLDialer{}})
	for i, r := range rs[:4] {
		if !r.OK {
			t.Errorf("%d: %+v", i, r)
		}
	}
	want := map[string]string{
		"wrong":       `the query returned "6", want "7"`,
		"two-columns": "the query returns 2 columns, want one",
		"no-rows":     "the query returned 0 rows, want one",
		"read-only":   "read-only transaction",
		"syntax":      "syntax error",
	}
	for _, r := range rs[4:] {
		if r.OK || !strings.Contains(r.Message, want[r.Name]) {
			t.Errorf("%s: %+v, want %q", r.Name, r, want[r.Name])
		}
	}
}

func TestDecryptSample(t *testing.T) {
	_, url, keyA, keyB := setup(t)
	b64 := base64.StdEncoding.EncodeToString
	sample := func(name, key string, rows int) rekey.Check {
		k := dbCheck(name)
		k.Type, k.DecryptSample = rekey.CheckDecryptSample, &rekey.DecryptSample{URL: "DATABASE_URL", Table: "public.patients", Column: "email", Rows: rows, Key: key, Codec: "aes-256-gcm", Encoding: "base64"}
		return k
	}
	resolve := values(map[string]string{"DATABASE_URL": url, "KEY_A": b64(keyA), "KEY_B": b64(keyB), "SHORT": "c2hvcnQ="})
	o := Options{Opener: testOpener, Postgres: postgres.URLDialer{}}
	rs := Run(context.Background(), []rekey.Check{
		sample("first-four", "KEY_A", 4),
		sample("all", "KEY_A", 100),
		sample("other-key", "KEY_B", 100),
		sample("bad-key", "SHORT", 10),
	}, resolve, o)
	if r := rs[0]; !r.OK || r.Message != "4 sampled values open" {
		t.Errorf("%+v", r)
	}
	if r := rs[1]; r.OK || !strings.Contains(r.Message, "1 of 5 sampled values of public.patients.email do not open with the current KEY_A") || !strings.Contains(r.Hint, "re-encryption") {
		t.Errorf("%+v", r)
	}
	if r := rs[2]; r.OK || !strings.Contains(r.Message, "4 of 5 sampled values") {
		t.Errorf("%+v", r)
	}
	if r := rs[3]; r.OK || r.Attempts != 1 || !strings.Contains(r.Message, "cannot use SHORT: the key is not base64 of 32 bytes") {
		t.Errorf("%+v", r)
	}
	k := sample("no-table", "KEY_A", 1)
	k.DecryptSample.Table = "nope"
	if r := runOne(t, k, resolve, o); r.OK || !strings.Contains(r.Message, `relation "nope" does not exist`) {
		t.Errorf("%+v", r)
	}
	if r := runOne(t, sample("no-opener", "KEY_A", 1), resolve, Options{}); r.OK || !strings.Contains(r.Message, "no codec") {
		t.Errorf("%+v", r)
	}
	// A re-encryption pending (the application reads the older key as
	// KEY_A_PREVIOUS): a row under it passes, and the result says so; a
	// row under neither key still fails.
	o.Previous = map[string]rekey.Value{"KEY_A": rekey.NewValueString(b64(keyB))}
	if r := runOne(t, sample("pending", "KEY_A", 100), resolve, o); !r.OK || r.Message != "5 sampled values open (1 with the previous KEY_A: their re-encryption is pending)" {
		t.Errorf("%+v", r)
	}
	o.Previous = map[string]rekey.Value{"KEY_B": rekey.NewValueString(b64(bytes.Repeat([]byte{7}, 32)))}
	if r := runOne(t, sample("neither", "KEY_B", 100), resolve, o); r.OK || !strings.Contains(r.Message, "4 of 5 sampled values") {
		t.Errorf("%+v", r)
	}
}

// The postgres adapter is what the application gives Options.Postgres.
var _ Postgres = postgres.URLDialer{}
