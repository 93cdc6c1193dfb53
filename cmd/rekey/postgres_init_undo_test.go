package main

// `rekey init --postgres-alternating` is all or nothing: when a step after
// the creation of the second role refuses, the role this run created is
// dropped again (never one that existed before), and the .env and the
// project are as they were; a kill -9 right after the creation leaves the
// role, which the next init uses. The admin URL init finds in the .env must
// name the app's server.

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

type piuOptions struct {
	// admin: PG_ADMIN_URL in the .env on every version (else on 16 and
	// later only, where the pair needs it; 15 then uses changed_by: self).
	admin bool
	// adminHostPort and adminDB, when set, are what PG_ADMIN_URL names
	// instead of the cluster's address and postgres.
	adminHostPort, adminDB string
	// extra is appended to the .env.
	extra string
}

// piuNewProject is pgaNewProject's project (the group role owning the
// table, the first role blue with CREATEROLE, on 16 and later an admin
// role as the README's table says) before init: nothing but the .env.
func piuNewProject(t *testing.T, c *pgtest.Cluster, o piuOptions) *pgaProject {
	t.Helper()
	suffix := testkit.Unique(strconv.Itoa(os.Getpid()))
	p := &pgaProject{pgcProject: &pgcProject{c: c, vals: map[int]string{}}, owner: "app_owner_" + suffix, table: "t_" + suffix, blue: "app_" + suffix + "_blue"}
	p.role, p.green = p.blue, postgres.PairRole(p.blue)
	q := postgres.QuoteIdent
	testkit.Exec(t, c,
		"CREATE ROLE "+q(p.owner)+" NOLOGIN",
		"CREATE TABLE "+p.table+" (x int)",
		"INSERT INTO "+p.table+" VALUES (42)",
		"ALTER TABLE "+p.table+" OWNER TO "+q(p.owner),
		"CREATE ROLE "+q(p.blue)+" LOGIN CREATEROLE IN ROLE "+q(p.owner),
	)
	pw := ctRandB64(24, base64.RawURLEncoding)
	testkit.SetPassword(t, c.SuperConnString("postgres"), p.blue, pw)
	env := "# comment\n" +
		"DATABASE_URL=" + c.ConnString(p.blue, pw, "postgres") + "\n" +
		"DATABASE_PASSWORD=" + pw + "\n" +
		"RUST_LOG=info\n"
	if o.admin || c.Major >= postgres.AdminOptionMajor {
		admin := "rekey_admin_" + suffix
		p.adminPW = ctRandB64(24, base64.RawURLEncoding)
		testkit.Exec(t, c, pgaAdminSetup(c.Major, admin, p.owner, p.blue)...)
		testkit.SetPassword(t, c.SuperConnString("postgres"), admin, p.adminPW)
		hostPort, db := net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), "postgres"
		if o.adminHostPort != "" {
			hostPort = o.adminHostPort
		}
		if o.adminDB != "" {
			db = o.adminDB
		}
		p.adminURL = "postgres://" + admin + ":" + p.adminPW + "@" + hostPort + "/" + db + "?sslmode=disable"
		env += "PG_ADMIN_URL=" + p.adminURL + "\n"
		t.Logf("PostgreSQL %d: the pair through the admin connection %s (%s)", c.Major, admin, strings.Join(pgaAdminSetup(c.Major, admin, p.owner, p.blue), "; "))
	} else {
		t.Logf("PostgreSQL %d: the pair through %s itself (changed_by: self, CREATEROLE)", c.Major, p.blue)
	}
	p.ctProject = ctBareProject(t, env+o.extra, "pg-init-undo-test")
	p.allowed = map[string][]string{p.dir: {".env", "rekey.yaml", ".gitignore", ".rekey"}}
	p.vals[1] = pw
	return p
}

// piuDir is every file under dir with its content (the directory entries
// too), to tell that a refused command left the project as it was.
func piuDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(path)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// piuUnchanged fails unless the project is as before and the .env as init saw it.
func (p *pgaProject) piuUnchanged(before map[string]string, what string) {
	p.t.Helper()
	after := piuDir(p.t, p.dir)
	for k := range before {
		if _, ok := after[k]; !ok {
			p.t.Errorf("%s: %s is gone", what, k)
		} else if after[k] != before[k] {
			p.t.Errorf("%s: %s changed", what, k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			p.t.Errorf("%s: left %s in the project", what, k)
		}
	}
	if string(p.readEnv()) != string(p.orig) {
		p.t.Errorf("%s: the .env changed", what)
	}
	if p.t.Failed() {
		p.t.FailNow()
	}
}

// piuRotates rotates DATABASE_PASSWORD once and checks the .env then logs
// in as the second role and reads the table, the first role still too.
func (p *pgaProject) piuRotates() {
	p.t.Helper()
	old, _, _ := p.envURL()
	p.mustLog("rotate", "DATABASE_PASSWORD")
	u, user, _ := p.envURL()
	if user != p.green || !p.reads(u) || !p.reads(old) {
		p.t.Fatalf("after the rotation the .env should log in as %s (got %s), the old URL still", p.green, user)
	}
}

// TestPostgresInitUndo: init --postgres-alternating refused by a step after
// it created the second role (a --key-file inside the project; another
// database password whose pair fails) drops that role again and leaves the
// project as it was; refused before (a store without rekey.yaml, an
// environment rekey.yaml has, without --force) it creates nothing; then
// an init that should succeed succeeds and the pair rotates. On 15 the
// role is created and dropped by the first role itself, on 16 and later
// through the admin connection.
func TestPostgresInitUndo(t *testing.T) {
	c := startCluster(t)
	p := piuNewProject(t, c, piuOptions{})
	before := piuDir(t, p.dir)
	created := fmt.Sprintf("created role %q as a copy of %q", p.green, p.blue)
	dropped := fmt.Sprintf("the role %q that init created was dropped again", p.green)

	// A --key-file inside the project: refused (exit 5) after the role was created.
	r := p.runEnv([]string{"REKEY_MASTER_KEY="}, "init", "--env-file", ".env", "--postgres-alternating", "--key-file", "master.key")
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	if r.code != 5 || !strings.Contains(r.stderr, "refusing to put the master key inside the project") {
		t.Fatalf("init with --key-file inside the project should be refused (exit 5): %v", r)
	}
	if !strings.Contains(r.stdout, created) || !strings.Contains(r.stderr, dropped) {
		t.Fatalf("the refusal should come after the role was created, and say it was dropped again (%q): %v", dropped, r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if p.roleExists(p.green) {
		t.Fatalf("the refused init left role %s behind", p.green)
	}
	p.piuUnchanged(before, "init refused for its --key-file")

	// A second database password whose pair cannot be made (its role may
	// not be copied: 15, no CREATEROLE; 16+, the admin has no ADMIN OPTION
	// on it): the first pair's role is dropped again.
	rep := "rep_" + testkit.Unique(strconv.Itoa(os.Getpid()))
	repPW := ctRandB64(24, base64.RawURLEncoding)
	testkit.Exec(t, c, "CREATE ROLE "+postgres.QuoteIdent(rep)+" LOGIN IN ROLE "+postgres.QuoteIdent(p.owner))
	testkit.SetPassword(t, c.SuperConnString("postgres"), rep, repPW)
	two := piuNewProject(t, c, piuOptions{extra: "REPORTING_URL=" + c.ConnString(rep, repPW, "postgres") + "\nPG_PASSWORD=" + repPW + "\n"})
	two.vals[2] = repPW // for the leak check only
	twoBefore := piuDir(t, two.dir)
	r = two.runLog("init", "--env-file", ".env", "--postgres-alternating")
	twoDropped := fmt.Sprintf("the role %q that init created was dropped again", two.green)
	if r.code == 0 || !strings.Contains(r.stdout, fmt.Sprintf("created role %q", two.green)) || !strings.Contains(r.stderr, twoDropped) ||
		!strings.Contains(r.stderr, strconv.Quote(rep)) {
		t.Fatalf("init whose second pair (%s) fails should say the first pair's role was dropped again: %v", rep, r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if two.roleExists(two.green) || two.roleExists(postgres.PairRole(rep)) {
		t.Fatal("the refused init left a role behind")
	}
	two.piuUnchanged(twoBefore, "init refused for its second pair")
	two.checkOutputs()

	// A store without rekey.yaml: refused before anything is created.
	p.mustLog("init", "--env-file", ".env")
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	before = piuDir(t, p.dir)
	r = p.runLog("init", "--env-file", ".env", "--postgres-alternating")
	if r.code != 4 || !strings.Contains(r.stderr, "a store already exists") || strings.Contains(r.stdout, created) {
		t.Fatalf("init beside a store without rekey.yaml should be refused (exit 4) before creating the role: %v", r)
	}
	if p.roleExists(p.green) {
		t.Fatalf("the refused init left role %s behind", p.green)
	}
	p.piuUnchanged(before, "init refused for the store")

	// rekey.yaml has the environment, no --force: refused likewise.
	testkit.WriteFile(t, cfgPath, string(cfg), 0o644)
	before = piuDir(t, p.dir)
	r = p.runLog("init", "--env-file", ".env", "--postgres-alternating")
	if r.code != 4 || !strings.Contains(r.stderr, "already has environment production") || strings.Contains(r.stdout, created) {
		t.Fatalf("init of an environment rekey.yaml has, without --force, should be refused (exit 4): %v", r)
	}
	if p.roleExists(p.green) {
		t.Fatalf("the refused init left role %s behind", p.green)
	}
	p.piuUnchanged(before, "init refused for the environment")

	// What should succeed succeeds: the pair is made and rotates.
	if out := p.mustLog("init", "--env-file", ".env", "--postgres-alternating", "--force"); !strings.Contains(out, created) {
		t.Fatalf("init --force should create the role:\n%s", out)
	}
	if cfg, _ := os.ReadFile(cfgPath); !strings.Contains(string(cfg), "strategy: alternating") {
		t.Fatalf("rekey.yaml is not alternating:\n%s", cfg)
	}
	p.piuRotates()
	p.checkNoLeak()
}

// TestPostgresInitUndoKeepsExisting: a second role that existed before
// init is never dropped by a refused init (its password still works);
// and a kill -9 right after init created the role (nothing written yet)
// leaves the role, which the next init keeps and uses: the pair rotates.
func TestPostgresInitUndoKeepsExisting(t *testing.T) {
	c := startCluster(t)
	p := piuNewProject(t, c, piuOptions{})
	q := postgres.QuoteIdent
	greenPW := ctRandB64(24, base64.RawURLEncoding)
	stmts := []string{"CREATE ROLE " + q(p.green) + " LOGIN IN ROLE " + q(p.owner)}
	if c.Major >= postgres.AdminOptionMajor {
		// The README: an admin that did not create the role needs ADMIN OPTION on it.
		admin, err := postgres.ParseURL(p.adminURL)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, "GRANT "+q(p.green)+" TO "+q(admin.User)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
	}
	testkit.Exec(t, c, stmts...)
	testkit.SetPassword(t, c.SuperConnString("postgres"), p.green, greenPW)
	before := piuDir(t, p.dir)
	r := p.runEnv([]string{"REKEY_MASTER_KEY="}, "init", "--env-file", ".env", "--postgres-alternating", "--key-file", "master.key")
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	if r.code != 5 || !strings.Contains(r.stdout, fmt.Sprintf("role %q exists: kept", p.green)) || strings.Contains(r.stderr, "dropped") {
		t.Fatalf("init refused for its --key-file should keep the existing role, and not say it dropped one: %v", r)
	}
	if !p.roleExists(p.green) || !p.logsInAs(p.green, greenPW) {
		t.Fatalf("a refused init dropped or changed role %s, which existed before it", p.green)
	}
	p.piuUnchanged(before, "init refused for its --key-file")

	// A session that may not drop the role (what the undo's hint is for):
	// refused with the statement to run, the role kept.
	nopriv, noprivPW := "nopriv_"+testkit.Unique(strconv.Itoa(os.Getpid())), ctRandB64(24, base64.RawURLEncoding)
	testkit.Exec(t, c, "CREATE ROLE "+q(nopriv)+" LOGIN")
	testkit.SetPassword(t, c.SuperConnString("postgres"), nopriv, noprivPW)
	np, err := postgres.ParseURL(c.ConnString(nopriv, noprivPW, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := postgres.Connect(pgaCtx(t), np)
	if err != nil {
		t.Fatal(err)
	}
	err = postgres.DropRole(pgaCtx(t), conn, p.green)
	conn.Close(pgaCtx(t))
	if want := "DROP ROLE " + q(p.green); err == nil || !strings.Contains(postgres.Hint(err), want) || !p.roleExists(p.green) {
		t.Fatalf("DropRole as %s should be refused with the hint %q, the role kept: %v (hint %q)", nopriv, want, err, postgres.Hint(err))
	}

	// kill -9 right after the role was created: it stays; the next init uses it.
	k := piuNewProject(t, c, piuOptions{})
	before = piuDir(t, k.dir)
	r = k.crash(rkapp.FaultInitRoleCreated, "init", "--env-file", ".env", "--postgres-alternating")
	k.outputs = append(k.outputs, r.stdout, r.stderr)
	if !k.roleExists(k.green) {
		t.Fatalf("killed at %s, but role %s does not exist", rkapp.FaultInitRoleCreated, k.green)
	}
	k.piuUnchanged(before, "init killed after creating the role")
	if out := k.mustLog("init", "--env-file", ".env", "--postgres-alternating"); !strings.Contains(out, fmt.Sprintf("role %q exists: kept", k.green)) {
		t.Fatalf("init after the kill should keep the role it left:\n%s", out)
	}
	k.piuRotates()
	k.checkNoLeak()
	p.checkOutputs(greenPW)
}

// TestPostgresInitAdminURL: an admin URL in the .env that names another
// server (here: another port) than DATABASE_URL is refused before anything
// is created, naming both secrets and neither value; one naming the same
// host and port but another database is the same server (roles belong to
// the server): init goes through with changed_by: admin. On every version.
func TestPostgresInitAdminURL(t *testing.T) {
	c := startCluster(t)
	other := net.JoinHostPort(c.Host, strconv.Itoa(c.Port+1))
	p := piuNewProject(t, c, piuOptions{admin: true, adminHostPort: other})
	before := piuDir(t, p.dir)
	r := p.runLog("init", "--env-file", ".env", "--postgres-alternating")
	for _, want := range []string{"PG_ADMIN_URL", "DATABASE_URL", ":" + strconv.Itoa(c.Port+1), ":" + strconv.Itoa(c.Port), "another server", "rekey: hint:"} {
		if r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Fatalf("an admin URL of another port should be refused (exit 2) naming %q: %v", want, r)
		}
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if strings.Contains(r.stdout, "created role") || p.roleExists(p.green) {
		t.Fatalf("the refused init created role %s", p.green)
	}
	p.piuUnchanged(before, "init refused for its admin URL")
	p.checkOutputs()

	// The same server, another database: accepted.
	s := piuNewProject(t, c, piuOptions{admin: true, adminDB: "template1"})
	out := s.mustLog("init", "--env-file", ".env", "--postgres-alternating")
	if !strings.Contains(out, fmt.Sprintf("created role %q", s.green)) || !strings.Contains(out, "admin connection PG_ADMIN_URL") || !s.roleExists(s.green) {
		t.Fatalf("init with an admin URL of the same server, database template1:\n%s", out)
	}
	if cfg, _ := os.ReadFile(filepath.Join(s.dir, "rekey.yaml")); !strings.Contains(string(cfg), "changed_by: admin") {
		t.Fatalf("rekey.yaml lacks changed_by: admin:\n%s", cfg)
	}
	s.piuRotates()
	s.checkNoLeak()
}

// checkOutputs fails when rekey's outputs hold a password of the project
// (checkNoLeak without the server log, for a project that rotated nothing).
func (p *pgaProject) checkOutputs(extra ...string) {
	p.t.Helper()
	pws := append([]string{p.adminPW}, extra...)
	for _, v := range p.vals {
		pws = append(pws, v)
	}
	for _, pw := range pws {
		if pw == "" {
			continue
		}
		for _, f := range forms(pw) {
			for _, o := range p.outputs {
				if strings.Contains(o, f) {
					p.t.Errorf("rekey's output contains a password")
				}
			}
		}
	}
}

// TestPostgresAddRoleUndo: `rekey postgres add-role` whose rewrite of
// rekey.yaml fails (the file made immutable) drops the role it created
// again and leaves rekey.yaml as it was; once rekey.yaml can be written,
// add-role goes through and the pair rotates.
func TestPostgresAddRoleUndo(t *testing.T) {
	c := startCluster(t)
	p := piuNewProject(t, c, piuOptions{})
	p.mustLog("init", "--env-file", ".env")
	if p.adminURL != "" {
		p.useAdmin()
	}
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var undo func() error
	if err := ctChattr(cfgPath, "+i"); err == nil {
		undo = func() error { return ctChattr(cfgPath, "-i") }
	} else if !ctHaveRoot() {
		if err := os.Chmod(p.dir, 0o555); err != nil {
			t.Fatal(err)
		}
		undo = func() error { return os.Chmod(p.dir, 0o755) }
	} else {
		ctSkipOrFail(t, "cannot make rekey.yaml impossible to replace: %v", err)
	}
	t.Cleanup(func() { undo() })
	r := p.runLog("postgres", "add-role")
	dropped := fmt.Sprintf("the role %q that add-role created was dropped again", p.green)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "write ") || !strings.Contains(r.stderr, dropped) {
		t.Fatalf("add-role that cannot rewrite rekey.yaml should fail and say %q: %v", dropped, r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if p.roleExists(p.green) {
		t.Fatalf("the failed add-role left role %s behind", p.green)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(cfg) {
		t.Fatal("the failed add-role changed rekey.yaml")
	}
	p.checkNoLeftovers()
	if audit := p.mustLog("audit", "--json"); !strings.Contains(audit, `"error"`) || !strings.Contains(audit, "rekey.yaml not rewritten; the role") ||
		!strings.Contains(audit, "that add-role created was dropped again") {
		t.Errorf("the audit log does not say add-role was undone:\n%s", audit)
	}
	if out := p.mustLog("postgres", "add-role"); !strings.Contains(out, fmt.Sprintf("created role %q", p.green)) {
		t.Fatalf("add-role once rekey.yaml can be written:\n%s", out)
	}
	p.piuRotates()
	p.checkNoLeak()
}
