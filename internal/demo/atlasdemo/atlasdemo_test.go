package atlasdemo

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestProvisionAlternating: Provision sets up an alternating pair with the
// least privilege the server's version needs (README's privilege table):
// on 15 the login role has CREATEROLE and no admin role exists; on 16 and
// later the login role has none, and an admin role with CREATEROLE and
// ADMIN OPTION on the group and the login role can create the second role
// and change both passwords; its URL is the .env's PG_ADMIN_URL. Neither
// password reaches the server's log.
func TestProvisionAlternating(t *testing.T) {
	c := testkit.StartCluster(t)
	app := testkit.GoBuild(t, "../../../examples/atlas-app")
	ctx := testkit.Ctx(t, 2*time.Minute)
	key := Random(32, base64.StdEncoding)
	d, err := Provision(ctx, ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: "prov", Alternating: true, Patients: 3, Key: key, App: app})
	if err != nil {
		t.Fatal(err)
	}
	if !testkit.LogsIn(t, d.URL()) {
		t.Errorf("%s does not log in", d.Role)
	}
	if d.Major != c.Major {
		t.Errorf("Major = %d, the server is %s", d.Major, c.Version)
	}
	su, err := c.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(context.Background())
	createRole := func(role string) bool {
		t.Helper()
		var ok bool
		if err := su.QueryRow(ctx, "SELECT rolcreaterole FROM pg_roles WHERE rolname = $1", role).Scan(&ok); err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		return ok
	}
	env := NewEnv(d, key, 8080)
	_, hasAdminURL := env.Values[AdminURLKey]
	if c.Major < postgres.AdminOptionMajor {
		if d.Admin != "" || hasAdminURL || !createRole(d.Role) {
			t.Errorf("PostgreSQL %d: want %s with CREATEROLE (changed_by: self) and no admin role; admin %q, PG_ADMIN_URL %v, CREATEROLE %v",
				c.Major, d.Role, d.Admin, hasAdminURL, createRole(d.Role))
		}
	} else {
		if d.Admin != "prov_admin" || env.Values[AdminURLKey] != d.AdminURL() || !strings.Contains(env.Text(), "\n"+AdminURLKey+"=") {
			t.Fatalf("PostgreSQL %d: admin %q, PG_ADMIN_URL in the .env: %v", c.Major, d.Admin, hasAdminURL)
		}
		if createRole(d.Role) || !createRole(d.Admin) {
			t.Errorf("PostgreSQL %d: CREATEROLE: %s %v (want false), %s %v (want true)", c.Major, d.Role, createRole(d.Role), d.Admin, createRole(d.Admin))
		}
		for _, r := range []string{d.Owner, d.Role} {
			var ok bool
			if err := su.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER WITH ADMIN OPTION')", d.Admin, r).Scan(&ok); err != nil || !ok {
				t.Errorf("%s has no ADMIN OPTION on %s (%v)", d.Admin, r, err)
			}
		}
		adminCanManagePair(t, ctx, d)
	}
	log, err := c.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("ALTER ROLE")) {
		t.Fatal("the server log has no ALTER ROLE: is log_statement = all?")
	}
	for _, pw := range []string{d.Password, d.AdminPassword} {
		if pw == "" {
			continue
		}
		for _, f := range []string{pw, url.QueryEscape(pw), pw[:16]} {
			if bytes.Contains(log, []byte(f)) {
				t.Errorf("the server log holds a password Provision set (%d bytes)", len(pw))
			}
		}
	}
}

// adminCanManagePair logs in with the admin URL and does what rekey does
// with it: create the second role as a member of the group, set its
// password and the first role's.
func adminCanManagePair(t *testing.T, ctx context.Context, d *DB) {
	t.Helper()
	p, err := postgres.ParseURL(d.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := postgres.Connect(ctx, p)
	if err != nil {
		t.Fatalf("log in as %s: %v", d.Admin, err)
	}
	defer conn.Close(context.Background())
	green := d.Name + "_green"
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{green}.Sanitize()+" LOGIN IN ROLE "+pgx.Identifier{d.Owner}.Sanitize()); err != nil {
		t.Fatalf("%s creates %s in %s: %v", d.Admin, green, d.Owner, err)
	}
	for _, r := range []string{green, d.Role} {
		if err := postgres.SetPassword(ctx, conn, r, []byte(Random(24, base64.RawURLEncoding))); err != nil {
			t.Errorf("%s sets the password of %s: %v", d.Admin, r, err)
		}
	}
}
