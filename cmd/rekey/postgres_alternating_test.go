package main

// The alternating strategy (two login roles, the .env pointing at one) and
// changed_by: admin, end to end through the real binary against a real
// PostgreSQL cluster: set-up with `rekey init --postgres-alternating` and
// `rekey postgres add-role`, rotations, expiry of the previous role, the
// errors for missing privileges, and crash safety at every step boundary.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// pgaProject is a project whose DATABASE_PASSWORD belongs to a pair of
// login roles (blue, green), both members of the group role owner that
// owns table. It is a pgcProject (postgres_crash_test.go: the cluster, the
// values of the versions seen) whose role is the first of the pair.
type pgaProject struct {
	*pgcProject
	owner, blue, green, table string
	// adminURL is the least-privileged admin connection a project uses on
	// PostgreSQL 16 and later (PG_ADMIN_URL in the .env), "" on 15.
	adminURL, adminPW string
	outputs           []string // every stdout and stderr of rekey, for the leak check
}

type pgaOptions struct {
	createRole bool   // blue has CREATEROLE
	initFlag   string // rekey init --postgres-alternating[=...]; "" = plain init
	blue       string // name of the first role ("" = generated)
	green      string // name of the second role ("" = PairRole(blue))
}

func pgaCtx(t testing.TB) context.Context { return testkit.Ctx(t, time.Minute) }

// pgaNewProject creates the group role and table, the first login role
// with a random password, a .env whose DATABASE_URL and DATABASE_PASSWORD
// hold it, and runs `rekey init` (with --postgres-alternating if asked).
func pgaNewProject(t *testing.T, c *pgtest.Cluster, o pgaOptions) *pgaProject {
	t.Helper()
	suffix := testkit.Unique(strconv.Itoa(os.Getpid()))
	p := &pgaProject{pgcProject: &pgcProject{c: c, vals: map[int]string{}}, owner: "app_owner_" + suffix, table: "t_" + suffix, blue: o.blue, green: o.green}
	if p.blue == "" {
		p.blue = "app_" + suffix + "_blue"
	}
	p.role = p.blue
	if p.green == "" {
		p.green = postgres.PairRole(p.blue)
	}
	attrs := "LOGIN NOCREATEROLE"
	if o.createRole {
		attrs = "LOGIN CREATEROLE"
	}
	testkit.Exec(t, c,
		"CREATE ROLE "+postgres.QuoteIdent(p.owner)+" NOLOGIN",
		"CREATE TABLE "+p.table+" (x int)",
		"INSERT INTO "+p.table+" VALUES (42)",
		"ALTER TABLE "+p.table+" OWNER TO "+postgres.QuoteIdent(p.owner),
		"CREATE ROLE "+postgres.QuoteIdent(p.blue)+" "+attrs+" IN ROLE "+postgres.QuoteIdent(p.owner),
	)
	pw := ctRandB64(24, base64.RawURLEncoding)
	testkit.SetPassword(t, c.SuperConnString("postgres"), p.blue, pw)
	extra := ""
	if o.createRole && c.Major >= postgres.AdminOptionMajor {
		// 16 and later: the roles of a pair cannot change each other's
		// password; an admin role with what the README's table says does.
		admin := "rekey_admin_" + suffix
		p.adminPW = ctRandB64(24, base64.RawURLEncoding)
		testkit.Exec(t, c, pgaAdminSetup(c.Major, admin, p.owner, p.blue)...)
		testkit.SetPassword(t, c.SuperConnString("postgres"), admin, p.adminPW)
		p.adminURL = c.ConnString(admin, p.adminPW, "postgres")
		extra = "PG_ADMIN_URL=" + p.adminURL + "\n"
		t.Logf("PostgreSQL %d: changed_by: admin through %s (CREATEROLE, ADMIN OPTION on %s and %s)", c.Major, admin, p.owner, p.blue)
	}
	p.ctProject = ctBareProject(t, "# comment\n"+
		"DATABASE_URL="+c.ConnString(p.blue, pw, "postgres")+"\n"+
		"DATABASE_PASSWORD="+pw+"\n"+
		"RUST_LOG=info\n"+extra, "pg-alt-test")
	p.allowed = map[string][]string{p.dir: {".env", "rekey.yaml", ".gitignore", ".rekey"}}
	args := []string{"init", "--env-file", ".env"}
	if o.initFlag != "" {
		args = append(args, o.initFlag)
	}
	p.mustLog(args...)
	p.vals[1] = pw
	return p
}

// pgaAdminSetup are the statements the README's privilege table gives for
// an admin role on major version major, for the pair of first, a member of
// group: on 16 and later ADMIN OPTION only (no INHERIT, no SET).
func pgaAdminSetup(major int, admin, group, first string) []string {
	q := postgres.QuoteIdent
	stmts := []string{"CREATE ROLE " + q(admin) + " LOGIN CREATEROLE"}
	if major >= postgres.AdminOptionMajor {
		stmts = append(stmts, "GRANT "+q(group)+" TO "+q(admin)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE", "GRANT "+q(first)+" TO "+q(admin)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
	}
	return stmts
}

// useAdmin switches a project inited without --postgres-alternating to
// changed_by: admin through the .env's PG_ADMIN_URL (init made it a manual
// secret), as an operator would edit rekey.yaml.
func (p *pgaProject) useAdmin() {
	p.t.Helper()
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	text := strings.Replace(string(cfg), "      url_from: DATABASE_URL\n", "      url_from: DATABASE_URL\n      changed_by: admin\n      admin_secret: PG_ADMIN_URL\n", 1)
	if text == string(cfg) || !strings.Contains(text, "  PG_ADMIN_URL:\n") {
		p.t.Fatalf("cannot switch rekey.yaml to changed_by: admin:\n%s", cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.mustLog("config", "trust")
}

// mustLog is must, keeping the outputs for the leak check.
func (p *pgaProject) mustLog(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	if r.code != 0 || r.sig != 0 {
		p.t.Fatalf("%v", r)
	}
	return r.stdout
}

// runLog is run, keeping the outputs for the leak check.
func (p *pgaProject) runLog(args ...string) ctResult {
	p.t.Helper()
	r := p.run(args...)
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	return r
}

// envURL returns the .env's DATABASE_URL, its user and password (failing
// unless DATABASE_PASSWORD is the URL's password).
func (p *pgcProject) envURL() (u, user, pw string) {
	p.t.Helper()
	data := p.readEnv()
	u, ok := ctEnvValue(data, "DATABASE_URL")
	if !ok {
		p.t.Fatal("the .env lost DATABASE_URL")
	}
	pp, err := postgres.ParseURL(u)
	if err != nil {
		p.t.Fatalf("the .env's DATABASE_URL: %v", err)
	}
	envPW, _ := ctEnvValue(data, "DATABASE_PASSWORD")
	if envPW != string(pp.Password) {
		p.t.Fatal("the .env's DATABASE_PASSWORD is not the password in its DATABASE_URL")
	}
	return u, pp.User, envPW
}

// reads reports whether u logs in and reads the owner's table (through the
// group role): (false, nil) when the password is refused.
func (p *pgaProject) reads(u string) bool {
	p.t.Helper()
	ctx := pgaCtx(p.t)
	pp, err := postgres.ParseURL(u)
	if err != nil {
		p.t.Fatal(err)
	}
	conn, err := postgres.Connect(ctx, pp)
	if errors.Is(err, postgres.ErrAuthFailed) {
		return false
	}
	if err != nil {
		p.t.Fatalf("login as %s: %v", pp.User, err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM "+p.table).Scan(&x); err != nil || x != 42 {
		p.t.Fatalf("role %s cannot read %s: %v", pp.User, p.table, err)
	}
	return true
}

// roleExists reports whether role exists on the cluster.
func (p *pgaProject) roleExists(role string) bool {
	p.t.Helper()
	conn, err := p.c.Connect(pgaCtx(p.t), "postgres")
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ri, err := postgres.LookupRole(pgaCtx(p.t), conn, role)
	if err != nil {
		p.t.Fatal(err)
	}
	return ri.Exists
}

// logsInAs reports whether pw logs in as role.
func (p *pgaProject) logsInAs(role, pw string) bool {
	p.t.Helper()
	return testkit.LogsIn(p.t, p.c.ConnString(role, pw, "postgres"))
}

// applier is what a rekey process of the project builds (for Expire, which
// the engine calls after the grace period).
func (p *pgaProject) applier() (*postgres.Applier, *rekey.Spec) {
	p.t.Helper()
	cfg, err := config.Load(filepath.Join(p.dir, "rekey.yaml"))
	if err != nil {
		p.t.Fatal(err)
	}
	spec, ok := cfg.Secret("DATABASE_PASSWORD")
	if !ok {
		p.t.Fatal("no DATABASE_PASSWORD in rekey.yaml")
	}
	return &postgres.Applier{Derived: cfg.DerivedFor("production")}, spec
}

// expire ends the password of version n, which belongs to role.
func (p *pgaProject) expire(n int, role string) error {
	p.t.Helper()
	ap, spec := p.applier()
	return ap.Expire(pgaCtx(p.t), "production", spec, rekey.VersionValue{
		Version: rekey.Version{Env: "production", Name: "DATABASE_PASSWORD", N: n, Attrs: map[string]string{"role": role}},
		Value:   rekey.NewValueString(p.value(n))})
}

// checkNoLeak checks that neither the server log nor rekey's outputs hold
// any stored password, in any of the forms a leak could take.
func (p *pgaProject) checkNoLeak(extra ...string) {
	p.t.Helper()
	log, err := p.c.ServerLog()
	if err != nil {
		p.t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("ALTER ROLE")) {
		p.t.Fatal("the server log has no ALTER ROLE: is log_statement = all?")
	}
	pws := append([]string(nil), extra...)
	if p.adminPW != "" {
		pws = append(pws, p.adminPW)
	}
	for _, v := range p.vals {
		pws = append(pws, v)
	}
	for _, pw := range pws {
		for _, f := range forms(pw) {
			if bytes.Contains(log, []byte(f)) {
				p.t.Errorf("the server log contains a password (form %q...)", f[:4])
			}
			for _, o := range p.outputs {
				if strings.Contains(o, f) {
					p.t.Errorf("rekey's output contains a password")
				}
			}
		}
	}
}

// TestPostgresAlternating: `rekey init --postgres-alternating` creates the
// second role; three rotations alternate the .env between the roles; each
// new one logs in and reads the owner's table; the previous one keeps
// working until its grace ends (`rekey rotate --due` a day later: Expire), then
// it is refused; no password reaches the server log.
func TestPostgresAlternating(t *testing.T) {
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
	out := strings.Join(p.outputs, "")
	if !strings.Contains(out, fmt.Sprintf("created role %q as a copy of %q", p.green, p.blue)) {
		t.Fatalf("init did not say it created the second role:\n%s", out)
	}
	cfg, _ := os.ReadFile(filepath.Join(p.dir, "rekey.yaml"))
	for _, want := range []string{"strategy: alternating", "roles: [" + p.blue + ", " + p.green + "]", "grace: 1d", "{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@"} {
		if !strings.Contains(string(cfg), want) {
			t.Fatalf("rekey.yaml lacks %q:\n%s", want, cfg)
		}
	}
	// The .env is untouched by init, and still works.
	if !bytes.Equal(p.readEnv(), p.orig) {
		t.Fatal("init changed the .env")
	}
	u0, user0, _ := p.envURL()
	if user0 != p.blue || !p.reads(u0) {
		t.Fatalf("before any rotation the .env should log in as %s", p.blue)
	}

	// Three rotations: green, blue, green.
	prevURL, prevUser, prevN := u0, p.blue, 1
	for i, want := range []string{p.green, p.blue, p.green} {
		t0 := time.Now()
		p.mustLog("rotate", "DATABASE_PASSWORD")
		t.Logf("rotation %d (to %s): %v", i+1, want, time.Since(t0).Round(time.Millisecond))
		u, user, pw := p.envURL()
		n := prevN + 1
		if user != want {
			t.Fatalf("rotation %d: the .env logs in as %s, want %s", i+1, user, want)
		}
		if pw != p.value(n) {
			t.Fatalf("rotation %d: the .env does not hold v%d", i+1, n)
		}
		if !p.reads(u) {
			t.Fatalf("rotation %d: the new role %s does not log in with the .env's URL", i+1, user)
		}
		// The previous role keeps its password (grace)...
		if !p.reads(prevURL) {
			t.Fatalf("rotation %d: the previous role %s no longer logs in before its expiry", i+1, prevUser)
		}
		if i != 1 {
			// ... until its grace ends: every mutating command ends the
			// grace periods that have passed (here: a day and an hour
			// later). The second round lets the third rotation reuse a
			// live role.
			later := time.Now().Add(rkapp.DefaultPostgresGrace + time.Hour).UTC().Format(time.RFC3339)
			r := p.runEnv([]string{"REKEY_TEST_NOW=" + later}, "rotate", "--due")
			p.outputs = append(p.outputs, r.stdout, r.stderr)
			if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("the grace period of DATABASE_PASSWORD v%d ended", prevN)) {
				t.Fatalf("rotate --due a day later should end the grace of v%d: %v", prevN, r)
			}
			if p.reads(prevURL) {
				t.Fatalf("rotation %d: the expired role %s still logs in with v%d", i+1, prevUser, prevN)
			}
			if err := p.expire(prevN, prevUser); err != nil {
				t.Fatalf("expire v%d again (idempotent): %v", prevN, err)
			}
			if !p.reads(u) {
				t.Fatalf("rotation %d: expiring the previous role broke the current one", i+1)
			}
		}
		prevURL, prevUser, prevN = u, user, n
	}
	hist := p.mustLog("history", "DATABASE_PASSWORD")
	if !regexp.MustCompile(`v4 +current`).MatchString(hist) || !regexp.MustCompile(`v3 +previous`).MatchString(hist) {
		t.Errorf("history:\n%s", hist)
	}
	// recover --probe finds the current one accepted.
	if out := p.mustLog("recover", "--probe"); !strings.Contains(out, "accepts the current v4") {
		t.Errorf("recover --probe:\n%s", out)
	}
	// Expire refuses to end the role the current version uses.
	ap, spec := p.applier()
	ap.Current = func(context.Context, string) (rekey.Version, error) {
		return rekey.Version{N: 4, Attrs: map[string]string{"role": p.green}}, nil
	}
	err := ap.Expire(pgaCtx(t), "production", spec, rekey.VersionValue{Version: rekey.Version{N: 2, Attrs: map[string]string{"role": p.green}}, Value: rekey.NewValueString(p.value(2))})
	if err == nil || !strings.Contains(err.Error(), "belongs to the current version") {
		t.Errorf("Expire of the current role: %v", err)
	}
	if u, _, _ := p.envURL(); !p.reads(u) {
		t.Fatal("the .env no longer logs in")
	}
	// rollback goes back to v3's password, on v3's role (blue, still in grace).
	p.mustLog("rollback", "DATABASE_PASSWORD")
	u, user, pw := p.envURL()
	if user != p.blue || pw != p.value(3) || !p.reads(u) {
		t.Fatalf("after rollback the .env should log in as %s with v3's password (got %s)", p.blue, user)
	}
	p.checkNoLeak()
}

// TestPostgresAddRole switches a project rotated in the single strategy to
// alternating with `rekey postgres add-role`, then rotates.
func TestPostgresAddRole(t *testing.T) {
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{createRole: true, blue: "app", green: "app_green"})
	p.mustLog("rotate", "DATABASE_PASSWORD") // single: v2 on role app
	if p.adminURL != "" {
		p.useAdmin()
	}
	before := p.readEnv()
	out := p.mustLog("postgres", "add-role", "--grace", "12h")
	if !strings.Contains(out, `created role "app_green" as a copy of "app"`) || !strings.Contains(out, `the current v2 belongs to role "app"`) {
		t.Fatalf("add-role:\n%s", out)
	}
	if !bytes.Equal(p.readEnv(), before) {
		t.Fatal("add-role changed the .env")
	}
	cfg, _ := os.ReadFile(filepath.Join(p.dir, "rekey.yaml"))
	for _, want := range []string{"strategy: alternating", "roles: [app, app_green]", "grace: 12h", "DATABASE_PASSWORD.role"} {
		if !strings.Contains(string(cfg), want) {
			t.Fatalf("rekey.yaml lacks %q:\n%s", want, cfg)
		}
	}
	// Idempotent.
	if out := p.mustLog("postgres", "add-role"); !strings.Contains(out, `role "app_green" exists: kept`) {
		t.Fatalf("add-role again:\n%s", out)
	}
	// publish renders the URL for v2 (role app): the same .env.
	p.mustLog("publish", "DATABASE_PASSWORD")
	if u, user, _ := p.envURL(); user != "app" || !p.reads(u) {
		t.Fatalf("after publish the .env should log in as app")
	}
	old, _, _ := p.envURL()
	p.mustLog("rotate", "DATABASE_PASSWORD")
	u, user, _ := p.envURL()
	if user != "app_green" || !p.reads(u) || !p.reads(old) {
		t.Fatalf("after the rotation: user %s; new logs in %v; old logs in %v", user, p.reads(u), p.reads(old))
	}
	p.checkNoLeak()
}

// TestPostgresAdmin: changed_by: admin with the admin URL in another
// managed secret, for a role whose name has quotes, spaces and upper case
// and no privilege at all; single, then alternating (add-role through the
// admin connection).
func TestPostgresAdmin(t *testing.T) {
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{blue: `App "Blue" Role`, green: `App "Green" Role`})
	// Declare the admin URL as a managed secret and switch to changed_by: admin.
	envText := string(p.readEnv()) + "PG_ADMIN_URL=" + c.SuperConnString("postgres") + "\n"
	if err := os.WriteFile(p.envPath, []byte(envText), 0o600); err != nil {
		t.Fatal(err)
	}
	p.orig = []byte(envText)
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	text := strings.Replace(string(cfg), "      url_from: DATABASE_URL\n", "      url_from: DATABASE_URL\n      changed_by: admin\n      admin_secret: PG_ADMIN_URL\n", 1)
	text = strings.Replace(text, "\nderived:", "\n  PG_ADMIN_URL:\n    kind: manual\n\nderived:", 1)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p.mustLog("config", "trust") // the operator approves the edit
	p.mustLog("set", "PG_ADMIN_URL", "--from-target")

	t.Run("single", func(t *testing.T) {
		p.t = t
		old, _, _ := p.envURL()
		p.mustLog("rotate", "DATABASE_PASSWORD")
		u, user, _ := p.envURL()
		if user != p.blue || !p.reads(u) || p.reads(old) {
			t.Fatalf("after an admin rotation: user %q, new logs in %v, old logs in %v", user, p.reads(u), p.reads(old))
		}
		// The database's password changed behind rekey's back: the admin
		// does not need the current one.
		testkit.SetPassword(t, c.SuperConnString("postgres"), p.blue, "changed-by-hand-"+ctRandB64(12, base64.RawURLEncoding))
		p.mustLog("rotate", "DATABASE_PASSWORD")
		if u, _, _ := p.envURL(); !p.reads(u) {
			t.Fatal("the admin rotation did not repair the role's password")
		}
	})
	t.Run("alternating", func(t *testing.T) {
		p.t = t
		out := p.mustLog("postgres", "add-role", "--role", p.green)
		if !strings.Contains(out, fmt.Sprintf("created role %q", p.green)) {
			t.Fatalf("add-role:\n%s", out)
		}
		for i, want := range []string{p.green, p.blue} {
			old, oldUser, _ := p.envURL()
			p.mustLog("rotate", "DATABASE_PASSWORD")
			u, user, _ := p.envURL()
			if user != want || !p.reads(u) || !p.reads(old) {
				t.Fatalf("rotation %d: user %q (want %q), new logs in %v, old (%q) logs in %v", i+1, user, want, p.reads(u), oldUser, p.reads(old))
			}
		}
	})
	p.t = t
	p.checkNoLeak(c.SuperPassword)
}

// TestPostgresAlternatingPrivilege: a first role without CREATEROLE can
// neither create the second role nor change its password; both errors say
// what to do, and nothing changes.
func TestPostgresAlternatingPrivilege(t *testing.T) {
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{})
	r := p.runLog("postgres", "add-role")
	if c.Major >= postgres.AdminOptionMajor {
		// 16 and later: the roles of a pair cannot change each other's
		// password at all; the refusal names the admin set-up.
		for _, want := range []string{"changed_by: self cannot alternate", `CREATE ROLE "rekey_admin" LOGIN CREATEROLE`,
			"GRANT " + postgres.QuoteIdent(p.owner) + ` TO "rekey_admin" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`,
			"GRANT " + postgres.QuoteIdent(p.blue) + ` TO "rekey_admin" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`, "PG_ADMIN_URL"} {
			if r.code != 4 || !strings.Contains(r.stderr, want) {
				t.Fatalf("PostgreSQL %d: add-role as the app's role should be refused (exit 4) naming %q: %v", c.Major, want, r)
			}
		}
		if cfg, _ := os.ReadFile(filepath.Join(p.dir, "rekey.yaml")); strings.Contains(string(cfg), "alternating") {
			t.Fatal("a failed add-role changed rekey.yaml")
		}
		if p.roleExists(p.green) {
			t.Fatal("a refused add-role created the second role")
		}
		p.checkNoLeak()
		return
	}
	// 15: the app's role needs CREATEROLE; the refusal names the statement.
	want := "as an administrator run (PostgreSQL " + strconv.Itoa(c.Major) + "): ALTER ROLE " + postgres.QuoteIdent(p.blue) + " CREATEROLE"
	if r.code != 4 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "rekey: hint:") {
		t.Fatalf("add-role without CREATEROLE should be refused (exit 4) naming %q: %v", want, r)
	}
	if cfg, _ := os.ReadFile(filepath.Join(p.dir, "rekey.yaml")); strings.Contains(string(cfg), "alternating") {
		t.Fatal("a failed add-role changed rekey.yaml")
	}
	if p.roleExists(p.green) {
		t.Fatal("a refused add-role created the second role")
	}
	// An administrator creates the second role: still refused (the first
	// role could not change its password at the rotation).
	testkit.Exec(t, c, "CREATE ROLE "+postgres.QuoteIdent(p.green)+" LOGIN IN ROLE "+postgres.QuoteIdent(p.owner))
	if r := p.runLog("postgres", "add-role"); r.code != 4 || !strings.Contains(r.stderr, want) {
		t.Fatalf("add-role with an existing second role but no CREATEROLE: %v", r)
	}
	// With what the hint says, it goes through and the pair rotates.
	testkit.Exec(t, c, "ALTER ROLE "+postgres.QuoteIdent(p.blue)+" CREATEROLE", "ALTER ROLE "+postgres.QuoteIdent(p.green)+" CREATEROLE")
	if out := p.mustLog("postgres", "add-role"); !strings.Contains(out, "exists: kept") {
		t.Fatalf("add-role:\n%s", out)
	}
	for _, want := range []string{p.green, p.blue} {
		p.mustLog("rotate", "DATABASE_PASSWORD")
		if u, user, _ := p.envURL(); user != want || !p.reads(u) {
			t.Fatalf("after the rotation the .env should log in as %s (got %s)", want, user)
		}
	}
	p.checkNoLeak()
}

// TestPostgresAlternatingCrashMatrix kills `rekey rotate DATABASE_PASSWORD`
// (alternating) at every step boundary, and `rekey recover` at its publish
// after a kill behind ALTER ROLE. Right after every kill the .env still
// logs in (no window without a working login); after `rekey recover` the
// store, the .env and the database agree.
func TestPostgresAlternatingCrashMatrix(t *testing.T) {
	c := startCluster(t)
	ctRekeyBin(t)
	type tc struct{ name, first, second string }
	var cases []tc
	for _, point := range ctRotationPoints {
		cases = append(cases, tc{point, point, ""})
	}
	for _, second := range []string{"publish:before", "publish:after"} {
		cases = append(cases, tc{"apply:after+" + second, "apply:after", second})
	}
	for _, k := range cases {
		t.Run(strings.ReplaceAll(k.name, ":", "-"), func(t *testing.T) {
			t.Parallel()
			p := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
			// One rotation first, so that both roles have a stored password.
			p.mustLog("rotate", "DATABASE_PASSWORD")
			u0, user0, _ := p.envURL()

			r := p.runEnv([]string{"REKEY_TEST_FAULT=" + k.first}, "rotate", "DATABASE_PASSWORD")
			if r.sig != syscall.SIGKILL {
				t.Fatalf("want death by SIGKILL at %s, got %v", k.first, r)
			}
			u, user, _ := p.envURL()
			if !p.reads(u) {
				t.Fatalf("right after the kill at %s the .env's URL (role %s) does not log in", k.first, user)
			}
			if !p.reads(u0) {
				t.Fatalf("right after the kill at %s the previous .env's URL (role %s) does not log in", k.first, user0)
			}
			if k.second != "" {
				r := p.runEnv([]string{"REKEY_TEST_FAULT=" + k.second}, "recover")
				if r.sig != syscall.SIGKILL {
					t.Fatalf("want recover to die by SIGKILL at %s, got %v", k.second, r)
				}
				if u, user, _ := p.envURL(); !p.reads(u) {
					t.Fatalf("right after recovery was killed at %s the .env's URL (role %s) does not log in", k.second, user)
				}
			}
			s := p.consistent()
			want := ctCompleted
			if k.first == "create:before" {
				want = ctNotCreated
			}
			switch {
			case want == ctNotCreated && (s.cur != 2 || s.user != user0):
				t.Fatalf("killed at %s: want v2 current on %s, got v%d on %s", k.first, user0, s.cur, s.user)
			case want == ctCompleted && (s.cur != 3 || s.user == user0):
				t.Fatalf("killed at %s: want v3 current on the other role than %s, got v%d on %s", k.first, user0, s.cur, s.user)
			}
			// A normal rotation works afterwards and flips the role.
			p.mustLog("rotate", "DATABASE_PASSWORD")
			s2 := p.consistent()
			if s2.cur != s.rows[len(s.rows)-1].N+1 || s2.user == s.user {
				t.Fatalf("the rotation after recovery: v%d on %s after v%d on %s", s2.cur, s2.user, s.cur, s.user)
			}
			p.checkNoLeak()
		})
	}
}

type pgaState struct {
	cur  int
	user string
	rows []ctHistRow
}

// consistent runs `rekey recover` and checks: exit 0; one current version
// and no pending one; the .env holds the current value, its URL names the
// current version's role and logs in (and reads the table); the role the
// .env does not use has the previous version's password or one nobody
// knows; the audit chain verifies.
func (p *pgaProject) consistent() pgaState {
	p.t.Helper()
	r := p.runLog("recover")
	if r.code != 0 || r.sig != 0 {
		p.t.Fatalf("recover failed: %v", r)
	}
	s := pgaState{rows: p.historyOf("DATABASE_PASSWORD")}
	s.cur = ctOneCurrent(p.t, s.rows)
	val := p.must("get", "DATABASE_PASSWORD", "-n")
	if val != p.value(s.cur) {
		p.t.Fatalf("get DATABASE_PASSWORD differs from get --version %d", s.cur)
	}
	u, user, pw := p.envURL()
	s.user = user
	if pw != val {
		p.t.Fatalf("the .env's DATABASE_PASSWORD is not the store's current v%d (recover said:\n%s)", s.cur, r.stdout)
	}
	if user != p.blue && user != p.green {
		p.t.Fatalf("the .env's URL names role %s, not one of the pair", user)
	}
	if !p.reads(u) || !p.logsInAs(user, val) {
		p.t.Fatalf("the .env's URL (role %s, v%d) does not log in", user, s.cur)
	}
	// The other role: only the previous version's password, if any.
	other := p.blue
	if user == p.blue {
		other = p.green
	}
	for _, row := range s.rows {
		if row.N != s.cur && row.Label != "previous" && p.logsInAs(other, p.value(row.N)) && p.value(row.N) != val {
			p.t.Fatalf("v%d (%q) logs in as the idle role %s", row.N, row.Label, other)
		}
	}
	if got, want := ctOtherLines(p.readEnv(), "DATABASE_PASSWORD"), ctOtherLines(p.orig, "DATABASE_PASSWORD"); len(got) != len(want) {
		p.t.Fatalf("the .env's lines changed:\n%s", p.readEnv())
	} else {
		g := slices.DeleteFunc(got, func(l string) bool { return strings.HasPrefix(l, "DATABASE_URL=") })
		w := slices.DeleteFunc(want, func(l string) bool { return strings.HasPrefix(l, "DATABASE_URL=") })
		if !slices.Equal(g, w) {
			p.t.Fatalf("the other lines of the .env changed:\ngot:\n%s\nwant:\n%s", strings.Join(g, ""), strings.Join(w, ""))
		}
	}
	if r := p.run("audit", "verify"); r.code != 0 {
		p.t.Fatalf("audit chain broken: %v", r)
	}
	p.checkNoLeftovers()
	return s
}

// TestPostgresAlternatingKillLoop kills `rekey rotate DATABASE_PASSWORD`
// (alternating) at a random moment (seeded: REKEY_TEST_SEED) 20 times:
// right after every kill the .env's URL logs in, and `rekey recover`
// converges to a consistent state.
func TestPostgresAlternatingKillLoop(t *testing.T) {
	testkit.Long(t, "-short")
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
	var normal time.Duration
	for range 2 {
		r := p.runLog("rotate", "DATABASE_PASSWORD")
		if r.code != 0 || r.sig != 0 {
			t.Fatalf("%v", r)
		}
		normal = max(normal, r.dur)
	}
	s := p.consistent()
	rng := ctRand(t, 0xa17, normal)
	const iterations = 20
	budget := time.Now().Add(testkit.KillBudget(45 * time.Second))
	killed, flipped := 0, 0
	i := 0
	for ; i < iterations && time.Now().Before(budget); i++ {
		delay := time.Duration(rng.Int64N(int64(normal) + 1))
		r := p.killAfter(delay, "rotate", "DATABASE_PASSWORD")
		p.outputs = append(p.outputs, r.stdout, r.stderr)
		switch {
		case r.sig == syscall.SIGKILL:
			killed++
		case r.code != 0 || r.sig != 0:
			t.Fatalf("iteration %d (kill after %v): %v", i, delay, r)
		}
		if u, user, _ := p.envURL(); !p.reads(u) {
			t.Fatalf("iteration %d: right after the kill (%v) the .env's URL (role %s) does not log in", i, delay, user)
		}
		s2 := p.consistent()
		if s2.cur != s.cur {
			flipped++
			if s2.user == s.user {
				t.Fatalf("iteration %d: v%d and v%d both use role %s", i, s.cur, s2.cur, s.user)
			}
		}
		s = s2
	}
	t.Logf("%d rotations: %d killed mid-way; %d ended on a new version", i, killed, flipped)
	p.checkNoLeak()
}
