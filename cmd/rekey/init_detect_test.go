package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestInitDetectColumns: `rekey init --detect-columns` samples a real
// database through the .env's DATABASE_URL and fills the commented
// reencrypt: stanza with the columns whose values look like AES-GCM
// ciphertexts, attributed to the data key that opens them; plain text,
// base64 of text, hex digests and Fernet tokens are left out. Uncommented,
// the stanza is what `rekey reencrypt --verify` checks the columns with.
func TestInitDetectColumns(t *testing.T) {
	c := startCluster(t)
	appPW := "Dq7Wm2Rk9Tz4Lp8Hv3Nx"
	key, other := newKey(t), newKey(t)
	testkit.Exec(t, c,
		"CREATE ROLE app LOGIN",
		"CREATE SCHEMA vault AUTHORIZATION app",
		"CREATE TABLE public.patients (id serial PRIMARY KEY, name text, email text, ssn text, note text)",
		"CREATE TABLE public.digests (id serial PRIMARY KEY, sha text, token text)",
		"CREATE TABLE public.legacy (id serial PRIMARY KEY, v text)",
		"CREATE TABLE vault.cards (id serial PRIMARY KEY, card bytea)",
		"ALTER TABLE public.patients OWNER TO app", "ALTER TABLE public.digests OWNER TO app",
		"ALTER TABLE public.legacy OWNER TO app", "ALTER TABLE vault.cards OWNER TO app",
	)
	testkit.SetPassword(t, c.SuperConnString("postgres"), "app", appPW)
	var stored []string // what the columns hold: never in rekey.yaml nor the output
	keep := func(f func(string) string) func(string) string {
		return func(v string) string { c := f(v); stored = append(stored, c, v); return c }
	}
	plain := keep(sealer(t, key, "base64", false))
	headed := keep(sealer(t, key, "base64", true))
	raw := keep(sealer(t, key, "bytea", false))
	old := keep(sealer(t, other, "base64", false))
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("patient %d", i)
		testkit.Exec(t, c,
			fmt.Sprintf("INSERT INTO public.patients (name, email, ssn, note) VALUES ('%s', '%s', '%s', '%s')",
				name, plain("p"+name+"@example.com"), headed("123-45-678"+itoa(i)), base64.StdEncoding.EncodeToString([]byte("a plain note about "+name+", base64 but not encrypted"))),
			fmt.Sprintf("INSERT INTO public.digests (sha, token) VALUES ('%x', 'gAAAAABl%s')", [32]byte{byte(i), 1, 2}, strings.Repeat("x", 60)),
			fmt.Sprintf("INSERT INTO public.legacy (v) VALUES ('%s')", old("legacy "+name)),
			fmt.Sprintf("INSERT INTO vault.cards (card) VALUES (decode('%s', 'hex'))", hex.EncodeToString([]byte(raw("4111 1111 1111 111"+itoa(i))))),
		)
	}
	dbURL := "postgres://app:" + appPW + "@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable"
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "HOME": t.TempDir(), "REKEY_ACTOR": "detect-test"}}
	p.write(".env", "DATABASE_URL="+dbURL+"\nDATABASE_PASSWORD="+appPW+"\nENCRYPTION_KEY="+key+"\nJWT_SECRET="+newKey(t)+newKey(t)+"\n", 0o600)

	out := p.must("init", "--env-file", ".env", "--detect-columns")
	if !strings.Contains(out, "found: columns encrypted with ENCRYPTION_KEY: patients.email, patients.ssn\n") {
		t.Errorf("init --detect-columns did not report the columns:\n%s", out)
	}
	y := p.read("rekey.yaml")
	for _, want := range []string{
		"\n    #   columns: [patients.email, patients.ssn]\n",
		"\n    #   encoding: base64\n",
		"\n    #   key_id: true\n",
		"\n    ## --detect-columns sampled 8 text and bytea columns through DATABASE_URL (up to 5 rows each).\n",
		"\n    ## found by --detect-columns: their sampled values open with ENCRYPTION_KEY (aes-256-gcm).\n",
		"\n    ## also look encrypted but open with no data key of the .env (an older key, another codec?): legacy.v.\n",
		"\n    ## vault.cards.card also opens with ENCRYPTION_KEY, but is bytea, not base64: give it a data key of its own.\n",
		"#     decrypt-sample: {url: DATABASE_URL, column: patients.email, rows: 10, key: ENCRYPTION_KEY, codec: aes-256-gcm, encoding: base64}",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("rekey.yaml lacks %q:\n%s", want, y)
		}
	}
	for _, not := range []string{"patients.name", "patients.note", "digests.", "columns: [legacy", appPW, key} {
		if strings.Contains(y, not) {
			t.Errorf("rekey.yaml has %q:\n%s", not, y)
		}
	}
	for _, v := range stored {
		if strings.Contains(y, v) || strings.Contains(out, v) {
			t.Errorf("a sampled value (or its plaintext) reached rekey.yaml or the output of init")
		}
	}

	// Uncommented, the stanza is a working reencrypt: section.
	i := strings.Index(y, "    # reencrypt:")
	j := i + strings.Index(y[i:], "\n\n")
	y = y[:i] + regexp.MustCompile(`(?m)^    # `).ReplaceAllString(y[i:j], "    ") + y[j:]
	p.write("rekey.yaml", y, 0o644)
	p.must("config", "trust")
	v := p.must("reencrypt", "--verify")
	if !strings.Contains(v, "every value is on the current key") || !strings.Contains(v, "patients.ssn") {
		t.Errorf("reencrypt --verify with the detected columns:\n%s\n%s", v, y)
	}

	// Without a PostgreSQL URL in the .env, the flag is an error that names it.
	q := &inProject{t: t, dir: t.TempDir(), env: p.env}
	q.write(".env", "ENCRYPTION_KEY="+key+"\n", 0o600)
	if _, errs, code := q.run("init", "--env-file", ".env", "--detect-columns"); code != 2 || !strings.Contains(errs, "--detect-columns: .env has no PostgreSQL URL") {
		t.Errorf("init --detect-columns without a URL: exit %d\n%s", code, errs)
	}
}

// newKey is a random 32-byte key in base64.
func newKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// sealer returns a function that encrypts text with key as a column stores it.
func sealer(t *testing.T, key, encoding string, keyID bool) func(string) string {
	c, err := reencrypt.NewCipher(rekey.ReencryptSpec{Codec: "aes-256-gcm", Encoding: encoding, KeyID: keyID}, rekey.NewValueString(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func(s string) string {
		out, err := c.Encrypt([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
}
