package main

// reencrypt --rehearse with least privilege, and a typo in a configured
// column, against a real PostgreSQL.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// The app's role has no CREATEDB: the rehearsal says exactly what to grant
// or which flag to pass (exit 5), and succeeds through the admin
// connection named by --admin-secret. A misspelt --admin-secret gets a
// did-you-mean; the flag without --rehearse is a usage error.
func TestReencryptRehearseAdmin(t *testing.T) {
	p := rcNewProject(t, "atlas", 300)
	c := p.cluster
	p.exec(`CREATE ROLE app LOGIN NOCREATEDB PASSWORD 'app-pass'`)
	p.exec(`GRANT SELECT, UPDATE ON patients TO app`)
	appURL := c.ConnString("app", "app-pass", "atlas")
	adminURL := c.SuperConnString("postgres")
	// The application now connects as app; the admin URL is a secret of its own.
	env := strings.Replace(string(p.readEnv()), "DATABASE_URL="+p.url+"\n", "DATABASE_URL="+appURL+"\nPG_ADMIN_URL="+adminURL+"\n", 1)
	if err := os.WriteFile(p.envPath, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	p.orig = []byte(env)
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "\n  ENCRYPTION_KEY:\n", "\n  PG_ADMIN_URL:\n    kind: manual\n  ENCRYPTION_KEY:\n")
	p.must("config", "trust")
	p.must("set", "DATABASE_URL", "--from-target")
	p.must("set", "PG_ADMIN_URL", "--from-target")

	r := p.run("reencrypt", "--rehearse")
	if r.code != 5 || !strings.Contains(r.stderr, "role app may not create databases") ||
		!strings.Contains(r.stderr, `ALTER ROLE "app" CREATEDB`) || !strings.Contains(r.stderr, "--admin-secret NAME") {
		t.Fatalf("a rehearsal without CREATEDB nor admin: want exit 5 naming the grant and the flag: %v", r)
	}
	r = p.run("reencrypt", "--rehearse", "--admin-secret", "PG_ADMIN_URL")
	if r.code != 0 || !strings.Contains(r.stdout, "made through the admin connection") || !strings.Contains(r.stdout, "for 300 rows") {
		t.Fatalf("a rehearsal through the admin connection: %v", r)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, "app-pass") || strings.Contains(out, c.SuperPassword) {
			t.Fatal("a password appears in rekey's output")
		}
	}
	if r := p.run("reencrypt", "--rehearse", "--admin-secret", "PG_ADMN_URL"); r.code != 3 || !strings.Contains(r.stderr, "did you mean PG_ADMIN_URL") {
		t.Fatalf("a misspelt --admin-secret: %v", r)
	}
	if r := p.run("reencrypt", "--verify", "--admin-secret", "PG_ADMIN_URL"); r.code != 2 || !strings.Contains(r.stderr, "--admin-secret is for --rehearse") {
		t.Fatalf("--admin-secret without --rehearse: %v", r)
	}
	// The application's data is untouched by the rehearsals.
	key, _ := p.envKeys()
	p.check(key)
}

// A typo in a configured column is named, with the column it probably
// means, before anything runs: a rotation of the data key creates no
// version and leaves the .env alone; --verify, --rehearse and reencrypt
// stop with the same message (exit 3).
func TestReencryptColumnTypo(t *testing.T) {
	p := rcNewProject(t, "atlas", 100)
	old, _ := p.envKeys()
	before := p.readEnv()
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "columns: [patients.email, patients.ssn]", "columns: [patients.emial, patients.ssn]")
	p.must("config", "trust")
	for _, args := range [][]string{
		{"rotate", "ENCRYPTION_KEY"},
		{"rotate", "ENCRYPTION_KEY", "--dry-run"},
		{"reencrypt", "--verify"},
		{"reencrypt", "--rehearse"},
		{"reencrypt"},
	} {
		r := p.run(args...)
		if r.code != 3 || !strings.Contains(r.stderr, "column public.patients.emial not found") || !strings.Contains(r.stderr, "did you mean public.patients.email?") {
			t.Errorf("want exit 3 naming the column and the did-you-mean: %v", r)
		}
		if strings.Contains(r.stderr, "created ENCRYPTION_KEY") || strings.Contains(r.stdout, "rehearsal on a copy") {
			t.Errorf("rekey %s ran before finding the typo: %v", strings.Join(args, " "), r)
		}
	}
	if got := string(p.readEnv()); got != string(before) {
		t.Fatal("the .env changed")
	}
	if got := strings.TrimSpace(p.must("get", "ENCRYPTION_KEY")); got != old {
		t.Fatal("the store's current ENCRYPTION_KEY changed")
	}
	if h := p.must("history", "ENCRYPTION_KEY"); strings.Contains(h, "v2") {
		t.Fatalf("a version was created:\n%s", h)
	}
	p.check(old)
}
